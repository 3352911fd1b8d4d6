// Causal attention with grouped-query heads, flash style (shaders/attention.wgsl), f32.
//
//   q, out: [B, Sq, Hq, Dh]   k, v: [B, kvCapacity, Hkv, Dh]   lse: f32 [B, Hq, Sq]
//
// (Any tensor shape with the right element count is accepted, e.g. activations as [B*Sq, Hq*Dh].)
// Query head h uses kv head floor(h / (Hq / Hkv)). Key j is visible to query i iff j < kvLen,
// j <= qOffset + i, with a window W also j > qOffset + i - W, with segments also
// seg[b, i] == seg[b, j]. The window matches Hugging Face transformers' masking_utils.py
// (sliding_window_overlay: `kv_idx > q_idx - sliding_window`, and-ed with the causal
// `kv_idx <= q_idx`), i.e. W keys including the current one; HF's flash-attention path agrees by
// passing window_size = (W - 1, W - 1). (Releases before that fix passed (W, W), one key more.)
//
// Forward: online softmax over key tiles; the score matrix never leaves workgroup memory.
// Backward (FlashAttention-2): a prep pass stores (lse, D = rowsum(dO * out)) per row, one pass
// over key tiles writes dK/dV (each workgroup loops over the query rows of all heads sharing its
// kv head, so the group sum needs no atomics) and one pass over query tiles writes dQ. All
// reductions have a fixed order: results are deterministic.
//
// Tiles: a workgroup of the forward / dQ pass owns BR "rows" (query, head of the group) of one
// (batch, kv head); TD threads share a row's accumulator (each at most 16 columns), BC keys per
// tile. BR and BC are the largest that fit gpu.caps.limits.maxComputeWorkgroupStorageSize for the
// head dim (see chooseTiles), so head dims up to 256 work within 16 KiB.

import source from '../../shaders/attention.wgsl';
import { f32, GpuError, type Gpu } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';

export interface AttentionShape {
  batch: number;
  qLen: number;
  kvLen: number;
  kvCapacity?: number;
  qOffset?: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  softcap?: number;
  window?: number;
  segments?: Tensor;
}

export interface AttentionOptions {
  /** Pretend the workgroup storage limit is this many bytes (at most the device's): tests use it
   *  to exercise the tile choice of smaller GPUs. */
  storageBytes?: number;
}

export interface AttentionTiles {
  /** query rows per workgroup (forward, dQ) or per step (dK/dV) */
  BR: number;
  /** keys per tile (forward, dQ) or per workgroup (dK/dV) */
  BC: number;
  /** threads per accumulator row */
  TD: number;
  /** threads per workgroup */
  NT: number;
}

type Kernel = 'fwd' | 'kv' | 'q';

const pow2ceil = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const paddedRow = (Dh: number): number => (Dh % 2 === 1 ? Dh : Dh + 1);

/**
 * Tile sizes for one kernel: threads per accumulator row TD so that each thread owns at most 16
 * columns, then as many rows / keys as the workgroup storage (floats) allows. `rows` is the
 * number of (query, head) rows per (batch, kv head), `keys` the key count (caps tiles on tiny
 * problems).
 */
