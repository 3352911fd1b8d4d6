// RMSNorm over the last dimension (LLaMA/Qwen/Mistral w, Gemma's 1 + w), also used for the q/k
// norms of Qwen3 and Gemma 3 with rows = tokens * heads and D = head_dim. The forward saves the
// per-row rstd for the backward. The weight gradient is a deterministic reduction over rows (no
// float atomics): partial sums per chunk of rows, then a sum over chunks in a fixed order.

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

type Entry = 'rms_norm_forward' | 'rms_norm_backward_input' | 'rms_norm_backward_weight_partial' | 'rms_norm_backward_weight_sum';

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
  if (!dw) return;

  // Enough workgroups to fill a large GPU; the chunking depends only on the shape (deterministic).
  const colBlocks = Math.ceil(D / DW_COLS);
  const maxChunks = Math.min(gpu.caps.limits.maxComputeWorkgroupsPerDimension, Math.ceil(R / 16));
  let chunks = Math.max(1, Math.min(maxChunks, Math.ceil(1024 / colBlocks)));
  const chunkRows = Math.ceil(R / chunks);
  chunks = Math.ceil(R / chunkRows);
  const acc = opts.accumulateDw ? 1 : 0;
  const params = [R, D, f32(0), acc, chunkRows, chunks];
  const partial = pipeline(gpu, 'rms_norm_backward_weight_partial', 256);
  if (chunks === 1) {
    gpu.dispatch(partial, [dy, x, rstd, dw], [colBlocks, 1], params);
    return;
  }
  const part = scratch(gpu, 'rmsNorm.dwPartials', chunks * D);
  gpu.dispatch(partial, [dy, x, rstd, part], [colBlocks, chunks], params);
  gpu.dispatch(pipeline(gpu, 'rms_norm_backward_weight_sum', 256), [part, dw], [Math.ceil(D / 256)], params);
}
