// The low-rank gradient projections GaLore and APOLLO share (galore_torch's GaLoreProjector and
// apollo_torch's GradientProjector): which side of a weight's gradient G [R, C] is projected, the
// projection itself and its way back, as GEMMs on the GPU. A right projection Q [k, C] gives
// G Qᵀ [R, k] and comes back as X Q; a left one Q [R, k] gives Qᵀ G [k, C] and comes back as Q X.

import type { Gpu } from '../../gpu/runtime';
import type { Tensor } from '../../gpu/tensor';
import { gemm } from '../../kernels/matmul';
import { svdLowRank, type MatrixOps } from '../../model/lowrank-svd';

export type Side = 'left' | 'right';
/** galore_proj_type / apollo_proj_type: std projects the smaller dimension, reverse_std the larger. */
export type ProjType = 'std' | 'reverse_std' | 'right' | 'left';

export function projectionSide(R: number, C: number, type: ProjType): Side {
  if (type === 'std') return R >= C ? 'right' : 'left';
  if (type === 'reverse_std') return R >= C ? 'left' : 'right';
  return type;
}

/** The shape of a side's projection matrix for a [R, C] gradient at rank k. */
export const projectionShape = (side: Side, R: number, C: number, k: number): [number, number] => (side === 'right' ? [k, C] : [R, k]);

/** The shape of the projected gradient. */
export const projectedShape = (side: Side, R: number, C: number, k: number): [number, number] => (side === 'right' ? [R, k] : [k, C]);

/** low = G Qᵀ (right) or Qᵀ G (left). */
export function project(gpu: Gpu, side: Side, G: Tensor, Q: Tensor, low: Tensor, R: number, C: number, k: number): void {
  if (side === 'right') gemm(gpu, { a: G, b: Q, c: low, M: R, N: k, K: C, transB: true });
  else gemm(gpu, { a: Q, b: G, c: low, M: k, N: C, K: R, transA: true });
}

/** out = alpha (X Q or Q X) + beta out: the projected update back in the weight's shape. */
export function projectBack(gpu: Gpu, side: Side, X: Tensor, Q: Tensor, out: Tensor, R: number, C: number, k: number, alpha: number, beta: number): void {
  if (side === 'right') gemm(gpu, { a: X, b: Q, c: out, M: R, N: C, K: k, alpha, beta });
  else gemm(gpu, { a: Q, b: X, c: out, M: R, N: C, K: k, alpha, beta });
}

/** Gradients up to this many entries are read back once and multiplied on the host (cheaper than a readback per product). */
const HOST_PRODUCTS_MAX = 1 << 20;

/**
 * A gradient G [R, C] through its products with row sets: on the host after one readback when it
 * is small, otherwise as GEMMs on the GPU (each product read back, the gradient never is).
 */
export async function gradientOps(gpu: Gpu, G: Tensor, R: number, C: number, hostMax = HOST_PRODUCTS_MAX): Promise<MatrixOps> {
  if (R * C <= hostMax) return hostOps(Float64Array.from(await gpu.readF32(G)), R, C);
  const product = async (x: Float64Array, q: number, len: number, out: number, transB: boolean): Promise<Float64Array> => {
    const X = gpu.upload(Float32Array.from(x), [q, len]);
    const Y = gpu.tensor([q, out]);
    // X Gᵀ [q, R] (x rows of length C) or X G [q, C] (x rows of length R)
    gemm(gpu, { a: X, b: G, c: Y, M: q, N: out, K: len, transB });
    const data = Float64Array.from(await gpu.readF32(Y));
    gpu.release(X, Y);
    return data;
  };
  return { rows: R, cols: C, times: (x, q) => product(x, q, C, R, true), timesT: (y, q) => product(y, q, R, C, false) };
}

function hostOps(G: Float64Array, R: number, C: number): MatrixOps {
  return {
    rows: R,
    cols: C,
    async times(x, q) {
      const out = new Float64Array(q * R);
      for (let i = 0; i < q; i++) for (let r = 0; r < R; r++) {
        let s = 0;
        for (let c = 0; c < C; c++) s += G[r * C + c]! * x[i * C + c]!;
        out[i * R + r] = s;
      }
      return out;
    },
    async timesT(y, q) {
      const out = new Float64Array(q * C);
      for (let i = 0; i < q; i++) for (let r = 0; r < R; r++) {
        const a = y[i * R + r]!;
        for (let c = 0; c < C; c++) out[i * C + c]! += a * G[r * C + c]!;
      }
      return out;
    },
  };
}

/**
 * GaLore's projection of a gradient [R, C]: the top-k right singular vectors as rows [k, C]
 * (right) or the top-k left ones as columns [R, k] (left), torch.linalg.svd's Vh[:k] / U[:, :k],
 * by torch.svd_lowrank's iteration run to convergence (the small SVDs on the host). LAPACK's signs are not reproducible here; each vector is signed so that its
 * largest-magnitude entry is positive (within an update interval the signs cancel).
 */
export async function topSingularProjection(ops: MatrixOps, k: number, side: Side, normal: () => number): Promise<Float32Array> {
  const { rows: R, cols: C } = ops;
  const d = Math.min(R, C);
  const q = Math.min(d, 2 * k + 8);
  // q = d spans the whole range after the first product (an exact SVD); otherwise iterate to convergence
  const svd = await svdLowRank(ops, { q, niter: q === d ? 0 : 300, converge: { rank: k, tol: 1e-7 }, normal });
  const len = side === 'right' ? C : R;
  const rows = side === 'right' ? svd.V : svd.U;
  const out = new Float32Array(k * len);
  for (let i = 0; i < k; i++) {
    const v = rows.subarray(i * len, (i + 1) * len);
    let big = 0;
    for (let j = 0; j < len; j++) if (Math.abs(v[j]!) > Math.abs(big)) big = v[j]!;
    const sign = big < 0 ? -1 : 1;
    // right: rows [k, C]; left: columns of [R, k]
    for (let j = 0; j < len; j++) out[side === 'right' ? i * C + j : j * k + i] = sign * v[j]!;
  }
  return out;
}

/** Standard normal draws (Box-Muller) from a uniform generator. */
export function normalFrom(uniform: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}
