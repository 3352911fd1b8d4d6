// GPTQ and AWQ checkpoints: packed codes, zero points and scales built here from the formats'
// definitions (independently of the loader), read back as plain dequantized weights, and a whole
// model loaded from a GPTQ checkpoint computes exactly what the same model from the dequantized
// f32 weights computes. Methods Crucible cannot read are refused by name.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { halfToFloat } from '../src/gpu/runtime';
import type { Tensor } from '../src/gpu/tensor';
import { fullLogits, Workspace } from '../src/model/forward';
import { Model } from '../src/model/model';
import { floatToHalf, openSafetensors, readF32, type ByteSource } from '../src/model/safetensors';
import { Checkpoint, type ModelFiles } from '../src/model/weights';
import { makeRng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { batchOf, readCase } from './helpers/parity';

type Stored = { dtype: 'F32' | 'F16' | 'I32'; shape: number[]; bytes: Uint8Array };

/** safetensors bytes of raw tensors (I32 included, which the project's encoder does not write). */
function safetensors(tensors: Record<string, Stored>): Uint8Array {
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] };
    off += t.bytes.length;
  }
  const head = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + head.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let pos = 8 + head.length;
  for (const t of Object.values(tensors)) {
    out.set(t.bytes, pos);
    pos += t.bytes.length;
  }
  return out;
}

function memoryFiles(name: string, files: Record<string, string | Uint8Array>): ModelFiles {
  return {
    name,
    readText: async (p) => {
      const f = files[p];
      if (typeof f !== 'string') throw new Error(`${name}: no ${p}`);
      return f;
    },
    open: async (p): Promise<ByteSource> => {
      const f = files[p];
      if (!(f instanceof Uint8Array)) throw new Error(`${name}: no ${p}`);
      return { name: `${name}/${p}`, size: f.length, read: async (o, l) => f.slice(o, o + l) };
    },
    exists: async (p) => p in files,
  };
}

const i32 = (a: number[]): Uint8Array => new Uint8Array(Int32Array.from(a).buffer);
const f16 = (a: number[]): Uint8Array => new Uint8Array(Uint16Array.from(a.map(floatToHalf)).buffer);
const f32 = (a: ArrayLike<number>): Uint8Array => new Uint8Array(Float32Array.from(a).buffer);
const roundF16 = (x: number) => halfToFloat(floatToHalf(x));

/** Asymmetric 4/8-bit codes of W [N, K] per group of input columns: what GPTQ and AWQ store, unpacked. */
function quantizeGroups(w: Float32Array, N: number, K: number, bits: number, groupOf: (k: number) => number, groups: number) {
  const top = (1 << bits) - 1;
  const scales = new Array<number>(groups * N).fill(0), zeros = new Array<number>(groups * N).fill(0);
  for (let g = 0; g < groups; g++) {
    for (let n = 0; n < N; n++) {
      let lo = 0, hi = 0;
      for (let k = 0; k < K; k++) if (groupOf(k) === g) { lo = Math.min(lo, w[n * K + k]!); hi = Math.max(hi, w[n * K + k]!); }
      const s = roundF16((hi - lo) / top || 1);
      scales[g * N + n] = s;
      zeros[g * N + n] = Math.min(top, Math.max(0, Math.round(-lo / s)));
    }
  }
  const codes = new Array<number>(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) {
    const g = groupOf(k);
    codes[n * K + k] = Math.min(top, Math.max(0, Math.round(w[n * K + k]! / scales[g * N + n]!) + zeros[g * N + n]!));
  }
  const deq = new Float32Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) {
    const g = groupOf(k);
    deq[n * K + k] = scales[g * N + n]! * (codes[n * K + k]! - zeros[g * N + n]!);
  }
  return { scales, zeros, codes, deq };
}

/**
 * GPTQ: qweight [K·bits/32, N], value k of column n in word k/per at bits·(k % per); qzeros
 * [groups, N·bits/32] packed along N the same way, stored minus one in the original format.
 */
