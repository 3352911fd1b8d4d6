// The arguments of a general matrix product, shared by the f32 tier (matmul.ts) and the faster tiers
// (matmul-f16.ts, matmul-subgroup.ts), so each launcher takes the same call.

import type { Tensor } from '../gpu/tensor';

export interface GemmArgs {
  a: Tensor;
  b: Tensor;
  c: Tensor;
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
  /** Leading dimensions (elements); default to the dense layout implied by M, N, K. */
  lda?: number;
  ldb?: number;
  ldc?: number;
  /** Element offsets into a, b, c. */
  offA?: number;
  offB?: number;
  offC?: number;
  batch?: number;
  strideA?: number;
  strideB?: number;
  strideC?: number;
  alpha?: number;
  /** 0 overwrites C (never reading it), 1 accumulates into it. */
  beta?: number;
  /**
   * Split-K: sum K in this many chunks (one workgroup grid each, then their ordered sum; batch 1
   * only). 1 keeps one pass. Default: splitForShape() for the dYᵀ·X layout (TN), else 1.
   */
  splits?: number;
  /** A candidate tile of the tier by name (gemm-tiles.ts; the tuner, tests); default: this device's choice. */
  tile?: string;
}
