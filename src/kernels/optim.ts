// Optimizer kernels: torch.optim.AdamW (element-wise, in torch's operation order; per tensor, or
// over all the tensors of an arena at once, described by a segment table), Adam-mini's
// block-wise second moments, Muon's momentum and Newton-Schulz orthogonalisation, transformers'
// AdamW direction (GaLore, APOLLO), APOLLO's scaling and limiter, BAdam's masked Adam, the global
// gradient norm (deterministic two-level reduction) and clip_grad_norm_'s clip factor, all on the
// GPU with no readback: the clip factor is a 1-element tensor the update kernels read.

import source from '../../shaders/optim.wgsl';
import { f32, GpuError, type Gpu } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';
import { gemm } from './matmul';
import { scratch } from './scratch';

type Entry = 'adamw' | 'adamw_scaled' | 'adamw_segments' | 'grad_norm_squared_partial' | 'grad_norm_squared_segments' | 'grad_norm_squared_sum' | 'clip_scale'
  | 'adam_mini_vmean' | 'adam_mini_update' | 'muon_momentum' | 'muon_normalize' | 'muon_apply'
  | 'adam_direction' | 'apollo_factor' | 'apollo_scale_grad' | 'apollo_limit' | 'scaled_step' | 'masked_gather' | 'masked_adam';

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

/** A tensor inside an arena buffer: its elements [first, end) and its hyper-parameter group. */
export interface Segment {
  first: number;
  end: number;
  group: number;
}

/** The segments of one arena on the GPU (vec4u(first, end, group, 0) each), for the fused kernels. */
export interface SegmentTable {
  tensor: Tensor;
  count: number;
  /** The last segment's end: the elements the arena's bindings must hold. */
  span: number;
  /** Elements inside segments. */
  elements: number;
}

/** Uploads segments sorted by position, each non-empty and clear of the next. */
export function segmentTable(gpu: Gpu, segments: readonly Segment[], label = 'segments'): SegmentTable {
  if (segments.length === 0) throw new GpuError(`${label}: a segment table needs at least one segment`);
  const rows = new Uint32Array(segments.length * 4);
  let elements = 0;
  segments.forEach((sg, k) => {
    const prev = segments[k - 1];
    if (!(Number.isInteger(sg.first) && Number.isInteger(sg.end) && sg.first >= 0 && sg.end > sg.first) || (prev && sg.first < prev.end))
      throw new GpuError(`${label}: segment ${k} [${sg.first}, ${sg.end}) is empty, unsorted or overlaps the one before`);
    if (!Number.isInteger(sg.group) || sg.group < 0 || sg.group >= SEGMENT_GROUPS)
      throw new GpuError(`${label}: segment ${k} has group ${sg.group}; groups are 0 to ${SEGMENT_GROUPS - 1}`);
    rows.set([sg.first, sg.end, sg.group, 0], k * 4);
    elements += sg.end - sg.first;
  });
  return { tensor: gpu.upload(rows, [segments.length, 4], 'u32', label), count: segments.length, span: segments.at(-1)!.end, elements };
}

/** Hyper-parameter groups one adamwSegments dispatch takes (distinct learning rate and weight decay). */
export const SEGMENT_GROUPS = 8;

export interface SegmentAdamWOptions extends Omit<AdamWOptions, 'lr' | 'weightDecay' | 'gradScale'> {
  /** Learning rate and weight decay of each group the table names. */
  groups: readonly { lr: number; weightDecay: number }[];
  /** f32 [1]: g is multiplied by it first (the clip factor, or 1). */
  gradScale: Tensor;
}

/**
 * adamw() over every segment of an arena in one dispatch: p, g, m and v are the arena's buffers
 * (same layout), each element updated with its segment's group; elements outside segments are
 * left as they are.
 */