function gptqTensors(prefix: string, w: Float32Array, N: number, K: number, bits: number, group: number, gIdx?: number[]) {
  const per = 32 / bits;
  const groupOf = (k: number) => (gIdx ? gIdx[k]! : Math.floor(k / group));
  const groups = Math.ceil(K / group);
  const q = quantizeGroups(w, N, K, bits, groupOf, groups);
  const qweight = new Array<number>((K / per) * N).fill(0);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) qweight[Math.floor(k / per) * N + n] |= q.codes[n * K + k]! << (bits * (k % per));
  const qzeros = new Array<number>(groups * (N / per)).fill(0);
  for (let g = 0; g < groups; g++) for (let n = 0; n < N; n++) qzeros[g * (N / per) + Math.floor(n / per)] |= ((q.zeros[g * N + n]! - 1) & ((1 << bits) - 1)) << (bits * (n % per));
  const t: Record<string, Stored> = {
    [`${prefix}.qweight`]: { dtype: 'I32', shape: [K / per, N], bytes: i32(qweight) },
    [`${prefix}.qzeros`]: { dtype: 'I32', shape: [groups, N / per], bytes: i32(qzeros) },
    [`${prefix}.scales`]: { dtype: 'F16', shape: [groups, N], bytes: f16(q.scales) },
  };
  if (gIdx) t[`${prefix}.g_idx`] = { dtype: 'I32', shape: [K], bytes: i32(gIdx) };
  return { tensors: t, deq: q.deq };
}

/** AWQ (GEMM): qweight [K, N/8], columns 8c..8c+7 in word c in the nibble order 0,2,4,6,1,3,5,7; qzeros alike. */
function awqTensors(prefix: string, w: Float32Array, N: number, K: number, group: number) {
  const order = [0, 2, 4, 6, 1, 3, 5, 7];
  const groups = K / group;
  const q = quantizeGroups(w, N, K, 4, (k) => Math.floor(k / group), groups);
  const pack = (rows: number, value: (r: number, n: number) => number) => {
    const out = new Array<number>(rows * (N / 8)).fill(0);
    for (let r = 0; r < rows; r++) for (let c = 0; c < N / 8; c++) for (let i = 0; i < 8; i++) out[r * (N / 8) + c] |= value(r, 8 * c + order[i]!) << (4 * i);
    return out;
  };
  return {
    tensors: {
      [`${prefix}.qweight`]: { dtype: 'I32', shape: [K, N / 8], bytes: i32(pack(K, (k, n) => q.codes[n * K + k]!)) },
      [`${prefix}.qzeros`]: { dtype: 'I32', shape: [groups, N / 8], bytes: i32(pack(groups, (g, n) => q.zeros[g * N + n]!)) },
      [`${prefix}.scales`]: { dtype: 'F16', shape: [groups, N], bytes: f16(q.scales) },
    } as Record<string, Stored>,
    deq: q.deq,
  };
}

function randomWeight(N: number, K: number, seed: number) {
  const rng = makeRng(seed);
  return Float32Array.from({ length: N * K }, () => rng.normal() * 0.05);
}

const config = (q: Record<string, unknown>) => JSON.stringify({ quantization_config: q });