export function chooseTiles(kernel: Kernel, Dh: number, rows: number, keys: number, storageBytes: number): AttentionTiles {
  const F = Math.floor(storageBytes / 4) - 64; // headroom for alignment of the arrays
  const DP = paddedRow(Dh);
  const tdMin = pow2ceil(Math.ceil(Dh / 16));
  const fail = (): never => {
    throw new GpuError(`attention: head dim ${Dh} does not fit ${storageBytes} bytes of workgroup storage`);
  };
  if (kernel === 'kv') {
    // BC keys x TD threads own dK/dV rows; BR query rows stream through.
    const mem = (BR: number, BC: number) => 2 * BC * DP + 2 * BR * DP + 2 * BR * BC + 2 * BR;
    let BC = Math.min(32, Math.max(1, 128 / tdMin), pow2ceil(keys));
    while (BC > 1 && mem(4, BC) > F) BC /= 2;
    const BR = Math.min(32, pow2ceil(rows), Math.floor((F - 2 * BC * DP) / (2 * DP + 2 * BC + 2)));
    if (BR < 1 || mem(BR, BC) > F) fail();
    const TD = Math.min(pow2ceil(Dh), Math.max(tdMin, Math.floor(64 / BC)));
    return { BR, BC, TD, NT: BC * TD };
  }
  // forward and dQ: BR rows x TD threads own the accumulators; BC keys stream through.
  const mem = kernel === 'fwd'
    ? (BR: number, BC: number, TD: number) => BR * DP + BC * DP + BR * BC + BR * TD
    : (BR: number, BC: number) => 2 * BR * DP + 2 * BC * DP + BR * BC;
  let BR = Math.min(64, Math.max(1, 128 / tdMin), pow2ceil(rows));
  const td = (BR: number) => Math.min(pow2ceil(Dh), Math.max(tdMin, Math.floor(64 / BR)));
  const minBC = Math.min(8, pow2ceil(keys));
  while (BR > 1 && mem(BR, minBC, td(BR)) > F) BR /= 2;
  const TD = td(BR);
  let BC = Math.min(32, pow2ceil(keys));
  while (BC > 1 && mem(BR, BC, TD) > F) BC--;
  if (mem(BR, BC, TD) > F) fail();
  return { BR, BC, TD, NT: BR * TD };
}

interface Dims {
  B: number; Sq: number; kvLen: number; cap: number; qOffset: number;
  Hq: number; Hkv: number; G: number; Dh: number;
}

function dims(s: AttentionShape): Dims {
  const cap = s.kvCapacity ?? s.kvLen;
  const qOffset = s.qOffset ?? s.kvLen - s.qLen;
  const d = { B: s.batch, Sq: s.qLen, kvLen: s.kvLen, cap, qOffset, Hq: s.heads, Hkv: s.kvHeads, G: s.heads / s.kvHeads, Dh: s.headDim };
  const ints: [string, number, number][] = [
    ['batch', d.B, 1], ['qLen', d.Sq, 1], ['kvLen', d.kvLen, 0], ['kvCapacity', cap, 1],
    ['heads', d.Hq, 1], ['kvHeads', d.Hkv, 1], ['headDim', d.Dh, 1],
  ];
  for (const [name, x, min] of ints) {
    if (!Number.isInteger(x) || x < min) throw new GpuError(`attention: ${name} = ${x} must be an integer >= ${min}`);
  }
  if (!Number.isInteger(qOffset)) throw new GpuError(`attention: qOffset = ${qOffset} must be an integer`);
  if (d.kvLen > cap) throw new GpuError(`attention: kvLen ${d.kvLen} exceeds kvCapacity ${cap}`);
  if (d.Hq % d.Hkv !== 0) throw new GpuError(`attention: heads ${d.Hq} is not a multiple of kvHeads ${d.Hkv}`);
  if (!Number.isFinite(s.scale)) throw new GpuError(`attention: scale ${s.scale} is not finite`);
  if (s.softcap !== undefined && !(s.softcap > 0)) throw new GpuError(`attention: softcap ${s.softcap} must be > 0 (or absent)`);
  if (s.window !== undefined && !(Number.isInteger(s.window) && s.window >= 1)) {
    throw new GpuError(`attention: window ${s.window} must be an integer >= 1 (or absent)`);
  }
  if (s.segments) {
    if (d.Sq !== d.kvLen || qOffset !== 0) {
      throw new GpuError(`attention: segments need qLen == kvLen and qOffset 0 (packed training), got qLen ${d.Sq}, kvLen ${d.kvLen}, qOffset ${qOffset}`);
    }
    expectTensor('segments', s.segments, d.B * d.Sq, `[B*Sq] = [${d.B * d.Sq}]`, 'i32');
  }
  return d;
}

