// Optimizer kernels: torch.optim.AdamW (element-wise, in torch's operation order), the global
// gradient norm (deterministic two-level reduction) and clip_grad_norm_'s clip factor, all on the
// GPU with no readback: the clip factor is a 1-element tensor that adamw() reads.

import source from '../../shaders/optim.wgsl';
import { f32, GpuError, type Gpu } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';
import { scratch } from './scratch';

type Entry = 'adamw' | 'adamw_scaled' | 'grad_norm_squared_partial' | 'grad_norm_squared_sum' | 'clip_scale';

const pipeline = (gpu: Gpu, entry: Entry): GPUComputePipeline => gpu.pipeline(entry, () => shaderVariant(source, entry));

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count after this update (torch's state['step'] once incremented). */
  step: number;
  /** f32 [1]: multiply g by it first (the clip factor from clipScale()). */
  gradScale?: Tensor;
}

/**
 * One torch.optim.AdamW update of p, in place, with its moments m and v (f32, zero before the
 * first step). The scalars are computed in f64 like torch's Python floats:
 *   p *= 1 - lr*wd;  m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g²
 *   p += -(lr / (1 - beta1^t)) * (m / (sqrt(v) / sqrt(1 - beta2^t) + eps))
 * (addcdiv evaluated as value * (m / denom), torch's CUDA order).
 */
export function adamw(gpu: Gpu, p: Tensor, g: Tensor, m: Tensor, v: Tensor, opts: AdamWOptions): void {
  const n = numel(p.shape);
  for (const [name, t] of [['p', p], ['g', g], ['m', m], ['v', v]] as const) {
    if (t.dtype !== 'f32') throw new GpuError(`adamw: ${name} must be f32, not ${t.dtype}`);
    if (numel(t.shape) !== n) throw new GpuError(`adamw: ${name} ${shapeStr(t.shape)} does not match p ${shapeStr(p.shape)}`);
  }
  const { lr, beta1, beta2, eps, weightDecay, step } = opts;
  if (!Number.isInteger(step) || step < 1) throw new GpuError(`adamw: step must be a positive integer (1-based), got ${step}`);
  if (opts.gradScale && (opts.gradScale.dtype !== 'f32' || numel(opts.gradScale.shape) < 1))
    throw new GpuError(`adamw: gradScale must be an f32 tensor of one element`);
  if (n === 0) return;
  const bc1 = 1 - beta1 ** step;
  const bc2 = 1 - beta2 ** step;
  const w1 = 1 - beta1;
  const params = [
    n, Math.abs(w1) < 0.5 ? 0 : 1,
    f32(1 - lr * weightDecay), f32(w1), f32(beta2), f32(1 - beta2), f32(lr / bc1), f32(Math.sqrt(bc2)), f32(eps),
  ];
  const groups = gpu.grid(Math.ceil(n / 256));
  if (opts.gradScale) {
    const scale = { ...opts.gradScale, shape: [1] };
    gpu.dispatch(pipeline(gpu, 'adamw_scaled'), [p, g, m, v, scale], groups, params);
  } else {
    gpu.dispatch(pipeline(gpu, 'adamw'), [p, g, m, v], groups, params);
  }
}

/** Elements per workgroup of the first reduction level before the workgroup count is capped. */
const SUMSQ_BLOCK = 4096;
const SUMSQ_MAX_GROUPS = 1024;

/** Workgroups of the first level for a tensor of n elements (depends on n only: deterministic). */
const sumsqGroups = (n: number): number => Math.min(SUMSQ_MAX_GROUPS, Math.max(1, Math.ceil(n / SUMSQ_BLOCK)));

/**
 * out[0] = sum over all tensors of sum(x²), overwritten. Deterministic: each tensor is cut into a
 * number of workgroups fixed by its length, each summing a fixed strided set in a fixed tree; a
 * single workgroup then sums the partials in a fixed order. `workspace` (f32, one element per
 * partial, see gradNormPartials) defaults to a cached per-Gpu buffer.
 */
export function gradNormSquared(gpu: Gpu, grads: readonly Tensor[], out: Tensor, opts: { workspace?: Tensor } = {}): void {
  if (out.dtype !== 'f32' || numel(out.shape) < 1) throw new GpuError(`gradNormSquared: out must be f32 [1], got ${out.dtype} ${shapeStr(out.shape)}`);
  grads.forEach((g, i) => {
    if (g.dtype !== 'f32') throw new GpuError(`gradNormSquared: gradient ${i} ${shapeStr(g.shape)} is ${g.dtype}, expected f32`);
  });
  const total = gradNormPartials(grads);
  const one = { ...out, shape: [1] };
  if (total === 0) {
    gpu.zero(one);
    return;
  }
  let ws = opts.workspace;
  if (ws && (ws.dtype !== 'f32' || numel(ws.shape) < total))
    throw new GpuError(`gradNormSquared: workspace ${ws.dtype} ${shapeStr(ws.shape)} needs ${total} f32 elements`);
  ws ??= scratch(gpu, 'gradNorm', total);
  const partial = pipeline(gpu, 'grad_norm_squared_partial');
  let base = 0;
  for (const g of grads) {
    const n = numel(g.shape);
    if (n === 0) continue;
    const groups = sumsqGroups(n);
    gpu.dispatch(partial, [g, ws], [groups], [n, base, groups, f32(0)]);
    base += groups;
  }
  gpu.dispatch(pipeline(gpu, 'grad_norm_squared_sum'), [{ ...ws, shape: [total] }, one], [1], [total, 0, 0, f32(0)]);
}

/** Number of partial sums (workspace elements) gradNormSquared uses for these tensors. */
export function gradNormPartials(grads: readonly Tensor[]): number {
  let total = 0;
  for (const g of grads) {
    const n = numel(g.shape);
    if (n > 0) total += sumsqGroups(n);
  }
  return total;
}

/** out[0] = min(1, maxNorm / (sqrt(sumSq[0]) + 1e-6)), as torch.nn.utils.clip_grad_norm_ (NaN stays NaN). */
export function clipScale(gpu: Gpu, sumSq: Tensor, maxNorm: number, out: Tensor): void {
  if (sumSq.dtype !== 'f32' || out.dtype !== 'f32') throw new GpuError('clipScale: sumSq and out must be f32');
  if (sumSq.buffer === out.buffer) throw new GpuError('clipScale: sumSq and out must live in different buffers');
  gpu.dispatch(pipeline(gpu, 'clip_scale'), [{ ...sumSq, shape: [1] }, { ...out, shape: [1] }], [1], [0, 0, 0, f32(maxNorm)]);
}