describe('a pre-quantized linear layer reads as its dequantized weight', () => {
  const N = 16, K = 64;
  it.each([
    ['GPTQ 4-bit', { quant_method: 'gptq', bits: 4, group_size: 32 }, 4],
    ['GPTQ 8-bit', { quant_method: 'gptq', bits: 8, group_size: 32 }, 8],
    ['GPTQ 2-bit, one group', { quant_method: 'gptq', bits: 2, group_size: -1 }, 2],
  ])('%s', async (_, q, bits) => {
    const w = randomWeight(N, K, 7);
    const g = gptqTensors('layer', w, N, K, bits, q.group_size === -1 ? K : q.group_size);
    const files = memoryFiles('gptq', { 'config.json': config(q), 'model.safetensors': safetensors(g.tensors) });
    const ckpt = await Checkpoint.open(files);
    expect(ckpt.names()).toEqual(['layer.weight']);
    expect(ckpt.info('layer.weight').shape).toEqual([N, K]);
    expect(await ckpt.read('layer.weight', [N, K])).toEqual(g.deq);
    expect(await ckpt.read('layer.weight', [N, K], [5, 9])).toEqual(g.deq.subarray(5 * K, 9 * K));
  });

  it('GPTQ with act-order: each input column in the group g_idx names', async () => {
    const rng = makeRng(3);
    const gIdx = Array.from({ length: K }, () => Math.floor(rng.next() * 2));
    const w = randomWeight(N, K, 8);
    const g = gptqTensors('layer', w, N, K, 4, 32, gIdx);
    const ckpt = await Checkpoint.open(memoryFiles('gptq', {
      'config.json': config({ quant_method: 'gptq', bits: 4, group_size: 32, desc_act: true }), 'model.safetensors': safetensors(g.tensors),
    }));
    expect(await ckpt.read('layer.weight')).toEqual(g.deq);
  });

  it('GPTQ v2 stores zero points as they are', async () => {
    const w = randomWeight(N, K, 9);
    const g = gptqTensors('layer', w, N, K, 4, 32);
    // v1 stored zero - 1; v2 stores the zero itself: add one to every packed nibble of qzeros
    const zeros = new Int32Array(g.tensors['layer.qzeros']!.bytes.slice().buffer);
    for (let i = 0; i < zeros.length; i++) {
      let word = 0;
      for (let j = 0; j < 8; j++) word |= ((((zeros[i]! >>> (4 * j)) & 15) + 1) & 15) << (4 * j);
      zeros[i] = word;
    }
    g.tensors['layer.qzeros']!.bytes = new Uint8Array(zeros.buffer);
    const ckpt = await Checkpoint.open(memoryFiles('gptq2', {
      'config.json': config({ quant_method: 'gptq', bits: 4, group_size: 32, checkpoint_format: 'gptq_v2' }), 'model.safetensors': safetensors(g.tensors),
    }));
    const got = await ckpt.read('layer.weight');
    // zero points of 16 (stored 15 in v1) do not fit v2's nibble; the random weights never need them
    expect(got).toEqual(g.deq);
  });

  it('AWQ GEMM, with its interleaved nibble order', async () => {
    const w = randomWeight(N, K, 10);
    const a = awqTensors('layer', w, N, K, 32);
    const ckpt = await Checkpoint.open(memoryFiles('awq', {
      'config.json': config({ quant_method: 'awq', bits: 4, group_size: 32, version: 'gemm', zero_point: true }), 'model.safetensors': safetensors(a.tensors),
    }));
    expect(await ckpt.read('layer.weight', [N, K])).toEqual(a.deq);
    expect(await ckpt.read('layer.weight', [N, K], [3, 12])).toEqual(a.deq.subarray(3 * K, 12 * K));
  });
});

