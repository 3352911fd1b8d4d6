// RMSNorm over the last dimension (LLaMA/Qwen/Mistral w, Gemma's 1 + w), also used for the q/k
// norms of Qwen3 and Gemma 3 with rows = tokens * heads and D = head_dim; its gated form
// (Qwen3.5's RMSNormGated: times silu(z)) and the plain L2 norm of Gated DeltaNet's q/k. The forward saves the
// per-row rstd for the backward. The weight gradient is a deterministic reduction over rows (no
// float atomics): partial sums per chunk of rows, then a sum over chunks in a fixed order.
// LayerNorm (weight and bias) serves the vision towers, forward only while they stay frozen.
// The residual add fused with the norm that reads its sum saves the transformer one dispatch and
// one pass over the stream per norm.

import source from '../../shaders/norm.wgsl';
import { f32, type Gpu } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';
import { scratch } from './scratch';

export interface RmsNormOptions {
  eps: number;
  /** 1 for Gemma's y = x_normed * (1 + w); default 0. */
  offset?: 0 | 1;
}

export interface RmsNormBackwardOptions {
  offset?: 0 | 1;
  /** Add into dx (a residual-stream gradient) instead of overwriting it. */
  accumulateDx?: boolean;
  /** Add into dw instead of overwriting it. */
  accumulateDw?: boolean;
}

const DW_COLS = 64;

type Entry =
  | 'rms_norm_forward' | 'add_rms_norm_forward' | 'rms_norm_backward_input' | 'rms_norm_backward_weight_partial' | 'rms_norm_backward_weight_sum'
  | 'layer_norm_forward' | 'rms_norm_gated_forward' | 'rms_norm_gated_backward_input' | 'l2_norm_forward' | 'l2_norm_backward';

/** The entry point with WG threads per workgroup and the weight offset (0, or Gemma's 1). */
function pipeline(gpu: Gpu, entry: Entry, WG: number, offset: 0 | 1 = 0): GPUComputePipeline {
  return gpu.pipeline(`${entry}:wg${WG}:offset${offset}`, () => shaderVariant(source, entry, { WG, OFFSET: offset }));
}

function workgroupSize(D: number): number {
  let wg = 32;
  while (wg < 256 && wg * 4 < D) wg *= 2;
  return wg;
}

function rowsAndCols(fn: string, x: Tensor, w: Tensor): { R: number; D: number } {
  if (x.shape.length < 1) throw new Error(`${fn}: x ${shapeStr(x.shape)} needs at least one dimension`);
  const D = x.shape[x.shape.length - 1]!;
  const R = numel(x.shape) / Math.max(D, 1);
  if (numel(w.shape) !== D) throw new Error(`${fn}: weight ${shapeStr(w.shape)} does not match the last dimension ${D} of x ${shapeStr(x.shape)}`);
  return { R, D };
}

function requireF32(fn: string, named: Record<string, Tensor | null>): void {
  for (const [name, t] of Object.entries(named)) {
    if (t && t.dtype !== 'f32') throw new Error(`${fn}: ${name} must be f32, not ${t.dtype}`);
  }
}

function sameCount(fn: string, name: string, t: Tensor, n: number, what: string): void {
  if (numel(t.shape) !== n) throw new Error(`${fn}: ${name} ${shapeStr(t.shape)} must have ${n} elements (${what})`);
}

/** A buffer written by the dispatch must not also be bound read-only in it (WebGPU forbids it). */
function distinct(fn: string, written: [string, Tensor], ...read: [string, Tensor][]): void {
  for (const [name, t] of read) {
    if (t.buffer === written[1].buffer) throw new Error(`${fn}: ${written[0]} must not share a buffer with ${name}`);
  }
}

