// LoRA and DoRA linear layers, forward and backward, as PEFT (0.20 / 0.21, src/peft/tuners/lora/
// layer.py, variants.py DoraLinearVariant, dora.py DoraLinearLayer) defines them. The big products
// go through matmul.ts (so they follow whatever weight formats linear() accepts); shaders/lora.wgsl
// holds the DoRA pieces gemm cannot express.
//
// Notation: x [T, K], W [N, K] (frozen base), A [r, K], B [N, r], s = scaling (alpha/r, or
// alpha/sqrt(r) with rsLoRA), b = bias [N], xl = the LoRA branch's input, xa = xl Aᵀ [T, r].
//
// lora_dropout (training only; opts.dropout): xl = dropout(x) = x ⊙ M / (1 - p), an inverted
// dropout whose mask M[t, k] ∈ {0, 1} is a hash of (seed, step, micro-batch, site, t, k) (see
// dropoutKey and shaders/lora.wgsl `lora_dropout`). Nothing is stored: backward regenerates M from
// the same counters, so a recomputed forward and a resumed run see the same masks. Without dropout
// (evaluation, generation, p = 0: PEFT's nn.Identity) xl = x. PEFT main (2026-08, 0.20.1.dev0),
// tuners/lora/layer.py Linear.forward:  result = result + lora_B(lora_A(dropout(x))) * scaling
//
// LoRA:  y = x Wᵀ + b + s xa Bᵀ
//   dxl = s (dY B) A,  dx = dY W + dxl          (without dropout)
//                      dx = dY W + M/(1-p) ⊙ dxl (with dropout: the base path is not masked)
//   dA  = s (dY B)ᵀ xl,  dB = s dYᵀ xa
//
// DoRA (DoraLinearLayer.forward with the norm detached, DoRA paper §4.3):
//   c = ||W + s B A||_row  [N], a constant for autograd; g = m / c (m = lora_magnitude_vector)
//   PEFT computes result = base(x) + (g - 1)·base_result + g·s·lora(xl), where base(x) = x Wᵀ + b.
//   variants.py DoraLinearVariant.forward: `if isinstance(dropout, nn.Identity) or not
//   module.training: base_result = result` else `x = dropout(x); base_result = None`, and
//   dora.py DoraLinearLayer.forward: a given base_result has the bias subtracted, a missing one is
//   F.linear(x, weight) of the dropped x (no bias); then `result_dora = (mag_norm_scale - 1) *
//   base_result + mag_norm_scale * lora_result * scaling`. So
//   without dropout:  y = g ⊙ (x Wᵀ + s xa Bᵀ) + b           (the bias is not scaled)
//   with dropout:     y = x Wᵀ + b + (g - 1) ⊙ (xl Wᵀ) + g ⊙ s xa Bᵀ
//   (⊙ scales column n by g[n].) With u = xl Wᵀ + s xa Bᵀ (saved.baseOut holds xl Wᵀ) and
//   D = dY ⊙ g, since c is constant:
//   dm[n] = Σ_t dY[t, n] u[t, n] / c[n]
//   dA = s (D B)ᵀ xl,  dB = s Dᵀ xa                (the LoRA gradients with dY replaced by D)
//   without dropout:  dx = D W + s (D B) A
//   with dropout:     dx = dY W + M/(1-p) ⊙ dxl,  dxl = (dY ⊙ (g - 1)) W + s (D B) A
//   No gradient flows through c (PEFT detaches weight_norm), so dA/dB are not the gradients of the
//   "true" DoRA function; they are what PEFT trains with.
//
// dA and dB sum over every token into r x K and N x r: matmul.ts splits that reduction (split-K)
// so these small products still start hundreds of workgroups.
// Sites that read the same x (q/k/v, gate/up) are not stacked into one x·[A_q; A_k; A_v]ᵀ product
// and one dA product: each PEFT module has its own lora_A tensor and its own dropout mask (its xl
// differs as soon as lora_dropout > 0), saved.xa and dY·B are dense [T, r] per site (the stacked
// product writes rows of 3r), and the model's backward (model/forward.ts) runs one site at a time
// with its own dY. With split-K each dA already fills the GPU; stacking would save re-reading x.
//
// c is recomputed on every forward from W, A and B without materialising B·A (lora_weight_norm:
// N·K·r multiply-adds, one workgroup per row). Quantized (q4/q8) base weights: linear() handles the
// products; for DoRA's norm each weight part is dequantized (quant.ts dequantize) into an f32
// scratch buffer of rows·K floats first (for a 4096 x 14336 part: 224 MiB; split the weight into
// parts to bound it).

