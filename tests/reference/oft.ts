// f64 CPU references for OFT (src/kernels/oft.ts). The forward follows PEFT's code literally
// (tuners/oft/layer.py: _pytorch_skew_symmetric, _cayley_batch's Neumann loop or
// linalg.solve(I + Q, I - Q, left=False), the einsum "...rk,rkc->...rc", then the base layer);
// the backward is the hand-derived gradient, checked against finite differences of the forward in
// the tests.

type Arr = ArrayLike<number>;

export interface OftRefProblem {
  T: number;
  K: number;
  N: number;
  b: number;
  x: Arr; // [T, K]
  W: Arr; // [N, K]
  bias?: Arr | null; // [N]
  skew: Arr; // [K / b, b(b-1)/2]
  /** num_cayley_neumann_terms, or null: exact Cayley */
  terms: number | null;
}

/** Q of each block from its upper triangle: torch.triu_indices order, then Q = U - Uᵀ. */
function skewMatrices(skew: Arr, nb: number, b: number): Float64Array[] {
  const n = (b * (b - 1)) / 2;
  return Array.from({ length: nb }, (_, blk) => {
    const Q = new Float64Array(b * b);
    let idx = 0;
    for (let i = 0; i < b; i++) {
      for (let j = i + 1; j < b; j++) {
        const v = skew[blk * n + idx++]!;
        Q[i * b + j] = v;
        Q[j * b + i] = -v;
      }
    }
    return Q;
  });
}

function matmul(A: Arr, B: Arr, b: number): Float64Array {
  const C = new Float64Array(b * b);
  for (let i = 0; i < b; i++) for (let l = 0; l < b; l++) {
    const a = A[i * b + l]!;
    if (a !== 0) for (let j = 0; j < b; j++) C[i * b + j]! += a * B[l * b + j]!;
  }
  return C;
}

const transpose = (A: Arr, b: number): Float64Array => Float64Array.from({ length: b * b }, (_, e) => A[(e % b) * b + Math.floor(e / b)]!);

/** X with X·A = B (A, B [b, b]), by Gaussian elimination with partial pivoting on Aᵀ Xᵀ = Bᵀ. */
function solveRight(A: Arr, B: Arr, b: number): Float64Array {
  const M = transpose(A, b), R = transpose(B, b);
  for (let c = 0; c < b; c++) {
    let piv = c;
    for (let i = c + 1; i < b; i++) if (Math.abs(M[i * b + c]!) > Math.abs(M[piv * b + c]!)) piv = i;
    for (let j = 0; j < b; j++) {
      [M[c * b + j], M[piv * b + j]] = [M[piv * b + j]!, M[c * b + j]!];
      [R[c * b + j], R[piv * b + j]] = [R[piv * b + j]!, R[c * b + j]!];
    }
    for (let i = 0; i < b; i++) {
      if (i === c) continue;
      const f = M[i * b + c]! / M[c * b + c]!;
      for (let j = 0; j < b; j++) {
        M[i * b + j]! -= f * M[c * b + j]!;
        R[i * b + j]! -= f * R[c * b + j]!;
      }
    }
  }
  for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) R[i * b + j]! /= M[i * b + i]!;
  return transpose(R, b);
}

const eye = (b: number): Float64Array => Float64Array.from({ length: b * b }, (_, e) => (Math.floor(e / b) === e % b ? 1 : 0));

/** The blocks R_i [nb][b·b] as PEFT's _cayley_batch builds them. */
export function refOftRotation(skew: Arr, nb: number, b: number, terms: number | null): Float64Array[] {
  return skewMatrices(skew, nb, b).map((Q) => {
    const I = eye(b);
    if (terms === null) {
      const plus = I.map((v, e) => v + Q[e]!), minus = I.map((v, e) => v - Q[e]!);
      return solveRight(plus, minus, b);
    }
    const R = I;
    const add = (P: Arr, alpha: number) => { for (let e = 0; e < b * b; e++) R[e]! += alpha * P[e]!; };
    if (terms > 1) {
      add(Q, 2);
      if (terms > 2) {
        const Q2 = matmul(Q, Q, b);
        add(Q2, 2);
        let P = Q2;
        for (let k = 3; k < terms - 1; k++) {
          P = matmul(P, Q, b);
          add(P, 2);
        }
        P = matmul(P, Q, b);
        add(P, 1);
      }
    }
    return R;
  });
}