describe('what cannot be read is refused by name', () => {
  const tensors = gptqTensors('layer', randomWeight(16, 64, 1), 16, 64, 4, 32).tensors;
  const open = (q: unknown, t: Record<string, Stored> = tensors) =>
    Checkpoint.open(memoryFiles('m', { 'config.json': JSON.stringify({ quantization_config: q }), 'model.safetensors': safetensors(t) }));
  it.each([
    [{ quant_method: 'aqlm' }, /quant_method aqlm: AQLM .* not supported/],
    [{ quant_method: 'hqq' }, /HQQ/],
    [{ quant_method: 'eetq' }, /EETQ/],
    [{ quant_method: 'bitsandbytes', load_in_4bit: true }, /bitsandbytes/],
    [{ quant_method: 'fp8' }, /FP8/],
    [{ quant_method: 'mystery' }, /quant_method "mystery" is not supported\. Crucible loads GPTQ/],
    [{ quant_method: 'gptq', bits: 3, group_size: 128 }, /3-bit codes straddle/],
    [{ quant_method: 'gptq', bits: 4, group_size: 128, checkpoint_format: 'marlin' }, /checkpoint_format marlin/],
    [{ quant_method: 'awq', bits: 4, group_size: 128, version: 'gemv' }, /AWQ version gemv/],
    [{ quant_method: 'gptq', bits: 4, group_size: 64 }, /layer\.scales has shape \[2,16\], expected \[1,16\]/],
  ])('%j', async (q, message) => {
    await expect(open(q)).rejects.toThrow(message);
  });
  it('a packed layer without its zero points', async () => {
    const { 'layer.qzeros': _, ...rest } = tensors;
    await expect(open({ quant_method: 'gptq', bits: 4, group_size: 32 }, rest)).rejects.toThrow(/layer has a qweight but no qzeros/);
  });
});

describe('a GPTQ model', () => {
  const DIR = join(import.meta.dirname, 'fixtures/models/llama');
  const LINEAR = /\.(q|k|v|o|gate|up|down)_proj\.weight$/;

  /** The llama fixture as a GPTQ checkpoint, and the same model with the dequantized weights in f32. */
  async function checkpoints() {
    const file = await openSafetensors({ name: 'llama', size: readFileSync(join(DIR, 'model.safetensors')).length, read: async (o, l) => readFileSync(join(DIR, 'model.safetensors')).subarray(o, o + l) });
    const cfg = JSON.parse(readFileSync(join(DIR, 'config.json'), 'utf8'));
    const gptq: Record<string, Stored> = {}, plain: Record<string, Stored> = {};
    for (const [name, info] of file.tensors) {
      const w = await readF32(file, name);
      if (!LINEAR.test(name)) {
        gptq[name] = plain[name] = { dtype: 'F32', shape: info.shape, bytes: f32(w) };
        continue;
      }
      const [N, K] = info.shape as [number, number];
      const g = gptqTensors(name.replace(/\.weight$/, ''), w, N, K, 4, 32);
      Object.assign(gptq, g.tensors);
      plain[name] = { dtype: 'F32', shape: info.shape, bytes: f32(g.deq) };
    }
    return {
      gptq: memoryFiles('llama-gptq', {
        'config.json': JSON.stringify({ ...cfg, quantization_config: { quant_method: 'gptq', bits: 4, group_size: 32, desc_act: false, sym: false } }),
        'model.safetensors': safetensors(gptq),
      }),
      plain: memoryFiles('llama-dequantized', { 'config.json': JSON.stringify(cfg), 'model.safetensors': safetensors(plain) }),
    };
  }

  async function logits(model: Model) {
    const batch = batchOf(readCase('llama'));
    const ws = new Workspace(model, batch.B, batch.S, false);
    ws.load(batch);
    const out = model.gpu.tensor([batch.B * batch.S, model.spec.vocab]);
    fullLogits(ws, out);
    return model.gpu.readF32(out as Tensor);
  }

  it('stays quantized (q4) and computes what the dequantized weights compute', async () => {
    const gpu = await testGpu();
    const { gptq, plain } = await checkpoints();
    const fromGptq = await Model.load(gpu, gptq);
    expect(fromGptq.format).toBe('q4');
    const fromPlain = await Model.load(gpu, plain, { format: 'q4' });
    expect(await logits(fromGptq)).toEqual(await logits(fromPlain));
    const q8 = await Model.load(gpu, gptq, { format: 'q8' });
    expect(q8.format).toBe('q8');
    expect(await logits(q8)).toEqual(await logits(await Model.load(gpu, plain, { format: 'q8' })));
  });
});
