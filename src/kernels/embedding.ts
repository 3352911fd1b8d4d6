// Token embedding lookup (table possibly split in row parts, f32 or f16) with Gemma's scale, and
// its deterministic gradient: the host groups the batch's token rows by distinct id (CSR), the GPU
// sums each id's rows in a fixed order (no float atomics).

import source from '../../shaders/embedding.wgsl';
import { f32, type Gpu } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';
import { weightParts, type Weight } from './matmul';

function workgroupSize(D: number): number {
  return D >= 1024 ? 256 : 64;
}

/** Throws naming the first id outside [0, vocab) (ids known on the host, before an upload). */
export function checkIds(ids: Int32Array, vocab: number): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= vocab) throw new RangeError(`token id ${id} at index ${i} is outside the vocabulary [0, ${vocab})`);
  }
}

/** The entry point for a table of f32 or f16 (packed pairs, kernels/f16.ts) with WG threads per token. */
function pipeline(gpu: Gpu, entry: 'embedding_forward' | 'embedding_backward', table: 'f32' | 'f16', WG: number): GPUComputePipeline {
  return gpu.pipeline(`${entry}:${table}:wg${WG}`, () => shaderVariant(source, entry, { WG, TABLE_F16: table === 'f16' }));
}

/**
 * out[t] = table[ids[t]] * scale, ids: i32 [T], table [V, D] (one tensor or row parts), out f32
 * [T, D]. Ids outside [0, V) give NaN rows (check them on the host with checkIds()).
 */
export function embeddingForward(gpu: Gpu, ids: Tensor, table: Weight, out: Tensor, scale = 1): void {
  const fn = 'embeddingForward';
  if (ids.dtype !== 'i32') throw new Error(`${fn}: ids must be i32, not ${ids.dtype}`);
  if (out.dtype !== 'f32') throw new Error(`${fn}: out must be f32, not ${out.dtype}`);
  const parts = weightParts(table);
  if (parts.length === 0) throw new Error(`${fn}: the table has no parts`);
  const D = parts[0]!.shape[1]!;
  let V = 0;
  for (const [i, p] of parts.entries()) {
    if (p.shape.length !== 2 || p.shape[1] !== D) {
      throw new Error(`${fn}: table part ${i} ${shapeStr(p.shape)} must be [rows, ${D}] like part 0`);
    }
    if (p.dtype !== 'f32' && p.dtype !== 'f16') throw new Error(`${fn}: table part ${i} is ${p.dtype}; only f32 and f16 tables are supported`);
    if (p.buffer === out.buffer) throw new Error(`${fn}: out must not share a buffer with table part ${i}`);
    V += p.shape[0]!;
  }
  const T = numel(ids.shape);
  if (numel(out.shape) !== T * D || out.shape[out.shape.length - 1] !== D) {
    throw new Error(`${fn}: out ${shapeStr(out.shape)} must be [${T}, ${D}] for ids ${shapeStr(ids.shape)} and table width ${D}`);
  }
  if (ids.buffer === out.buffer) throw new Error(`${fn}: out must not share a buffer with ids`);
  if (T === 0 || D === 0) return;
  const WG = workgroupSize(D);
  const groups = gpu.grid(T);
  let v0 = 0;
  parts.forEach((p, i) => {
    const rows = p.shape[0]!;
    gpu.dispatch(pipeline(gpu, 'embedding_forward', p.dtype as 'f32' | 'f16', WG), [ids, p, out], groups,
      [T, D, v0, rows, V, i === 0 ? 1 : 0, f32(scale), 0x7fc00000]);
    v0 += rows;
  });
}

/** Token rows grouped by distinct id: [ids ascending][U + 1 offsets][rows], as u32. */
export function embeddingCsr(ids: Int32Array, vocab: number): { U: number; data: Uint32Array } {
  checkIds(ids, vocab);
  const T = ids.length;
  // sort (id, row) pairs as exact f64 keys id * T + row: ids ascending, rows ascending within an id
  const keys = new Float64Array(T);
  for (let t = 0; t < T; t++) keys[t] = ids[t]! * T + t;
  keys.sort();
  let U = 0;
  for (let k = 0; k < T; k++) if (k === 0 || Math.floor(keys[k]! / T) !== Math.floor(keys[k - 1]! / T)) U++;
  const data = new Uint32Array(2 * U + 1 + T);
  let u = -1, prev = -1;
  for (let k = 0; k < T; k++) {
    const id = Math.floor(keys[k]! / T);
    if (id !== prev) {
      u++;
      data[u] = id;
      data[U + u] = k;
      prev = id;
    }
    data[2 * U + 1 + k] = keys[k]! - id * T;
  }
  data[2 * U] = T;
  return { U, data };
}

/**
 * dTable[V, D] (=|+=) scale * sum over tokens t with ids[t] = v of dOut[t] (rows of ids absent
 * from the batch: zero, or unchanged when accumulating). ids: the batch's ids on the host.
 */
export function embeddingBackward(gpu: Gpu, ids: Int32Array, dOut: Tensor, dTable: Tensor, scale = 1, accumulate = false): void {
  const fn = 'embeddingBackward';
  if (dOut.dtype !== 'f32' || dTable.dtype !== 'f32') throw new Error(`${fn}: dOut and dTable must be f32 (got ${dOut.dtype}, ${dTable.dtype})`);
  if (dTable.shape.length !== 2) throw new Error(`${fn}: dTable ${shapeStr(dTable.shape)} must be [V, D] (one part)`);
  const [V, D] = dTable.shape as [number, number];
  const T = ids.length;
  if (numel(dOut.shape) !== T * D || dOut.shape[dOut.shape.length - 1] !== D) {
    throw new Error(`${fn}: dOut ${shapeStr(dOut.shape)} must be [${T}, ${D}] for ${T} ids and dTable ${shapeStr(dTable.shape)}`);
  }
  if (dOut.buffer === dTable.buffer) throw new Error(`${fn}: dTable must not share a buffer with dOut`);
  const { U, data } = embeddingCsr(ids, V);
  if (!accumulate) gpu.zero(dTable);
  if (U === 0 || D === 0) return;
  const csr = gpu.transient([data.length], 'u32', 'embedding gradient rows');
  gpu.write(csr, data);
  gpu.dispatch(pipeline(gpu, 'embedding_backward', 'f32', workgroupSize(D)), [csr, dOut, dTable], gpu.grid(U),
    [U, D, f32(scale), accumulate ? 1 : 0]);
}
