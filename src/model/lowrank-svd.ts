// The top singular triplets of a matrix seen only through its products with a few vectors (the
// products run on the GPU; see pissa.ts). torch.svd_lowrank's algorithm (torch/_lowrank.py:
// Halko et al. 2009, Algorithms 4.4 and 5.1): a random start, `niter` power iterations with a QR
// after every product, then the SVD of the small projected matrix. The small steps (QR of [q, m]
// row sets, SVD of a q×q matrix) run here on the host in f64.
//
// Vectors are stored as rows: a "row set" [q, len] is a Float64Array of q·len values.

/** A matrix [rows, cols] through its products with row sets. */
export interface MatrixOps {
  rows: number;
  cols: number;
  /** X [q, cols] -> (A Xᵀ)ᵀ [q, rows]. */
  times(x: Float64Array, q: number): Promise<Float64Array>;
  /** Y [q, rows] -> (Aᵀ Yᵀ)ᵀ [q, cols]. */
  timesT(y: Float64Array, q: number): Promise<Float64Array>;
}

/** A ≈ Σ_i S[i] U_i V_iᵀ, singular values descending; U [k, rows], V [k, cols] as row sets. */
export interface Svd {
  k: number;
  U: Float64Array;
  S: Float64Array;
  V: Float64Array;
}

export interface LowRankOptions {
  /** Columns of the sampled subspace (torch's q; PEFT passes q = r). */
  q: number;
  /** Power iterations (torch's niter). */
  niter: number;
  /**
   * Stop early once the top-`converge.rank` right singular subspace moves less than `tol` in one
   * iteration (or has stopped getting closer for 8 iterations).
   */
  converge?: { rank: number; tol: number };
  /** Standard normal samples (seeded by the caller, for a reproducible start). */
  normal: () => number;
}

const transposed = (a: MatrixOps): MatrixOps => ({ rows: a.cols, cols: a.rows, times: a.timesT, timesT: a.times });

/** torch.svd_lowrank(A, q, niter): U [q, rows], S [q], V [q, cols]. */
export async function svdLowRank(a: MatrixOps, o: LowRankOptions): Promise<Svd> {
  // torch works on the tall orientation (if m < n: A = A.mH ... U, V = V, U)
  if (a.rows < a.cols) {
    const t = await svdLowRank(transposed(a), o);
    return { k: t.k, U: t.V, S: t.S, V: t.U };
  }
  const m = a.rows, n = a.cols, q = o.q;
  if (!(q >= 1 && q <= n)) throw new Error(`svdLowRank: q = ${q} must be in [1, ${n}] for a [${m}, ${n}] matrix`);
  const start = Float64Array.from({ length: q * n }, o.normal);
  let Q = orthonormalRows(await a.times(start, q), q, m, o.normal).P;
  let previous: Float64Array | null = null;
  let best = Infinity, stalled = 0;
  for (let i = 0; i < o.niter; i++) {
    const Bt = await a.timesT(Q, q);
    if (o.converge) {
      // Bt holds (Qᵀ A)ᵀ: the Ritz vectors of this iteration come for free. Stop when they
      // settle, or when f32 rounding in the products keeps them from settling further.
      const svd = smallSvd(Q, Bt, q, m, n);
      const V = svd.V.subarray(0, o.converge.rank * n);
      if (previous) {
        const moved = subspaceDistance(previous, V, o.converge.rank, n);
        stalled = moved < best ? 0 : stalled + 1;
        best = Math.min(best, moved);
        if (moved < o.converge.tol || stalled >= 8) return svd;
      }
      previous = Float64Array.from(V);
    }
    const P = orthonormalRows(Bt, q, n, o.normal).P;
    Q = orthonormalRows(await a.times(P, q), q, m, o.normal).P;
  }
  return smallSvd(Q, await a.timesT(Q, q), q, m, n);
}

/**
 * SVD of A restricted to the orthonormal rows Q [q, m], given Bt = (Qᵀ A)ᵀ as rows [q, n]:
 * Qᵀ A = L P (LQ by Gram-Schmidt), L = Ul S Vlᵀ (Jacobi), so A ≈ (Q Ul) S (Vlᵀ P).
 */
function smallSvd(Q: Float64Array, Bt: Float64Array, q: number, m: number, n: number): Svd {
  const { P, L } = orthonormalRows(Bt, q, n, null);
  const { U: Ul, S, V: Vl, order } = jacobiSvd(L, q);
  const U = new Float64Array(q * m), V = new Float64Array(q * n);
  order.forEach((j, out) => {
    // column j of Ul / Vl combines the rows of Q / P
    for (let i = 0; i < q; i++) {
      const u = Ul[i * q + j]!, v = Vl[i * q + j]!;
      for (let c = 0; c < m; c++) U[out * m + c]! += u * Q[i * m + c]!;
      for (let c = 0; c < n; c++) V[out * n + c]! += v * P[i * n + c]!;
    }
  });
  return { k: q, U, S: Float64Array.from(order, (j) => S[j]!), V };
}