export function adamwSegments(gpu: Gpu, p: Tensor, g: Tensor, m: Tensor, v: Tensor, table: SegmentTable, opts: SegmentAdamWOptions): void {
  for (const [name, t] of [['p', p], ['g', g], ['m', m], ['v', v]] as const) {
    if (t.dtype !== 'f32') throw new GpuError(`adamwSegments: ${name} must be f32, not ${t.dtype}`);
    if (numel(t.shape) < table.span) throw new GpuError(`adamwSegments: ${name} ${shapeStr(t.shape)} is shorter than the segments' ${table.span} elements`);
  }
  const { beta1, beta2, eps, step, groups } = opts;
  if (!Number.isInteger(step) || step < 1) throw new GpuError(`adamwSegments: step must be a positive integer (1-based), got ${step}`);
  if (groups.length < 1 || groups.length > SEGMENT_GROUPS) throw new GpuError(`adamwSegments: ${groups.length} groups; 1 to ${SEGMENT_GROUPS} are supported`);
  const bc1 = 1 - beta1 ** step;
  const w1 = 1 - beta1;
  const perGroup = Array.from({ length: SEGMENT_GROUPS }, (_, k) => {
    const grp = groups[k];
    return grp ? [f32(1 - grp.lr * grp.weightDecay), f32(grp.lr / bc1)] : [f32(1), f32(0)];
  }).flat();
  const params = [
    table.span, table.count, Math.abs(w1) < 0.5 ? 0 : 1, 0,
    f32(w1), f32(beta2), f32(1 - beta2), f32(Math.sqrt(1 - beta2 ** step)), f32(eps), f32(0), f32(0), f32(0),
    ...perGroup,
  ];
  gpu.dispatch(pipeline(gpu, 'adamw_segments'), [p, g, m, v, one(opts.gradScale), table.tensor], gpu.grid(Math.ceil(table.span / 256)), params);
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

/**
 * gradNormSquared over the segments of arenas (the gradients' buffers, with their tables): one
 * dispatch per arena and one for the sum, deterministic like gradNormSquared.
 */
export function gradNormSquaredSegments(gpu: Gpu, arenas: readonly { grads: Tensor; table: SegmentTable }[], out: Tensor): void {
  if (out.dtype !== 'f32' || numel(out.shape) < 1) throw new GpuError(`gradNormSquaredSegments: out must be f32 [1], got ${out.dtype} ${shapeStr(out.shape)}`);
  for (const { grads, table } of arenas) {
    if (grads.dtype !== 'f32' || numel(grads.shape) < table.span)
      throw new GpuError(`gradNormSquaredSegments: gradients ${grads.dtype} ${shapeStr(grads.shape)} do not hold f32 segments up to ${table.span}`);
  }
  const total = arenas.reduce((sum, a) => sum + sumsqGroups(a.table.elements), 0);
  if (total === 0) {
    gpu.zero(one(out));
    return;
  }
  const ws = scratch(gpu, 'gradNorm', total);
  let base = 0;
  for (const { grads, table } of arenas) {
    const groups = sumsqGroups(table.elements);
    gpu.dispatch(pipeline(gpu, 'grad_norm_squared_segments'), [grads, ws, table.tensor], [groups], [table.count, base, groups, 0]);
    base += groups;
  }
  gpu.dispatch(pipeline(gpu, 'grad_norm_squared_sum'), [{ ...ws, shape: [total] }, one(out)], [1], [total, 0, 0, f32(0)]);
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

function expectF32(fn: string, tensors: Record<string, Tensor>, n: number): void {
  for (const [name, t] of Object.entries(tensors)) {
    if (t.dtype !== 'f32') throw new GpuError(`${fn}: ${name} must be f32, not ${t.dtype}`);
    if (numel(t.shape) !== n) throw new GpuError(`${fn}: ${name} ${shapeStr(t.shape)} does not have ${n} elements`);
  }
}

const one = (t: Tensor): Tensor => ({ ...t, shape: [1] });

export interface AdamMiniOptions extends Omit<AdamWOptions, 'gradScale'> {
  /** Elements sharing one second moment (a head, a row, the whole tensor, or 1 for biases). */
  blockSize: number;
  /** f32 [1]: the gradient-clipping factor (1 without clipping). */
  gradScale: Tensor;
}

/**
 * One Adam-mini update (adam-mini 1.1.1, zyushun/Adam-mini): the second moment is the running mean
 * of g² over each block of `blockSize` consecutive elements (vmean has one element per block):
 *   vmean = beta2 vmean + (1 - beta2) mean_block(g²);  p *= 1 - lr*wd;  m = lerp(m, g, 1 - beta1)
 *   p -= (lr / (1 - beta1^t)) * m / (sqrt(vmean) / sqrt(1 - beta2^t) + eps)
 */
export function adamMini(gpu: Gpu, p: Tensor, g: Tensor, m: Tensor, vmean: Tensor, opts: AdamMiniOptions): void {
  const n = numel(p.shape);
  const B = opts.blockSize;
  if (!Number.isInteger(B) || B < 1) throw new GpuError(`adamMini: blockSize must be a positive integer, got ${B}`);
  const blocks = Math.ceil(n / B);
  expectF32('adamMini', { g, m }, n);
  expectF32('adamMini', { vmean }, blocks);
  const { lr, beta1, beta2, eps, weightDecay, step } = opts;
  if (!Number.isInteger(step) || step < 1) throw new GpuError(`adamMini: step must be a positive integer (1-based), got ${step}`);
  if (n === 0) return;
  const w1 = 1 - beta1;
  const params = [n, B, blocks, Math.abs(w1) < 0.5 ? 0 : 1, f32(1 - lr * weightDecay), f32(w1), f32(beta2), f32(1 - beta2),
    f32(lr / (1 - beta1 ** step)), f32(Math.sqrt(1 - beta2 ** step)), f32(eps)];
  gpu.dispatch(pipeline(gpu, 'adam_mini_vmean'), [g, vmean, one(opts.gradScale)], gpu.grid(blocks), params);
  gpu.dispatch(pipeline(gpu, 'adam_mini_update'), [p, g, m, vmean, one(opts.gradScale)], gpu.grid(Math.ceil(n / 256)), params);
}

export interface MuonMomentumOptions {
  momentum: number;
  nesterov: boolean;
  /** f32 [1]: the gradient-clipping factor (1 without clipping). */
  gradScale: Tensor;
}

/** Muon's SGD momentum: buf = mu buf + g; u = g + mu buf (Nesterov) or buf. */
export function muonMomentum(gpu: Gpu, g: Tensor, buf: Tensor, u: Tensor, opts: MuonMomentumOptions): void {
  const n = numel(g.shape);
  expectF32('muonMomentum', { g, buf, u }, n);
  if (n === 0) return;
  gpu.dispatch(pipeline(gpu, 'muon_momentum'), [g, buf, u, one(opts.gradScale)], gpu.grid(Math.ceil(n / 256)),
    [n, opts.nesterov ? 1 : 0, f32(opts.momentum), f32(1), f32(0)]);
}

/** Quintic Newton-Schulz coefficients of Muon (Keller Jordan's), chosen for the slope at zero. */
export const NEWTON_SCHULZ = [3.4445, -4.775, 2.0315] as const;

/** Scratch for newtonSchulz on an [R, C] matrix: two [s, s] (s = min(R, C)), one [R, C], one [1]. */
export interface NewtonSchulzScratch {
  A: Tensor;
  B: Tensor;
  Y: Tensor;
  sumSq: Tensor;
}

/**
 * Orthogonalises X [R, C] in place of a Newton-Schulz iteration's buffers: X / (||X||_F + 1e-7),
 * then `steps` quintic iterations X = aX + (bA + cA²)X with A = X Xᵀ (or, for R > C, the
 * equivalent X = aX + X(bA + cA²) with A = XᵀX, which avoids transposing). Returns the tensor that
 * holds the result: X or scratch.Y. Muon's reference runs this in bfloat16; here it is f32.
 */
export function newtonSchulz(gpu: Gpu, X: Tensor, steps: number, work: NewtonSchulzScratch): Tensor {
  if (X.shape.length !== 2) throw new GpuError(`newtonSchulz: X ${shapeStr(X.shape)} must be 2-D`);
  const [R, C] = X.shape as [number, number];
  const s = Math.min(R, C);
  expectF32('newtonSchulz', { A: work.A, B: work.B }, s * s);
  expectF32('newtonSchulz', { X, Y: work.Y }, R * C);
  const n = R * C;
  gradNormSquared(gpu, [X], work.sumSq);
  gpu.dispatch(pipeline(gpu, 'muon_normalize'), [X, one(work.sumSq)], gpu.grid(Math.ceil(n / 256)), [n, 0, f32(0), f32(1), f32(0)]);
  const [a, b, c] = NEWTON_SCHULZ;
  const wide = R <= C;
  let cur = X, next = work.Y;
  for (let i = 0; i < steps; i++) {
    // A = X Xᵀ (wide) or Xᵀ X (tall): [s, s]
    gemm(gpu, wide ? { a: cur, b: cur, c: work.A, M: s, N: s, K: C, transB: true } : { a: cur, b: cur, c: work.A, M: s, N: s, K: R, transA: true });
    // B = b A + c A A
    gpu.copy(work.A, work.B, s * s * 4);
    gemm(gpu, { a: work.A, b: work.A, c: work.B, M: s, N: s, K: s, alpha: c, beta: b });
    // next = a X + B X (wide) or a X + X B (tall)
    gpu.copy(cur, next, n * 4);
    gemm(gpu, wide ? { a: work.B, b: cur, c: next, M: R, N: C, K: R, beta: a } : { a: cur, b: work.B, c: next, M: R, N: C, K: C, beta: a });
    [cur, next] = [next, cur];
  }
  return cur;
}

/** p = p (1 - lr wd) - adjustedLr u (Muon's update of a 2-D parameter). */
export function muonApply(gpu: Gpu, p: Tensor, u: Tensor, opts: { decay: number; stepSize: number }): void {
  const n = numel(p.shape);
  expectF32('muonApply', { p, u }, n);
  if (n === 0) return;
  gpu.dispatch(pipeline(gpu, 'muon_apply'), [p, u], gpu.grid(Math.ceil(n / 256)), [n, 0, f32(0), f32(opts.decay), f32(opts.stepSize)]);
}

export interface DirectionOptions {
  beta1: number;
  beta2: number;
  eps: number;
  /** f32 [1]: the gradient-clipping factor (1 without clipping). */
  gradScale: Tensor;
}

/**
 * transformers' AdamW direction (the rule galore_torch and apollo_torch copy): with s = gradScale,
 * m = b1 m + (1 - b1) s g;  v = b2 v + (1 - b2) (s g)²;  u = m / (sqrt(v) + eps).
 * The caller's step size carries the bias corrections: lr sqrt(1 - b2^t) / (1 - b1^t).
 */
export function adamDirection(gpu: Gpu, g: Tensor, m: Tensor, v: Tensor, u: Tensor, o: DirectionOptions): void {
  const n = numel(g.shape);
  expectF32('adamDirection', { g, m, v, u }, n);
  if (n === 0) return;
  gpu.dispatch(pipeline(gpu, 'adam_direction'), [g, m, v, u, one(o.gradScale)], gpu.grid(Math.ceil(n / 256)),
    [n, f32(o.beta1), f32(o.beta2), f32(o.eps)]);
}

/** Where APOLLO's channels lie in a projected [rows, cols] matrix: along rows, along columns, or one tensor. */
export type ChannelAxis = 'row' | 'column' | 'tensor';

/**
 * APOLLO's scaling factors: for each channel c of the projected gradient `low` and the Adam
 * direction `u` (both [rows, cols]), factor[c] = ||u_c|| / (||s low_c|| + 1e-8). A row channel
 * holds the cols entries of a row; a column channel the rows entries of a column.
 */
export function apolloFactor(gpu: Gpu, low: Tensor, u: Tensor, factor: Tensor, axis: ChannelAxis, gradScale: Tensor): void {
  if (low.shape.length !== 2) throw new GpuError(`apolloFactor: low ${shapeStr(low.shape)} must be 2-D`);
  const [R, C] = low.shape as [number, number];
  expectF32('apolloFactor', { low, u }, R * C);
  const [channels, len, strideCh, strideK] = axis === 'row' ? [R, C, C, 1] : axis === 'column' ? [C, R, 1, C] : [1, R * C, 0, 1];
  expectF32('apolloFactor', { factor }, channels);
  gpu.dispatch(pipeline(gpu, 'apollo_factor'), [low, u, factor, one(gradScale)], gpu.grid(channels), [channels, len, strideCh, strideK]);
}

/** y = s g factor[channel] mul: the raw gradient [rows, cols] scaled per row, per column or as a whole. */
export function apolloScaleGrad(gpu: Gpu, g: Tensor, factor: Tensor, y: Tensor, axis: ChannelAxis, gradScale: Tensor, mul = 1): void {
  if (g.shape.length !== 2) throw new GpuError(`apolloScaleGrad: g ${shapeStr(g.shape)} must be 2-D`);
  const [R, C] = g.shape as [number, number];
  expectF32('apolloScaleGrad', { g, y }, R * C);
  expectF32('apolloScaleGrad', { factor }, axis === 'row' ? R : axis === 'column' ? C : 1);
  gpu.dispatch(pipeline(gpu, 'apollo_scale_grad'), [g, factor, y, one(gradScale)], gpu.grid(Math.ceil((R * C) / 256)),
    [R * C, C, axis === 'tensor' ? 0 : axis === 'row' ? 1 : 2, f32(mul)]);
}

/**
 * Fira's norm-growth limiter as APOLLO applies it, from sumSq = ||y||²: prev < 0 (nothing recorded)
 * keeps y (limiter 1) and records ||y||; otherwise limiter = max(||y|| / (prev + 1e-8), 1.01) / 1.01
 * and prev = ||y|| / limiter. prev and limiter are f32 [1].
 */
export function apolloLimit(gpu: Gpu, sumSq: Tensor, prev: Tensor, limiter: Tensor): void {
  expectF32('apolloLimit', { sumSq: one(sumSq), prev, limiter }, 1);
  gpu.dispatch(pipeline(gpu, 'apollo_limit'), [one(sumSq), prev, limiter], [1]);
}

/** p = (p - stepSize y / limiter[0]) decay: transformers' AdamW step with its weight decay after the update. */
export function scaledStep(gpu: Gpu, p: Tensor, y: Tensor, limiter: Tensor, o: { stepSize: number; decay: number }): void {
  const n = numel(p.shape);
  expectF32('scaledStep', { p, y }, n);
  if (n === 0) return;
  gpu.dispatch(pipeline(gpu, 'scaled_step'), [p, y, one(limiter)], gpu.grid(Math.ceil(n / 256)), [n, f32(o.stepSize), f32(o.decay)]);
}

function expectIndices(fn: string, idx: Tensor, k: number): void {
  if (idx.dtype !== 'u32' || numel(idx.shape) !== k) throw new GpuError(`${fn}: idx must be u32 [${k}], got ${idx.dtype} ${shapeStr(idx.shape)}`);
}

/** gm[t] = g[idx[t]] for the k masked entries. */
export function maskedGather(gpu: Gpu, g: Tensor, idx: Tensor, gm: Tensor): void {
  const k = numel(gm.shape);
  expectIndices('maskedGather', idx, k);
  if (k === 0) return;
  gpu.dispatch(pipeline(gpu, 'masked_gather'), [g, idx, gm], gpu.grid(Math.ceil(k / 256)), [k, f32(0), f32(0), f32(0), f32(0)]);
}

export interface MaskedAdamOptions {
  beta1: number;
  beta2: number;
  eps: number;
  /** lr sqrt(1 - b2^t) / (1 - b1^t), t counted since the mask was drawn. */
  stepSize: number;
  gradScale: Tensor;
}

/**
 * BAdam's ratio-mode sparse Adam on the k entries idx of p, with compact moments m, v [k] and the
 * gathered gradients gm [k]: m += (s gm - m)(1 - b1);  v += ((s gm)² - v)(1 - b2);
 * p[idx] -= stepSize m / (sqrt(v) + eps). No weight decay (BlockOptimizerRatio applies none).
 */
export function maskedAdam(gpu: Gpu, p: Tensor, gm: Tensor, idx: Tensor, m: Tensor, v: Tensor, o: MaskedAdamOptions): void {
  const k = numel(gm.shape);
  expectIndices('maskedAdam', idx, k);
  expectF32('maskedAdam', { gm, m, v }, k);
  if (k === 0) return;
  gpu.dispatch(pipeline(gpu, 'masked_adam'), [p, gm, idx, m, v, one(o.gradScale)], gpu.grid(Math.ceil(k / 256)),
    [k, f32(o.beta1), f32(o.beta2), f32(o.eps), f32(o.stepSize)]);
}
