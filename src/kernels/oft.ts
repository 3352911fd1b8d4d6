// OFT linear layers, forward and backward, as PEFT (0.20 / 0.21, src/peft/tuners/oft/layer.py
// OFTRotationModule, Linear.forward) defines them: the input is rotated block by block before the
// frozen base layer, y = (x R) Wᵀ + b, R block-diagonal with nb orthogonal b x b blocks.
//
// Notation: x [T, K], W [N, K], K = nb·b; block i of a row is its columns i·b .. i·b + b - 1;
// skew [nb, b(b-1)/2] (PEFT oft_R.weight) holds each block's skew-symmetric Q = U - Uᵀ as the
// strict upper triangle U, row-major (torch.triu_indices(b, b, 1)).
//   PEFT einsum "...rk,rkc->...rc":  xr[t, i·b + c] = Σ_k x[t, i·b + k] R_i[k][c]
//   R_i: use_cayley_neumann (PEFT's default): I + 2Q + 2Q² + ... + 2Q^(m-1) + Q^m with m = terms - 1
//   (m = 3 for 3 terms, as PEFT's loop gives; terms 1 and 2: I and I + 2Q), the truncated series
//   of (I + Q)(I - Q)⁻¹; otherwise the exact Cayley transform torch.linalg.solve(I + Q, I - Q,
//   left=False) = (I - Q)(I + Q)⁻¹. (The two are each other's transpose; PEFT uses them so.)
// Backward (W frozen): dxr = dY W, dx = dxr Rᵀ blockwise, G_i = x_iᵀ dxr_i = dL/dR_i, and
// shaders/oft.wgsl carries G_i back to the triangle. The products are strided batched gemm()s
// over the blocks (matmul.ts); only the rotation itself and its gradient are OFT's own kernels.
// PEFT's module_dropout (MultiplicativeDropoutLayer) is created but never called by
// Linear.forward, so it has no effect there, nor here.

import source from '../../shaders/oft.wgsl';
import type { Param } from '../gpu/params';
import { f32, type Gpu } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { shapeStr, type Tensor } from '../gpu/tensor';
import { gemm, linear, linearBackwardInput, type Weight } from './matmul';
import { scratch as scratchBuffer } from './scratch';

export interface OftWeights {
  /** [nb, b(b-1)/2] (PEFT oft_R.weight) */
  skew: Tensor;
  blockSize: number;
  /** PEFT num_cayley_neumann_terms when use_cayley_neumann, null for the exact Cayley transform. */
  neumannTerms: number | null;
}

export interface OftGrads {
  dSkew: Tensor;
}

export interface OftSaved {
  /** [nb, b, b]: the blocks R_i the forward used */
  rotation: Tensor;
}

export interface OftBackwardOptions {
  /** dx += instead of dx =. */
  accumulateDx?: boolean;
  /** dSkew += instead of = (gradient accumulation, a fused module's parts). */
  accumulateGrads?: boolean;
}

/** Entries of a block's strict upper triangle. */
export const triangleSize = (b: number): number => (b * (b - 1)) / 2;

/** Shapes of the tensors oftForward saves for oftBackward (allocate them as f32). */
export function oftSavedShapes(K: number, blockSize: number): Record<string, number[]> {
  return { rotation: [K / blockSize, blockSize, blockSize] };
}

const SLOTS = 7; // work matrices per block (shaders/oft.wgsl)

/** The series' highest power m and its coefficient (PEFT _cayley_batch). */
function neumann(terms: number): { m: number; last: number } {
  const m = terms <= 2 ? terms - 1 : Math.max(3, terms - 1);
  return { m, last: m >= 3 ? 1 : 2 };
}

function checkOft(fn: string, oft: OftWeights, K: number): number {
  const b = oft.blockSize;
  if (!Number.isInteger(b) || b < 1 || K % b !== 0) throw new Error(`${fn}: block size ${b} does not divide the ${K} input features`);
  if (oft.neumannTerms !== null && !(Number.isInteger(oft.neumannTerms) && oft.neumannTerms >= 1)) {
    throw new Error(`${fn}: num_cayley_neumann_terms = ${oft.neumannTerms}, expected an integer >= 1`);
  }
  const nb = K / b;
  const s = oft.skew;
  if (s.dtype !== 'f32' || s.shape.length !== 2 || s.shape[0] !== nb || s.shape[1] !== triangleSize(b)) {
    throw new Error(`${fn}: oft_R is ${s.dtype} ${shapeStr(s.shape)}, expected f32 [${nb}, ${triangleSize(b)}]`);
  }
  return nb;
}

function expectShape(fn: string, name: string, t: Tensor, shape: readonly number[]): void {
  const n = shape.reduce((a, b) => a * b, 1);
  if (t.dtype !== 'f32' || t.shape.reduce((a, b) => a * b, 1) !== n) throw new Error(`${fn}: ${name} is ${t.dtype} ${shapeStr(t.shape)}, expected f32 [${shape.join(', ')}]`);
}

const rowsOf = (t: Tensor): number => t.shape.slice(0, -1).reduce((a, b) => a * b, 1);
const colsOf = (t: Tensor): number => t.shape[t.shape.length - 1] ?? 1;