import source from '../../shaders/lora.wgsl';
import { f32, type Gpu } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';
import { linear, linearBackwardInput, linearBackwardWeight, type Weight } from './matmul';
import { dequantize, isQuantized } from './quant';
import { scratch as scratchBuffer } from './scratch';

export interface LoraWeights {
  /** [r, K] (PEFT lora_A.weight) */
  A: Tensor;
  /** [N, r] (PEFT lora_B.weight) */
  B: Tensor;
  /** alpha / r, or alpha / sqrt(r) with rsLoRA */
  scaling: number;
  /** DoRA: [N] (PEFT lora_magnitude_vector) */
  magnitude?: Tensor;
}

export interface LoraGrads {
  dA: Tensor;
  dB: Tensor;
  dMagnitude?: Tensor;
}

export interface LoraSaved {
  /** [T, r] = xl Aᵀ */
  xa: Tensor;
  /** DoRA: [T, N] = xl Wᵀ (no bias) */
  baseOut?: Tensor;
  /** DoRA: [N] = 1 / ||W + s B A||_row, detached */
  normInv?: Tensor;
}

/**
 * lora_dropout in a training pass: the LoRA branch (and DoRA's base_result) reads x ⊙ M / (1 - p),
 * the base product reads x. M is a function of these counters and the element (t, k), so the
 * same value given to loraForward and loraBackward gives the same mask.
 */
export interface LoraDropout {
  /** Drop probability, 0 <= p < 1. */
  p: number;
  /** Training seed. */
  seed: number;
  /** Optimizer step (global_step before the update). */
  step: number;
  /** Micro-batch within the step. */
  micro: number;
  /** Which dropout module: one per PEFT LoRA module (a fused module's parts share one). */
  site: number;
}

export interface LoraForwardOptions {
  dropout?: LoraDropout;
}

export interface LoraBackwardOptions {
  /** dx += instead of dx =. */
  accumulateDx?: boolean;
  /** dA, dB, dMagnitude += instead of = (gradient accumulation). */
  accumulateGrads?: boolean;
  /**
   * DoRA only: f32 scratch of at least T·N elements (loraWorkspaceShape) for dY ⊙ g, so layers
   * can share one buffer. Must not alias any other argument. Without it a per-device scratch
   * buffer is used.
   */
  workspace?: Tensor;
  /** The dropout given to loraForward. */
  dropout?: LoraDropout;
}

/** Shapes of the tensors loraForward saves for loraBackward (allocate them as f32). */
export function loraSavedShapes(T: number, N: number, r: number, dora: boolean): Record<string, number[]> {
  return dora ? { xa: [T, r], baseOut: [T, N], normInv: [N] } : { xa: [T, r] };
}

/** Shape of the optional backward workspace (null: none needed). */
export function loraWorkspaceShape(T: number, N: number, dora: boolean): number[] | null {
  return dora ? [T * N] : null;
}

// ---- shapes ----------------------------------------------------------------------------------------

const rowsOf = (t: Tensor): number => t.shape.slice(0, -1).reduce((a, b) => a * b, 1);
const colsOf = (t: Tensor): number => t.shape[t.shape.length - 1] ?? 1;
const partsOf = (w: Weight): readonly Tensor[] => (Array.isArray(w) ? w : [w as Tensor]);

function expectF32(fn: string, name: string, t: Tensor): void {
  if (t.dtype !== 'f32') throw new Error(`${fn}: ${name} must be f32, not ${t.dtype}`);
}

function expect2d(fn: string, name: string, t: Tensor, rows: number, cols: number): void {
  expectF32(fn, name, t);
  if (rowsOf(t) !== rows || colsOf(t) !== cols) {
    throw new Error(`${fn}: ${name} is ${shapeStr(t.shape)}, expected [${rows}, ${cols}]`);
  }
}

function expect1d(fn: string, name: string, t: Tensor, n: number): void {
  expectF32(fn, name, t);
  if (numel(t.shape) !== n) throw new Error(`${fn}: ${name} is ${shapeStr(t.shape)}, expected [${n}]`);
}

interface Dims {
  T: number;
  K: number;
  N: number;
  r: number;
}