/**
 * Gram-Schmidt (modified, two passes) on q rows of length len: X = L P with P orthonormal rows
 * and L [q, q] lower-triangular. A row that is (numerically) in the span of the earlier ones gets a
 * random direction orthogonal to them (as a complete QR would), or is left zero when `normal` is null.
 */
export function orthonormalRows(X: Float64Array, q: number, len: number, normal: (() => number) | null): { P: Float64Array; L: Float64Array } {
  const P = Float64Array.from(X.subarray(0, q * len));
  const L = new Float64Array(q * q);
  for (let i = 0; i < q; i++) {
    const row = P.subarray(i * len, (i + 1) * len);
    const before = norm(row);
    for (let pass = 0; pass < 2; pass++) {
      for (let j = 0; j < i; j++) {
        const pj = P.subarray(j * len, (j + 1) * len);
        const c = dot(pj, row);
        L[i * q + j]! += c;
        for (let k = 0; k < len; k++) row[k]! -= c * pj[k]!;
      }
    }
    let r = norm(row);
    if (r <= 1e-12 * before || r === 0) {
      L[i * q + i] = 0;
      if (!normal) {
        row.fill(0);
        continue;
      }
      for (let k = 0; k < len; k++) row[k] = normal();
      for (let pass = 0; pass < 2; pass++) {
        for (let j = 0; j < i; j++) {
          const pj = P.subarray(j * len, (j + 1) * len);
          const c = dot(pj, row);
          for (let k = 0; k < len; k++) row[k]! -= c * pj[k]!;
        }
      }
      r = norm(row);
    } else L[i * q + i] = r;
    for (let k = 0; k < len; k++) row[k]! /= r;
  }
  return { P, L };
}

/**
 * One-sided Jacobi (Hestenes) SVD of a q×q matrix M: rotate column pairs until all are orthogonal;
 * then M V = U diag(S). Returns U, V column-major-in-rows ([i * q + j] = row i, column j) and the
 * column order by descending singular value.
 */
export function jacobiSvd(M: Float64Array, q: number): { U: Float64Array; S: Float64Array; V: Float64Array; order: number[] } {
  const U = Float64Array.from(M);
  const V = new Float64Array(q * q);
  for (let i = 0; i < q; i++) V[i * q + i] = 1;
  for (let sweep = 0; sweep < 60; sweep++) {
    let rotated = false;
    for (let i = 0; i < q - 1; i++) {
      for (let j = i + 1; j < q; j++) {
        let a = 0, b = 0, g = 0;
        for (let k = 0; k < q; k++) {
          const x = U[k * q + i]!, y = U[k * q + j]!;
          a += x * x;
          b += y * y;
          g += x * y;
        }
        if (g === 0 || Math.abs(g) <= 1e-15 * Math.sqrt(a * b)) continue;
        rotated = true;
        const zeta = (b - a) / (2 * g);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t), s = c * t;
        for (const X of [U, V]) {
          for (let k = 0; k < q; k++) {
            const x = X[k * q + i]!, y = X[k * q + j]!;
            X[k * q + i] = c * x - s * y;
            X[k * q + j] = s * x + c * y;
          }
        }
      }
    }
    if (!rotated) break;
  }
  const S = new Float64Array(q);
  for (let j = 0; j < q; j++) {
    let s = 0;
    for (let k = 0; k < q; k++) s += U[k * q + j]! ** 2;
    S[j] = Math.sqrt(s);
    for (let k = 0; k < q; k++) U[k * q + j] = S[j]! > 0 ? U[k * q + j]! / S[j]! : 0;
  }
  const order = Array.from({ length: q }, (_, j) => j).sort((x, y) => S[y]! - S[x]!);
  return { U, S, V, order };
}

/** max_i ||v_i - P_prev v_i||: how far the new rows leave the previous rows' span (sine of the largest angle). */
function subspaceDistance(prev: Float64Array, now: Float64Array, r: number, len: number): number {
  let worst = 0;
  const rest = new Float64Array(len);
  for (let i = 0; i < r; i++) {
    rest.set(now.subarray(i * len, (i + 1) * len));
    for (let j = 0; j < r; j++) {
      const pj = prev.subarray(j * len, (j + 1) * len);
      const c = dot(pj, rest);
      for (let k = 0; k < len; k++) rest[k]! -= c * pj[k]!;
    }
    worst = Math.max(worst, norm(rest));
  }
  return worst;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let k = 0; k < a.length; k++) s += a[k]! * b[k]!;
  return s;
}

const norm = (a: ArrayLike<number>): number => Math.sqrt(dot(a, a));