function expectTensor(name: string, t: Tensor, n: number, layout: string, dtype: 'f32' | 'i32' = 'f32'): void {
  if (t.dtype !== dtype) throw new GpuError(`attention: ${name} must be ${dtype}, not ${t.dtype}`);
  if (numel(t.shape) !== n) {
    throw new GpuError(`attention: ${name} has shape ${shapeStr(t.shape)} (${numel(t.shape)} elements); expected ${layout} (${n} elements)`);
  }
}

const qLayout = (d: Dims) => `[B, Sq, Hq, Dh] = [${d.B}, ${d.Sq}, ${d.Hq}, ${d.Dh}]`;
const kvLayout = (d: Dims) => `[B, kvCapacity, Hkv, Dh] = [${d.B}, ${d.cap}, ${d.Hkv}, ${d.Dh}]`;
const lseLayout = (d: Dims) => `[B, Hq, Sq] = [${d.B}, ${d.Hq}, ${d.Sq}]`;

function storageLimit(gpu: Gpu, opts?: AttentionOptions): number {
  const dev = gpu.caps.limits.maxComputeWorkgroupStorageSize;
  return Math.min(dev, opts?.storageBytes ?? dev);
}

// Stand-ins for absent optional bindings (segments, lse); separate so that one dispatch never
// binds a buffer both read-only and writable.
const dummies = new WeakMap<Gpu, { seg: Tensor; lse: Tensor }>();
function dummy(gpu: Gpu, which: 'seg' | 'lse'): Tensor {
  let d = dummies.get(gpu);
  if (!d) {
    d = { seg: gpu.tensor([4], 'i32', 'attention.noSegments'), lse: gpu.tensor([4], 'f32', 'attention.noLse') };
    dummies.set(gpu, d);
  }
  return d[which];
}

// (lse, D) per row for the backward: one scratch per Gpu, grown on demand. Reusing it across
// calls is safe because dispatches recorded on one Gpu run in order.
const scratches = new WeakMap<Gpu, Tensor>();
function scratch(gpu: Gpu, n: number): Tensor {
  let t = scratches.get(gpu);
  if (!t || numel(t.shape) < n) {
    // the old buffer may still be used by recorded, unsubmitted work
    if (t) gpu.releaseAtFlush(t);
    t = gpu.tensor([Math.max(n, 1024)], 'f32', 'attention.lseD');
    scratches.set(gpu, t);
  }
  return t;
}

function params(d: Dims, s: AttentionShape, tiles: number, total: number, writeLse: boolean) {
  return [
    d.Sq, d.kvLen, d.cap, d.Hq,
    d.Hkv, d.G, d.qOffset, s.window ?? 0,
    f32(s.scale), f32(s.softcap ?? 0), s.segments ? 1 : 0, writeLse ? 1 : 0,
    tiles, total, d.B, 0,
  ];
}

type Entry = 'attention_forward' | 'attention_backward_prep' | 'attention_backward_kv' | 'attention_backward_q';

/** The entry point compiled for head dim Dh and tiles t. */
function pipeline(gpu: Gpu, entry: Entry, Dh: number, t: AttentionTiles): GPUComputePipeline {
  return gpu.pipeline(`${entry}:dh${Dh}:${t.BR}x${t.BC}x${t.TD}x${t.NT}`, () => shaderVariant(source, entry, {
    DH: Dh, DP: paddedRow(Dh), BR: t.BR, BC: t.BC, TD: t.TD, NT: t.NT, DPT: Math.ceil(Dh / t.TD),
  }));
}