/** Checks the layer's own tensors and returns its sizes; T from x. */
function layerDims(gpu: Gpu, fn: string, x: Tensor, base: Weight, lora: LoraWeights): Dims {
  expectF32(fn, 'x', x);
  const T = rowsOf(x), K = colsOf(x);
  const r = lora.A.shape[0]!;
  if (lora.A.shape.length !== 2 || r < 1) throw new Error(`${fn}: lora A is ${shapeStr(lora.A.shape)}, expected [r, ${K}]`);
  expect2d(fn, 'lora A', lora.A, r, K);
  const parts = partsOf(base);
  let N = 0;
  for (const p of parts) {
    if (p.shape.length !== 2 || p.shape[1] !== K) {
      throw new Error(`${fn}: base weight part is ${shapeStr(p.shape)}, expected [rows, ${K}] for input ${shapeStr(x.shape)}`);
    }
    N += p.shape[0]!;
  }
  expect2d(fn, 'lora B', lora.B, N, r);
  if (lora.magnitude) {
    expect1d(fn, 'DoRA magnitude', lora.magnitude, N);
    for (const p of parts) checkNormable(gpu, fn, p);
  }
  if (!Number.isFinite(lora.scaling)) throw new Error(`${fn}: scaling ${lora.scaling} is not finite`);
  return { T, K, N, r };
}

/** DoRA's row norm reads W: f32, f16 (packed pairs), or q4/q8 (dequantized). */
function checkNormable(gpu: Gpu, fn: string, p: Tensor): void {
  if (isQuantized(p)) return;
  if (p.dtype !== 'f32' && p.dtype !== 'f16') throw new Error(`${fn}: DoRA base weight must be f32, f16, q4 or q8, not ${p.dtype}`);
}

function checkSaved(fn: string, d: Dims, saved: LoraSaved, dora: boolean): void {
  expect2d(fn, 'saved.xa', saved.xa, d.T, d.r);
  if (dora) {
    if (!saved.baseOut || !saved.normInv) throw new Error(`${fn}: DoRA needs saved.baseOut [${d.T}, ${d.N}] and saved.normInv [${d.N}] (see loraSavedShapes)`);
    expect2d(fn, 'saved.baseOut', saved.baseOut, d.T, d.N);
    expect1d(fn, 'saved.normInv', saved.normInv, d.N);
  }
}

function checkDropout(fn: string, d: LoraDropout | undefined): void {
  if (!d) return;
  if (!(d.p >= 0 && d.p < 1)) throw new Error(`${fn}: lora dropout p = ${d.p}, expected 0 <= p < 1`);
  for (const k of ['seed', 'step', 'micro', 'site'] as const) {
    if (!Number.isInteger(d[k]) || d[k] < 0) throw new Error(`${fn}: lora dropout ${k} = ${d[k]}, expected an integer >= 0`);
  }
}

// ---- scratch ---------------------------------------------------------------------------------------

// Temporaries come from the shared per-device scratch (src/kernels/scratch.ts) under 'lora.*' keys:
// dY·B [T, r], DoRA's dY ⊙ g [T, N] when no workspace is given, a dequantized weight part, the
// dropped input xl and its gradient [T, K].
const scratch = (gpu: Gpu, key: string, elements: number): Tensor => scratchBuffer(gpu, `lora.${key}`, elements);

// ---- helper kernels --------------------------------------------------------------------------------

type Entry = 'lora_forward_bias' | 'lora_weight_norm' | 'lora_dropout' | 'dora_forward' | 'dora_backward_scale' | 'dora_backward_magnitude';

/** The entry point; only the weight norm reads W, of f32 or f16 (packed pairs, kernels/f16.ts). */
function pipeline(gpu: Gpu, entry: Entry, w: 'f32' | 'f16' = 'f32'): GPUComputePipeline {
  return gpu.pipeline(`${entry}:${w}`, () => shaderVariant(source, entry, { W_F16: w === 'f16' }));
}

function elementwiseGrid(gpu: Gpu, count: number): [number, number] {
  return gpu.grid(Math.ceil(count / 256));
}