/** y = x * rstd * (offset + w) over the last dimension; rstd [rows] = 1 / sqrt(mean(x^2) + eps). */
export function rmsNormForward(gpu: Gpu, x: Tensor, w: Tensor, y: Tensor, rstd: Tensor, opts: RmsNormOptions): void {
  const fn = 'rmsNormForward';
  requireF32(fn, { x, w, y, rstd });
  const { R, D } = rowsAndCols(fn, x, w);
  sameCount(fn, 'y', y, R * D, `x is ${shapeStr(x.shape)}`);
  sameCount(fn, 'rstd', rstd, R, 'one per row');
  distinct(fn, ['y', y], ['x', x], ['w', w]);
  distinct(fn, ['rstd', rstd], ['x', x], ['w', w], ['y', y]);
  if (!(opts.eps >= 0)) throw new Error(`${fn}: eps = ${opts.eps} must be a non-negative number`);
  if (R === 0 || D === 0) return;
  gpu.dispatch(pipeline(gpu, 'rms_norm_forward', workgroupSize(D), opts.offset ?? 0), [x, w, y, rstd], gpu.grid(R), [R, D, f32(opts.eps), 0, 0, 0]);
}

/** y = (x - mean) / sqrt(var + eps) * w + b over the last dimension (torch.nn.LayerNorm, biased variance). */
export function layerNormForward(gpu: Gpu, x: Tensor, w: Tensor, b: Tensor, y: Tensor, opts: { eps: number }): void {
  const fn = 'layerNormForward';
  requireF32(fn, { x, w, b, y });
  const { R, D } = rowsAndCols(fn, x, w);
  sameCount(fn, 'bias', b, D, 'one per column');
  sameCount(fn, 'y', y, R * D, `x is ${shapeStr(x.shape)}`);
  distinct(fn, ['y', y], ['x', x], ['w', w], ['b', b]);
  if (!(opts.eps >= 0)) throw new Error(`${fn}: eps = ${opts.eps} must be a non-negative number`);
  if (R === 0 || D === 0) return;
  gpu.dispatch(pipeline(gpu, 'layer_norm_forward', workgroupSize(D)), [x, w, b, y], gpu.grid(R), [R, D, f32(opts.eps), 0, 0, 0]);
}

/**
 * dx (=|+=) the input gradient; dw (=|+=) the weight gradient summed over rows when dw is given
 * (full fine-tuning; null for a frozen norm).
 */
export function rmsNormBackward(
  gpu: Gpu, dy: Tensor, x: Tensor, w: Tensor, rstd: Tensor, dx: Tensor, dw: Tensor | null, opts: RmsNormBackwardOptions = {},
): void {
  const fn = 'rmsNormBackward';
  requireF32(fn, { dy, x, w, rstd, dx, dw });
  const { R, D } = rowsAndCols(fn, x, w);
  sameCount(fn, 'dy', dy, R * D, `x is ${shapeStr(x.shape)}`);
  sameCount(fn, 'dx', dx, R * D, `x is ${shapeStr(x.shape)}`);
  sameCount(fn, 'rstd', rstd, R, 'one per row');
  distinct(fn, ['dx', dx], ['dy', dy], ['x', x], ['w', w], ['rstd', rstd]);
  if (dw) {
    sameCount(fn, 'dw', dw, D, 'one per column');
    distinct(fn, ['dw', dw], ['dy', dy], ['x', x], ['rstd', rstd]);
  }
  if (R === 0 || D === 0) return;
  const offset = opts.offset ?? 0;
  gpu.dispatch(pipeline(gpu, 'rms_norm_backward_input', workgroupSize(D), offset), [dy, x, w, rstd, dx], gpu.grid(R), [R, D, f32(0), opts.accumulateDx ? 1 : 0, 0, 0]);
  if (dw) weightGradient(gpu, dy, x, rstd, dw, R, D, opts.accumulateDw ?? false);
}

/** dw (=|+=) sum over rows of dy * x * rstd, deterministically. */
function weightGradient(gpu: Gpu, dy: Tensor, x: Tensor, rstd: Tensor, dw: Tensor, R: number, D: number, accumulate: boolean): void {
  // Enough workgroups to fill a large GPU; the chunking depends only on the shape (deterministic).
  const colBlocks = Math.ceil(D / DW_COLS);
  const maxChunks = Math.min(gpu.caps.limits.maxComputeWorkgroupsPerDimension, Math.ceil(R / 16));
  let chunks = Math.max(1, Math.min(maxChunks, Math.ceil(1024 / colBlocks)));
  const chunkRows = Math.ceil(R / chunks);
  chunks = Math.ceil(R / chunkRows);
  const params = [R, D, f32(0), accumulate ? 1 : 0, chunkRows, chunks];
  const partial = pipeline(gpu, 'rms_norm_backward_weight_partial', 256);
  if (chunks === 1) {
    gpu.dispatch(partial, [dy, x, rstd, dw], [colBlocks, 1], params);
    return;
  }
  const part = scratch(gpu, 'rmsNorm.dwPartials', chunks * D);
  gpu.dispatch(partial, [dy, x, rstd, part], [colBlocks, chunks], params);
  gpu.dispatch(pipeline(gpu, 'rms_norm_backward_weight_sum', 256), [part, dw], [Math.ceil(D / 256)], params);
}

