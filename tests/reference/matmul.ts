// CPU reference of the matrix product (f64 sums): C = alpha op(A) op(B) + beta C, A and B dense
// unless leading dimensions are given, C dense.

export interface RefGemmOptions {
  lda?: number;
  ldb?: number;
  alpha?: number;
  beta?: number;
  /** C before the product (read when beta is not 0). */
  c?: ArrayLike<number>;
}

export function refGemm(a: ArrayLike<number>, b: ArrayLike<number>, M: number, N: number, K: number, tA: boolean, tB: boolean,
  { lda = tA ? M : K, ldb = tB ? K : N, alpha = 1, beta = 0, c }: RefGemmOptions = {}): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (tA ? a[k * lda + m]! : a[m * lda + k]!) * (tB ? b[n * ldb + k]! : b[k * ldb + n]!);
      out[m * N + n] = alpha * s + (beta ? beta * c![m * N + n]! : 0);
    }
  return out;
}