function params(nb: number, oft: OftWeights, accumulate: boolean): Param[] {
  const { m, last } = oft.neumannTerms === null ? { m: 0, last: 0 } : neumann(oft.neumannTerms);
  return [nb, oft.blockSize, m, oft.neumannTerms === null ? 1 : 0, f32(last), accumulate ? 1 : 0, 0, 0];
}

function work(gpu: Gpu, nb: number, b: number): Tensor {
  return scratchBuffer(gpu, 'oft.work', nb * SLOTS * b * b);
}

/** rotation [nb, b, b] = the blocks R_i of `oft` (Neumann series or exact Cayley). */
export function oftRotationForward(gpu: Gpu, oft: OftWeights, rotation: Tensor): void {
  const fn = 'oftRotationForward';
  const b = oft.blockSize;
  const nb = oft.skew.shape[0]!;
  checkOft(fn, oft, nb * b);
  expectShape(fn, 'rotation', rotation, [nb, b, b]);
  gpu.dispatch(gpu.pipeline('oft_rotation_forward', () => shaderVariant(source, 'oft_rotation_forward')),
    [oft.skew, work(gpu, nb, b), rotation], [nb], params(nb, oft, false));
}

/** dSkew (=|+=) the gradient of the triangle, given G = dL/dR [nb, b, b] and the forward's rotation. */
export function oftRotationBackward(gpu: Gpu, oft: OftWeights, rotation: Tensor, gradRotation: Tensor, dSkew: Tensor, accumulate = false): void {
  const fn = 'oftRotationBackward';
  const b = oft.blockSize;
  const nb = oft.skew.shape[0]!;
  checkOft(fn, oft, nb * b);
  expectShape(fn, 'rotation', rotation, [nb, b, b]);
  expectShape(fn, 'gradRotation', gradRotation, [nb, b, b]);
  expectShape(fn, 'dSkew', dSkew, [nb, triangleSize(b)]);
  gpu.dispatch(gpu.pipeline('oft_rotation_backward', () => shaderVariant(source, 'oft_rotation_backward')),
    [oft.skew, work(gpu, nb, b), rotation, gradRotation, dSkew], [nb], params(nb, oft, accumulate));
}

/**
 * out[t, i·b + c] (=|+=) Σ_k in[t, i·b + k] R_i[k][c], or with `transpose` Σ_k in[t, i·b + k] R_i[c][k]:
 * one strided product per block.
 */
export function oftRotate(gpu: Gpu, input: Tensor, rotation: Tensor, out: Tensor, transpose = false, accumulate = false): void {
  const T = rowsOf(input), K = colsOf(input);
  const nb = rotation.shape[0]!, b = rotation.shape[1]!;
  if (nb * b !== K) throw new Error(`oftRotate: rotation ${shapeStr(rotation.shape)} does not cover ${K} features`);
  expectShape('oftRotate', 'out', out, [T, K]);
  gemm(gpu, {
    a: input, b: rotation, c: out, M: T, N: b, K: b, transB: transpose,
    lda: K, ldc: K, batch: nb, strideA: b, strideB: b * b, strideC: b, beta: accumulate ? 1 : 0,
  });
}

/** y = (x R) Wᵀ, the bias left to the caller; fills saved.rotation for oftBackward. */
export function oftForward(gpu: Gpu, x: Tensor, base: Weight, oft: OftWeights, y: Tensor, saved: OftSaved): void {
  const T = rowsOf(x), K = colsOf(x);
  checkOft('oftForward', oft, K);
  oftRotationForward(gpu, oft, saved.rotation);
  const xr = { ...scratchBuffer(gpu, 'oft.xr', T * K), shape: [T, K] };
  oftRotate(gpu, x, saved.rotation, xr);
  linear(gpu, xr, base, y);
}

/** Gradients of oftForward: dx (=|+=) (dY W) Rᵀ, grads.dSkew (=|+=); dx may be null. */
export function oftBackward(gpu: Gpu, dy: Tensor, x: Tensor, base: Weight, oft: OftWeights, saved: OftSaved, dx: Tensor | null,
  grads: OftGrads, opts: OftBackwardOptions = {}): void {
  const fn = 'oftBackward';
  const T = rowsOf(x), K = colsOf(x);
  const nb = checkOft(fn, oft, K);
  const b = oft.blockSize;
  expectShape(fn, 'dy', dy, [T, colsOf(dy)]);
  if (dx) expectShape(fn, 'dx', dx, [T, K]);
  const dxr = { ...scratchBuffer(gpu, 'oft.dxr', T * K), shape: [T, K] };
  linearBackwardInput(gpu, dy, base, dxr);
  if (dx) oftRotate(gpu, dxr, saved.rotation, dx, true, !!opts.accumulateDx);
  const g = { ...scratchBuffer(gpu, 'oft.gradRotation', nb * b * b), shape: [nb, b, b] };
  // G_i = x_iᵀ dxr_i
  gemm(gpu, { a: x, b: dxr, c: g, M: b, N: b, K: T, transA: true, lda: K, ldb: K, batch: nb, strideA: b, strideB: b, strideC: b * b });
  oftRotationBackward(gpu, oft, saved.rotation, g, grads.dSkew, !!opts.accumulateGrads);
}