/** xr[t, i·b + c] = Σ_k x[t, i·b + k] R_i[k][c] */
export function refOftRotate(x: Arr, R: readonly Arr[], T: number, K: number, b: number): Float64Array {
  const out = new Float64Array(T * K);
  R.forEach((Ri, blk) => {
    for (let t = 0; t < T; t++) for (let c = 0; c < b; c++) {
      let s = 0;
      for (let k = 0; k < b; k++) s += x[t * K + blk * b + k]! * Ri[k * b + c]!;
      out[t * K + blk * b + c] = s;
    }
  });
  return out;
}

/** y = (x R) Wᵀ + b */
export function refOftForward(p: OftRefProblem): Float64Array {
  const { T, K, N, b } = p;
  const xr = refOftRotate(p.x, refOftRotation(p.skew, K / b, b, p.terms), T, K, b);
  const y = new Float64Array(T * N);
  for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
    let s = p.bias ? p.bias[n]! : 0;
    for (let k = 0; k < K; k++) s += xr[t * K + k]! * p.W[n * K + k]!;
    y[t * N + n] = s;
  }
  return y;
}

/** dL/dQ of one block from G = dL/dR (the derivative of the series, or of (I - Q)(I + Q)⁻¹). */
function skewGradient(Q: Float64Array, R: Float64Array, G: Float64Array, b: number, terms: number | null): Float64Array {
  if (terms === null) {
    const M = R.map((v, e) => 0.5 * (v + (Math.floor(e / b) === e % b ? 1 : 0)));
    const Mt = transpose(M, b);
    return matmul(matmul(Mt, G, b), Mt, b).map((v) => -2 * v);
  }
  // R = Σ c_k Q^k; d(Q^k)/dQ against G: Σ_j (Q^j)ᵀ G (Q^(k-1-j))ᵀ
  const m = terms <= 2 ? terms - 1 : Math.max(3, terms - 1);
  const coeff = (k: number) => (k === m && m >= 3 ? 1 : 2);
  const powT: Float64Array[] = [eye(b)];
  const Qt = transpose(Q, b);
  for (let k = 1; k < m; k++) powT.push(matmul(powT[k - 1]!, Qt, b));
  const out = new Float64Array(b * b);
  for (let k = 1; k <= m; k++) {
    for (let j = 0; j < k; j++) {
      const term = matmul(matmul(powT[j]!, G, b), powT[k - 1 - j]!, b);
      for (let e = 0; e < b * b; e++) out[e]! += coeff(k) * term[e]!;
    }
  }
  return out;
}

/** dx and d skew of sum(dy ⊙ y) (W frozen). */
export function refOftBackward(p: OftRefProblem, dy: Arr): { dx: Float64Array; dSkew: Float64Array } {
  const { T, K, N, b } = p;
  const nb = K / b, n = (b * (b - 1)) / 2;
  const Qs = skewMatrices(p.skew, nb, b);
  const Rs = refOftRotation(p.skew, nb, b, p.terms);
  const dxr = new Float64Array(T * K);
  for (let t = 0; t < T; t++) for (let k = 0; k < K; k++) {
    let s = 0;
    for (let j = 0; j < N; j++) s += dy[t * N + j]! * p.W[j * K + k]!;
    dxr[t * K + k] = s;
  }
  const dx = refOftRotate(dxr, Rs.map((R) => transpose(R, b)), T, K, b);
  const dSkew = new Float64Array(nb * n);
  Rs.forEach((R, blk) => {
    const G = new Float64Array(b * b);
    for (let t = 0; t < T; t++) for (let k = 0; k < b; k++) for (let c = 0; c < b; c++) G[k * b + c]! += p.x[t * K + blk * b + k]! * dxr[t * K + blk * b + c]!;
    const GQ = skewGradient(Qs[blk]!, R, G, b, p.terms);
    let idx = 0;
    for (let i = 0; i < b; i++) for (let j = i + 1; j < b; j++) dSkew[blk * n + idx++] = GQ[i * b + j]! - GQ[j * b + i]!;
  });
  return { dx, dSkew };
}

/** PEFT's merge: W' = W · R_blockdiagᵀ, i.e. W'[n, i·b + k] = Σ_c W[n, i·b + c] R_i[k][c]. */
export function refOftMerge(W: Arr, N: number, K: number, R: readonly Arr[], b: number): Float64Array {
  const out = new Float64Array(N * K);
  R.forEach((Ri, blk) => {
    for (let n = 0; n < N; n++) for (let k = 0; k < b; k++) {
      let s = 0;
      for (let c = 0; c < b; c++) s += W[n * K + blk * b + c]! * Ri[k * b + c]!;
      out[n * K + blk * b + k] = s;
    }
  });
  return out;
}