/** s = a + b and y = RMSNorm(s) (rstd [rows]) in one dispatch: a residual add and the norm that reads it. */
export function addRmsNormForward(gpu: Gpu, a: Tensor, b: Tensor, w: Tensor, s: Tensor, y: Tensor, rstd: Tensor, opts: RmsNormOptions): void {
  const fn = 'addRmsNormForward';
  requireF32(fn, { a, b, w, s, y, rstd });
  const { R, D } = rowsAndCols(fn, a, w);
  for (const [name, t] of [['b', b], ['s', s], ['y', y]] as const) sameCount(fn, name, t, R * D, `a is ${shapeStr(a.shape)}`);
  sameCount(fn, 'rstd', rstd, R, 'one per row');
  const read: [string, Tensor][] = [['a', a], ['b', b], ['w', w]];
  distinct(fn, ['s', s], ...read);
  distinct(fn, ['y', y], ...read, ['s', s]);
  distinct(fn, ['rstd', rstd], ...read, ['s', s], ['y', y]);
  if (!(opts.eps >= 0)) throw new Error(`${fn}: eps = ${opts.eps} must be a non-negative number`);
  if (R === 0 || D === 0) return;
  gpu.dispatch(pipeline(gpu, 'add_rms_norm_forward', workgroupSize(D), opts.offset ?? 0), [a, b, w, s, y, rstd], gpu.grid(R), [R, D, f32(opts.eps), 0, 0, 0]);
}

/**
 * Backward of addRmsNormForward: dS already holds the gradient reaching the sum from elsewhere
 * (the residual stream); the norm's input gradient is added to it, and dS is then the gradient of
 * both a and b. dw (=|+=) as rmsNormBackward.
 */
export function addRmsNormBackward(
  gpu: Gpu, dy: Tensor, s: Tensor, w: Tensor, rstd: Tensor, dS: Tensor, dw: Tensor | null, opts: Omit<RmsNormBackwardOptions, 'accumulateDx'> = {},
): void {
  rmsNormBackward(gpu, dy, s, w, rstd, dS, dw, { ...opts, accumulateDx: true });
}

/** y = x * rstd * (offset + w) * silu(z) over the last dimension (Qwen3.5's RMSNormGated); rstd [rows]. */
export function rmsNormGatedForward(gpu: Gpu, x: Tensor, z: Tensor, w: Tensor, y: Tensor, rstd: Tensor, opts: RmsNormOptions): void {
  const fn = 'rmsNormGatedForward';
  requireF32(fn, { x, z, w, y, rstd });
  const { R, D } = rowsAndCols(fn, x, w);
  sameCount(fn, 'z', z, R * D, `x is ${shapeStr(x.shape)}`);
  sameCount(fn, 'y', y, R * D, `x is ${shapeStr(x.shape)}`);
  sameCount(fn, 'rstd', rstd, R, 'one per row');
  distinct(fn, ['y', y], ['x', x], ['z', z], ['w', w]);
  distinct(fn, ['rstd', rstd], ['x', x], ['z', z], ['w', w], ['y', y]);
  if (!(opts.eps >= 0)) throw new Error(`${fn}: eps = ${opts.eps} must be a non-negative number`);
  if (R === 0 || D === 0) return;
  gpu.dispatch(pipeline(gpu, 'rms_norm_gated_forward', workgroupSize(D), opts.offset ?? 0), [x, z, w, y, rstd], gpu.grid(R), [R, D, f32(opts.eps), 0, 0, 0]);
}