/** out = softmax(mask(cap(scale * q k^T))) v; lse (when given) = log-sum-exp of each score row. */
export function attentionForward(
  gpu: Gpu, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor | null, shape: AttentionShape,
  opts?: AttentionOptions,
): void {
  const d = dims(shape);
  expectTensor('q', q, d.B * d.Sq * d.Hq * d.Dh, qLayout(d));
  expectTensor('k', k, d.B * d.cap * d.Hkv * d.Dh, kvLayout(d));
  expectTensor('v', v, d.B * d.cap * d.Hkv * d.Dh, kvLayout(d));
  expectTensor('out', out, d.B * d.Sq * d.Hq * d.Dh, qLayout(d));
  if (lse) expectTensor('lse', lse, d.B * d.Hq * d.Sq, lseLayout(d));

  const rows = d.Sq * d.G;
  const t = chooseTiles('fwd', d.Dh, rows, d.kvLen, storageLimit(gpu, opts));
  const tiles = Math.ceil(rows / t.BR);
  const total = d.B * d.Hkv * tiles;
  gpu.dispatch(
    pipeline(gpu, 'attention_forward', d.Dh, t),
    [q, k, v, shape.segments ?? dummy(gpu, 'seg'), out, lse ?? dummy(gpu, 'lse')],
    gpu.grid(total),
    params(d, shape, tiles, total, lse !== null),
  );
}

/**
 * Gradients of attention(): dq, dk, dv are overwritten (dk/dv summed over the query heads of each
 * group; rows of the cache at or beyond kvLen get zeros). lse must come from the forward.
 */
export function attentionBackward(
  gpu: Gpu, dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
  dq: Tensor, dk: Tensor, dv: Tensor, shape: AttentionShape, opts?: AttentionOptions,
): void {
  const d = dims(shape);
  const nq = d.B * d.Sq * d.Hq * d.Dh, nkv = d.B * d.cap * d.Hkv * d.Dh;
  expectTensor('dOut', dOut, nq, qLayout(d));
  expectTensor('q', q, nq, qLayout(d));
  expectTensor('k', k, nkv, kvLayout(d));
  expectTensor('v', v, nkv, kvLayout(d));
  expectTensor('out', out, nq, qLayout(d));
  expectTensor('lse', lse, d.B * d.Hq * d.Sq, lseLayout(d));
  expectTensor('dq', dq, nq, qLayout(d));
  expectTensor('dk', dk, nkv, kvLayout(d));
  expectTensor('dv', dv, nkv, kvLayout(d));

  const limit = storageLimit(gpu, opts);
  const seg = shape.segments ?? dummy(gpu, 'seg');
  const nRows = d.B * d.Hq * d.Sq;
  const ld = scratch(gpu, 2 * nRows);
  const prepTiles: AttentionTiles = { BR: 1, BC: 1, TD: 1, NT: 64 };
  gpu.dispatch(
    pipeline(gpu, 'attention_backward_prep', d.Dh, prepTiles),
    [dOut, out, lse, ld],
    gpu.grid(Math.ceil(nRows / 64)),
    params(d, shape, 0, 0, false),
  );

  const rows = d.Sq * d.G;
  const tk = chooseTiles('kv', d.Dh, rows, d.kvLen, limit);
  const kvTiles = Math.ceil(d.cap / tk.BC);
  const kvTotal = d.B * d.Hkv * kvTiles;
  gpu.dispatch(
    pipeline(gpu, 'attention_backward_kv', d.Dh, tk),
    [q, k, v, seg, dOut, ld, dk, dv],
    gpu.grid(kvTotal),
    params(d, shape, kvTiles, kvTotal, false),
  );

  const tq = chooseTiles('q', d.Dh, rows, d.kvLen, limit);
  const qTiles = Math.ceil(rows / tq.BR);
  const qTotal = d.B * d.Hkv * qTiles;
  gpu.dispatch(
    pipeline(gpu, 'attention_backward_q', d.Dh, tq),
    [q, k, v, seg, dOut, ld, dq],
    gpu.grid(qTotal),
    params(d, shape, qTiles, qTotal, false),
  );
}