/** PCG hash (O'Neill; the pcg_hash of Jarzynski & Olano 2020): a bijection of u32. */
function pcg(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The two u32 words keying a dropout mask: (seed, step) and (micro, site), each pair hashed. */
export function dropoutKey(d: LoraDropout): [number, number] {
  return [pcg(pcg(d.seed) ^ d.step), pcg(pcg(d.micro) ^ d.site)];
}

/** keep(t, k) holds where the element's hash is >= this (p of the 2³² hash values are dropped). */
const dropoutThreshold = (p: number): number => Math.min(2 ** 32 - 1, Math.round(p * 2 ** 32));

/**
 * out (=|+=) input ⊙ M / (1 - p), both [T, K]: the dropout forward (x -> xl) and, with
 * accumulate, its backward (dx += M/(1-p) ⊙ dxl) — the same mask from the same counters.
 */
export function loraDropout(gpu: Gpu, input: Tensor, out: Tensor, d: LoraDropout, accumulate = false): void {
  const fn = 'loraDropout';
  checkDropout(fn, d);
  const T = rowsOf(input), K = colsOf(input);
  expect2d(fn, 'input', input, T, K);
  expect2d(fn, 'out', out, T, K);
  const [key0, key1] = dropoutKey(d);
  gpu.dispatch(pipeline(gpu, 'lora_dropout'), [input, out], elementwiseGrid(gpu, T * K),
    [T * K, K, key0, key1, dropoutThreshold(d.p), accumulate ? 1 : 0, f32(1 / (1 - d.p)), 0]);
}

/** y[t, n] = bias[n] */
function fillBias(gpu: Gpu, bias: Tensor, y: Tensor, T: number, N: number): void {
  gpu.dispatch(pipeline(gpu, 'lora_forward_bias'), [bias, y], elementwiseGrid(gpu, T * N), [T, N, f32(0), 0]);
}

/** out[t, n] = dy[t, n] (mag[n] normInv[n] - sub) */
function colScale(gpu: Gpu, dy: Tensor, mag: Tensor, normInv: Tensor, out: Tensor, T: number, N: number, sub: number): void {
  gpu.dispatch(pipeline(gpu, 'dora_backward_scale'), [dy, mag, normInv, out], elementwiseGrid(gpu, T * N), [T, N, f32(sub), 0]);
}

/**
 * out[n] = ||W[n, :] + s (B A)[n, :]|| (1 / that with inverse), without storing B A. W is f32, f16
 * (packed pairs), or q4/q8 (each part dequantized into scratch first). DoRA initialises
 * lora_magnitude_vector with this norm (PEFT DoraLinearLayer.update_layer), B = 0 at init.
 */
export function loraWeightNorm(gpu: Gpu, base: Weight, lora: Pick<LoraWeights, 'A' | 'B' | 'scaling'>, out: Tensor, inverse = false): void {
  const fn = 'loraWeightNorm';
  const r = lora.A.shape[0]!, K = colsOf(lora.A);
  expect2d(fn, 'lora A', lora.A, r, K);
  const parts = partsOf(base);
  const N = parts.reduce((a, p) => a + p.shape[0]!, 0);
  expect2d(fn, 'lora B', lora.B, N, r);
  expect1d(fn, 'out', out, N);
  let n0 = 0;
  for (const p of parts) {
    if (p.shape[1] !== K) throw new Error(`${fn}: base weight part is ${shapeStr(p.shape)}, lora A has ${K} columns`);
    checkNormable(gpu, fn, p);
    const rows = p.shape[0]!;
    let w = p;
    if (isQuantized(p)) {
      w = { ...scratch(gpu, 'deq', rows * K), shape: [rows, K] };
      dequantize(gpu, p, w);
    }
    gpu.dispatch(pipeline(gpu, 'lora_weight_norm', w.dtype as 'f32' | 'f16'), [w, lora.A, lora.B, out], gpu.grid(rows),
      [rows, K, r, n0, f32(lora.scaling), inverse ? 1 : 0]);
    n0 += rows;
  }
}

// ---- forward ---------------------------------------------------------------------------------------

/**
 * y = x Wᵀ + b + s (xl Aᵀ) Bᵀ, or DoRA's form when lora.magnitude is set (see the top of this
 * file). Fills `saved` (allocated by the caller from loraSavedShapes) for loraBackward.
 */
export function loraForward(
  gpu: Gpu,
  x: Tensor,
  base: Weight,
  bias: Tensor | null,
  lora: LoraWeights,
  y: Tensor,
  saved: LoraSaved,
  opts: LoraForwardOptions = {},
): void {
  const fn = 'loraForward';
  const d = layerDims(gpu, fn, x, base, lora);
  const { T, N, r } = d;
  const dora = !!lora.magnitude;
  expect2d(fn, 'y', y, T, N);
  if (bias) expect1d(fn, 'bias', bias, N);
  checkSaved(fn, d, saved, dora);
  const xl = opts.dropout ? droppedInput(gpu, x, opts.dropout) : x;

  linear(gpu, xl, lora.A, saved.xa);
  if (!dora) {
    if (bias) {
      fillBias(gpu, bias, y, T, N);
      linear(gpu, x, base, y, true);
    } else linear(gpu, x, base, y);
    linear(gpu, saved.xa, lora.B, y, true, lora.scaling);
    return;
  }

  const baseOut = saved.baseOut!, normInv = saved.normInv!;
  linear(gpu, xl, base, baseOut);
  loraWeightNorm(gpu, base, lora, normInv, true);
  if (opts.dropout) linear(gpu, x, base, y);
  gpu.dispatch(
    pipeline(gpu, 'dora_forward'),
    [baseOut, saved.xa, lora.B, lora.magnitude!, normInv, bias ?? lora.magnitude!, y],
    [Math.ceil(N / 16), Math.ceil(T / 16)],
    [T, N, r, f32(lora.scaling), opts.dropout ? 1 : 0, bias ? 1 : 0],
  );
}

/** xl = x ⊙ M / (1 - p) in scratch (forward, and regenerated in backward). */
function droppedInput(gpu: Gpu, x: Tensor, d: LoraDropout): Tensor {
  const xl = { ...scratch(gpu, 'xl', numel(x.shape)), shape: [rowsOf(x), colsOf(x)] };
  loraDropout(gpu, x, xl, d);
  return xl;
}

// ---- backward --------------------------------------------------------------------------------------

/**
 * Gradients of loraForward (same base, lora, saved and xDropped): dx (=|+=) the input gradient,
 * grads.dA, grads.dB and, for DoRA, grads.dMagnitude (=|+=). dx may be null (first layer).
 */
export function loraBackward(
  gpu: Gpu,
  dy: Tensor,
  x: Tensor,
  base: Weight,
  lora: LoraWeights,
  saved: LoraSaved,
  dx: Tensor | null,
  grads: LoraGrads,
  opts: LoraBackwardOptions = {},
): void {
  const fn = 'loraBackward';
  const d = layerDims(gpu, fn, x, base, lora);
  const { T, K, N, r } = d;
  const dora = !!lora.magnitude;
  const s = lora.scaling;
  const accG = !!opts.accumulateGrads, accDx = !!opts.accumulateDx;
  expect2d(fn, 'dy', dy, T, N);
  checkSaved(fn, d, saved, dora);
  if (dx) expect2d(fn, 'dx', dx, T, K);
  expect2d(fn, 'grads.dA', grads.dA, r, K);
  expect2d(fn, 'grads.dB', grads.dB, N, r);
  if (dora) {
    if (!grads.dMagnitude) throw new Error(`${fn}: DoRA needs grads.dMagnitude [${N}]`);
    expect1d(fn, 'grads.dMagnitude', grads.dMagnitude, N);
  }
  const dropout = opts.dropout;
  const xl = dropout ? droppedInput(gpu, x, dropout) : x;
  // with dropout, the gradient with respect to xl, masked into dx at the end
  const dxl = dropout && dx ? { ...scratch(gpu, 'dxl', T * K), shape: [T, K] } : null;

  // D: the gradient at the output of the LoRA product (dY, or dY ⊙ g for DoRA)
  let D = dy;
  if (dora) {
    const mag = lora.magnitude!, normInv = saved.normInv!;
    gpu.dispatch(
      pipeline(gpu, 'dora_backward_magnitude'),
      [dy, saved.baseOut!, saved.xa, lora.B, normInv, grads.dMagnitude!],
      [Math.ceil(N / 16)],
      [T, N, r, f32(s), accG ? 1 : 0, 0],
    );
    let ws: Tensor;
    if (opts.workspace) {
      expectF32(fn, 'workspace', opts.workspace);
      if (numel(opts.workspace.shape) < T * N) throw new Error(`${fn}: workspace ${shapeStr(opts.workspace.shape)} holds fewer than T·N = ${T * N} elements`);
      ws = { ...opts.workspace, shape: [T, N] };
    } else ws = { ...scratch(gpu, 'dyg', T * N), shape: [T, N] };
    if (dx && dropout) {
      linearBackwardInput(gpu, dy, base, dx, accDx);
      colScale(gpu, dy, mag, normInv, ws, T, N, 1);
      linearBackwardInput(gpu, ws, base, dxl!);
    }
    colScale(gpu, dy, mag, normInv, ws, T, N, 0);
    D = ws;
    if (dx && !dropout) linearBackwardInput(gpu, D, base, dx, accDx);
  } else if (dx) linearBackwardInput(gpu, dy, base, dx, accDx);

  const dyB: Tensor = { ...scratch(gpu, 'dyB', T * r), shape: [T, r] };
  linearBackwardInput(gpu, D, lora.B, dyB); // D B  [T, r]
  if (dx) {
    if (dropout) linearBackwardInput(gpu, dyB, lora.A, dxl!, dora, s);
    else linearBackwardInput(gpu, dyB, lora.A, dx, true, s);
  }
  linearBackwardWeight(gpu, dyB, xl, grads.dA, accG, s);
  linearBackwardWeight(gpu, D, saved.xa, grads.dB, accG, s);
  if (dxl) loraDropout(gpu, dxl, dx!, dropout!, true);
}
