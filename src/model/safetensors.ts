// The safetensors format: an 8-byte little-endian header length, a JSON header mapping tensor
// names to {dtype, shape, data_offsets}, then the raw little-endian data. Reading goes through a
// ByteSource so a multi-GB file is never held whole in memory (browser stores and Node files
// both provide one).

import { DataError } from '../data/errors';
import { halfToFloat } from '../gpu/runtime';

export interface ByteSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Name for error messages (a path or a store key). */
  readonly name: string;
}

export type SafeDType = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'U8' | 'I8' | 'BOOL' | 'F64';

export interface TensorInfo {
  name: string;
  dtype: SafeDType;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsFile {
  source: ByteSource;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

const BYTES: Record<SafeDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, I8: 1, BOOL: 1 };

export async function openSafetensors(source: ByteSource): Promise<SafetensorsFile> {
  const at = { file: source.name };
  if (source.size < 8) throw new DataError(`${source.size} bytes is too short for a safetensors file (truncated?)`, at);
  const head = await source.read(0, 8);
  const view = new DataView(head.buffer, head.byteOffset, 8);
  const len = Number(view.getBigUint64(0, true));
  if (len <= 0 || 8 + len > source.size || len > 100 * 2 ** 20) {
    throw new DataError(`invalid safetensors header length ${len} (file is ${source.size} bytes): not a safetensors file, or truncated`, at);
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(await source.read(8, len)));
  } catch (e) {
    throw new DataError(`safetensors header is not valid JSON (${(e as Error).message})`, at);
  }
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = raw as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets } = raw as { dtype: SafeDType; shape: number[]; data_offsets: [number, number] };
    if (!(dtype in BYTES)) throw new DataError(`tensor ${name} has unsupported dtype ${dtype}`, at);
    const begin = 8 + len + data_offsets[0];
    const end = 8 + len + data_offsets[1];
    const expected = shape.reduce((a, b) => a * b, 1) * BYTES[dtype];
    if (end > source.size) {
      throw new DataError(`tensor ${name} ${dtype}[${shape}] ends at byte ${end}, past the end of the file (${source.size} bytes): the file is truncated`, at);
    }
    if (end - begin !== expected) throw new DataError(`tensor ${name} ${dtype}[${shape}] needs ${expected} bytes, the header gives it ${end - begin}: corrupt file`, at);
    tensors.set(name, { name, dtype, shape, begin, end });
  }
  return { source, tensors, metadata };
}

/** Read a floating-point tensor as f32 (F16/BF16/F64 converted). Rows [r0, r1) of the first dimension when given. */
export async function readF32(file: SafetensorsFile, name: string, rows?: [number, number]): Promise<Float32Array> {
  return toF32(await readBytes(file, name, rows), file.tensors.get(name)!.dtype, `${file.source.name}:${name}`);
}

/** A tensor's stored bytes (rows [r0, r1) of the first dimension when given). */
export async function readBytes(file: SafetensorsFile, name: string, rows?: [number, number]): Promise<Uint8Array> {
  const info = file.tensors.get(name);
  if (!info) throw new DataError(`tensor ${name} is missing`, { file: file.source.name });
  const rowElems = info.shape.slice(1).reduce((a, b) => a * b, 1);
  const [r0, r1] = rows ?? [0, info.shape[0] ?? 1];
  const bpe = BYTES[info.dtype];
  return file.source.read(info.begin + r0 * rowElems * bpe, (r1 - r0) * rowElems * bpe);
}

export function toF32(bytes: Uint8Array, dtype: SafeDType, what: string): Float32Array {
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const n = aligned.byteLength / BYTES[dtype];
  switch (dtype) {
    case 'F32':
      return new Float32Array(aligned.buffer, aligned.byteOffset, n).slice();
    case 'F64':
      return Float32Array.from(new Float64Array(aligned.buffer, aligned.byteOffset, n));
    case 'F16': {
      const h = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(h[i]!);
      return out;
    }
    case 'BF16': {
      const h = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
      const out = new Uint32Array(n);
      for (let i = 0; i < n; i++) out[i] = h[i]! << 16;
      return new Float32Array(out.buffer);
    }
    default:
      throw new Error(`${what}: dtype ${dtype} is not a floating-point type`);
  }
}

export interface TensorToWrite {
  dtype: 'F32' | 'F16' | 'BF16';
  shape: readonly number[];
  data: Float32Array;
}

/** Serialize tensors (converted to their dtype). Keys are written sorted, as the Python library does. */
export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors[name]!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`tensor ${name}: shape [${t.shape}] has ${n} elements, data has ${t.data.length}`);
    const size = n * BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((json.length + 8) % 8)) % 8);
  const headBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headBytes.length), true);
  out.set(headBytes, 8);
  let pos = 8 + headBytes.length;
  for (const name of names) {
    const t = tensors[name]!;
    const bytes = fromF32(t.data, t.dtype);
    out.set(bytes, pos);
    pos += bytes.length;
  }
  return out;
}

function fromF32(data: Float32Array, dtype: 'F32' | 'F16' | 'BF16'): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint16Array(data.length);
  const u = new Uint32Array(data.buffer, data.byteOffset, data.length);
  for (let i = 0; i < data.length; i++) out[i] = dtype === 'BF16' ? bf16Round(u[i]!) : floatToHalf(data[i]!);
  return new Uint8Array(out.buffer);
}

function bf16Round(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return 0x7fc0; // NaN
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff; // round to nearest even
}

export function floatToHalf(x: number): number {
  const f = new Float32Array([x]);
  const bits = new Uint32Array(f.buffer)[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}