/** dx (=|+=) and dz (overwritten); dw (=|+=) summed over rows when given. */
export function rmsNormGatedBackward(
  gpu: Gpu, dy: Tensor, x: Tensor, z: Tensor, w: Tensor, rstd: Tensor, dx: Tensor, dz: Tensor, dw: Tensor | null, opts: RmsNormBackwardOptions = {},
): void {
  const fn = 'rmsNormGatedBackward';
  requireF32(fn, { dy, x, z, w, rstd, dx, dz, dw });
  const { R, D } = rowsAndCols(fn, x, w);
  for (const [name, t] of [['dy', dy], ['z', z], ['dx', dx], ['dz', dz]] as const) sameCount(fn, name, t, R * D, `x is ${shapeStr(x.shape)}`);
  sameCount(fn, 'rstd', rstd, R, 'one per row');
  const read: [string, Tensor][] = [['dy', dy], ['x', x], ['z', z], ['w', w], ['rstd', rstd]];
  distinct(fn, ['dx', dx], ...read, ['dz', dz]);
  distinct(fn, ['dz', dz], ...read);
  if (dw) {
    sameCount(fn, 'dw', dw, D, 'one per column');
    distinct(fn, ['dw', dw], ...read, ['dx', dx], ['dz', dz]);
  }
  if (R === 0 || D === 0) return;
  const dn = scratch(gpu, 'rmsNormGated.dn', R * D);
  gpu.dispatch(
    pipeline(gpu, 'rms_norm_gated_backward_input', workgroupSize(D), opts.offset ?? 0), [dy, x, z, w, rstd, dx, dz, dn], gpu.grid(R),
    [R, D, f32(0), opts.accumulateDx ? 1 : 0, 0, 0],
  );
  if (dw) weightGradient(gpu, dn, x, rstd, dw, R, D, opts.accumulateDw ?? false);
}

/** y = x / sqrt(sum(x^2) + eps) over the last dimension of D (FLA's l2norm); r [rows] keeps the factor. */
export function l2NormForward(gpu: Gpu, x: Tensor, D: number, y: Tensor, r: Tensor, opts: { eps: number }): void {
  const fn = 'l2NormForward';
  requireF32(fn, { x, y, r });
  const R = rowsOf(fn, x, D);
  sameCount(fn, 'y', y, R * D, `x is ${shapeStr(x.shape)}`);
  sameCount(fn, 'r', r, R, 'one per row');
  distinct(fn, ['y', y], ['x', x]);
  distinct(fn, ['r', r], ['x', x], ['y', y]);
  if (!(opts.eps >= 0)) throw new Error(`${fn}: eps = ${opts.eps} must be a non-negative number`);
  if (R === 0) return;
  gpu.dispatch(pipeline(gpu, 'l2_norm_forward', workgroupSize(D)), [x, y, r], gpu.grid(R), [R, D, f32(opts.eps), 0, 0, 0]);
}

/** dx (=|+=) the input gradient of l2NormForward. */
export function l2NormBackward(gpu: Gpu, dy: Tensor, x: Tensor, D: number, r: Tensor, dx: Tensor, opts: { accumulateDx?: boolean } = {}): void {
  const fn = 'l2NormBackward';
  requireF32(fn, { dy, x, r, dx });
  const R = rowsOf(fn, x, D);
  sameCount(fn, 'dy', dy, R * D, `x is ${shapeStr(x.shape)}`);
  sameCount(fn, 'dx', dx, R * D, `x is ${shapeStr(x.shape)}`);
  sameCount(fn, 'r', r, R, 'one per row');
  distinct(fn, ['dx', dx], ['dy', dy], ['x', x], ['r', r]);
  if (R === 0) return;
  gpu.dispatch(pipeline(gpu, 'l2_norm_backward', workgroupSize(D)), [dy, x, r, dx], gpu.grid(R), [R, D, f32(0), opts.accumulateDx ? 1 : 0, 0, 0]);
}

/** Rows of D in x (q/k as [T, H * Dk] or [T, H, Dk] alike). */
function rowsOf(fn: string, x: Tensor, D: number): number {
  const R = numel(x.shape) / D;
  if (!Number.isInteger(D) || D < 1 || !Number.isInteger(R)) throw new Error(`${fn}: x ${shapeStr(x.shape)} is not rows of ${D}`);
  return R;
}
