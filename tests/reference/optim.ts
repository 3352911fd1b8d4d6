// f64 CPU references for the optimizer kernels (src/kernels/optim.ts): torch.optim.AdamW's
// formula (decoupled weight decay, bias corrections as torch) and clip_grad_norm_.

export interface AdamWRefOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
  /** multiply the gradient by this first */
  gradScale?: number;
}

/** One AdamW step in place on f64 arrays. */
export function refAdamW(p: Float64Array, g: ArrayLike<number>, m: Float64Array, v: Float64Array, o: AdamWRefOptions): void {
  const bc1 = 1 - o.beta1 ** o.step;
  const bc2 = 1 - o.beta2 ** o.step;
  const stepSize = o.lr / bc1;
  const bc2sqrt = Math.sqrt(bc2);
  for (let i = 0; i < p.length; i++) {
    const gi = g[i]! * (o.gradScale ?? 1);
    p[i] = p[i]! * (1 - o.lr * o.weightDecay);
    m[i] = o.beta1 * m[i]! + (1 - o.beta1) * gi;
    v[i] = o.beta2 * v[i]! + (1 - o.beta2) * gi * gi;
    const denom = Math.sqrt(v[i]!) / bc2sqrt + o.eps;
    p[i] = p[i]! - stepSize * (m[i]! / denom);
  }
}

export function refSumSq(tensors: readonly ArrayLike<number>[]): number {
  let s = 0;
  for (const t of tensors) for (let i = 0; i < t.length; i++) s += t[i]! * t[i]!;
  return s;
}

/** torch.nn.utils.clip_grad_norm_: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1. */
export function refClipScale(sumSq: number, maxNorm: number): number {
  return Math.min(1, maxNorm / (Math.sqrt(sumSq) + 1e-6));
}

/** One Adam-mini step (adam-mini 1.1.1's formulas) in place; vmean has one entry per block of `block` elements. */
export function refAdamMini(p: Float64Array, g: ArrayLike<number>, m: Float64Array, vmean: Float64Array, block: number, o: AdamWRefOptions): void {
  const s = o.gradScale ?? 1;
  for (let b = 0; b < vmean.length; b++) {
    const end = Math.min(p.length, (b + 1) * block);
    let sum = 0;
    for (let i = b * block; i < end; i++) sum += (g[i]! * s) ** 2;
    vmean[b] = o.beta2 * vmean[b]! + (1 - o.beta2) * (sum / (end - b * block));
  }
  const bc1 = 1 - o.beta1 ** o.step, bc2sqrt = Math.sqrt(1 - o.beta2 ** o.step);
  for (let i = 0; i < p.length; i++) {
    p[i] = p[i]! * (1 - o.lr * o.weightDecay);
    m[i] = o.beta1 * m[i]! + (1 - o.beta1) * g[i]! * s;
    p[i] = p[i]! - (o.lr / bc1) * m[i]! / (Math.sqrt(vmean[Math.floor(i / block)]!) / bc2sqrt + o.eps);
  }
}

/** Muon's quintic Newton-Schulz on G [R, C] (row-major), in f64 and with explicit transposes. */
export function refNewtonSchulz(G: ArrayLike<number>, R: number, C: number, steps: number): Float64Array {
  const tall = R > C;
  const [r, c] = tall ? [C, R] : [R, C];
  let X = new Float64Array(r * c);
  for (let i = 0; i < R; i++) for (let j = 0; j < C; j++) X[tall ? j * c + i : i * c + j] = G[i * C + j]!;
  const norm = Math.sqrt(X.reduce((s, x) => s + x * x, 0));
  X = X.map((x) => x / (norm + 1e-7));
  const mul = (A: Float64Array, B: Float64Array, n: number, k: number, mm: number) => {
    const out = new Float64Array(n * mm);
    for (let i = 0; i < n; i++) for (let l = 0; l < k; l++) for (let j = 0; j < mm; j++) out[i * mm + j] += A[i * k + l]! * B[l * mm + j]!;
    return out;
  };
  const [a, b, cc] = [3.4445, -4.775, 2.0315];
  for (let s = 0; s < steps; s++) {
    const Xt = new Float64Array(c * r);
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) Xt[j * r + i] = X[i * c + j]!;
    const A = mul(X, Xt, r, c, r);
    const AA = mul(A, A, r, r, r);
    const B = A.map((x, i) => b * x + cc * AA[i]!);
    const BX = mul(B, X, r, r, c);
    X = X.map((x, i) => a * x + BX[i]!);
  }
  if (!tall) return X;
  const out = new Float64Array(R * C);
  for (let i = 0; i < R; i++) for (let j = 0; j < C; j++) out[i * C + j] = X[j * c + i]!;
  return out;
}

/** transformers' AdamW (galore_torch / apollo_torch for unprojected parameters): decay after the update. */
export function refHfAdamW(p: Float64Array, g: ArrayLike<number>, m: Float64Array, v: Float64Array, o: AdamWRefOptions): void {
  const s = o.gradScale ?? 1;
  const stepSize = (o.lr * Math.sqrt(1 - o.beta2 ** o.step)) / (1 - o.beta1 ** o.step);
  for (let i = 0; i < p.length; i++) {
    const gi = g[i]! * s;
    m[i] = o.beta1 * m[i]! + (1 - o.beta1) * gi;
    v[i] = o.beta2 * v[i]! + (1 - o.beta2) * gi * gi;
    p[i] = p[i]! - stepSize * (m[i]! / (Math.sqrt(v[i]!) + o.eps));
    p[i] = p[i]! - o.lr * o.weightDecay * p[i]!;
  }
}

/** A [r, c] · B [c, n] on row-major f64 arrays, with optional transposes of the stored operands. */
export function refMatmul(A: ArrayLike<number>, B: ArrayLike<number>, r: number, c: number, n: number, tA = false, tB = false): Float64Array {
  const out = new Float64Array(r * n);
  for (let i = 0; i < r; i++) for (let l = 0; l < c; l++) {
    const a = tA ? A[l * r + i]! : A[i * c + l]!;
    for (let j = 0; j < n; j++) out[i * n + j] += a * (tB ? B[j * c + l]! : B[l * n + j]!);
  }
  return out;
}

/** Eigenvectors of a symmetric n×n matrix by cyclic Jacobi rotations, as rows, eigenvalues descending. */
function symmetricEigen(S: Float64Array, n: number): { values: number[]; vectors: Float64Array } {
  const A = Float64Array.from(S);
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += A[p * n + q]! ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) {
      const apq = A[p * n + q]!;
      if (Math.abs(apq) < 1e-300) continue;
      const theta = (A[q * n + q]! - A[p * n + p]!) / (2 * apq);
      const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
      const c = 1 / Math.sqrt(t * t + 1), s = t * c;
      for (let k = 0; k < n; k++) {
        const akp = A[k * n + p]!, akq = A[k * n + q]!;
        A[k * n + p] = c * akp - s * akq;
        A[k * n + q] = s * akp + c * akq;
      }
      for (let k = 0; k < n; k++) {
        const apk = A[p * n + k]!, aqk = A[q * n + k]!;
        A[p * n + k] = c * apk - s * aqk;
        A[q * n + k] = s * apk + c * aqk;
      }
      for (let k = 0; k < n; k++) {
        const vkp = V[k * n + p]!, vkq = V[k * n + q]!;
        V[k * n + p] = c * vkp - s * vkq;
        V[k * n + q] = s * vkp + c * vkq;
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => A[b * n + b]! - A[a * n + a]!);
  const vectors = new Float64Array(n * n);
  order.forEach((j, i) => { for (let k = 0; k < n; k++) vectors[i * n + k] = V[k * n + j]!; });
  return { values: order.map((j) => A[j * n + j]!), vectors };
}

/**
 * GaLore's projection of G [R, C]: the top-k right singular vectors as rows [k, C] (right) or the
 * top-k left ones as columns [R, k] (left), each signed with its largest-magnitude entry positive.
 */
export function refTopSingular(G: ArrayLike<number>, R: number, C: number, k: number, side: 'left' | 'right'): Float64Array {
  const n = side === 'right' ? C : R;
  // GᵀG [C, C] or G Gᵀ [R, R]
  const gram = side === 'right' ? refMatmul(G, G, C, R, C, true, false) : refMatmul(G, G, R, C, R, false, true);
  const { vectors } = symmetricEigen(gram, n);
  const out = new Float64Array(k * n);
  for (let i = 0; i < k; i++) {
    const v = vectors.subarray(i * n, (i + 1) * n);
    let big = 0;
    for (const x of v) if (Math.abs(x) > Math.abs(big)) big = x;
    for (let j = 0; j < n; j++) out[side === 'right' ? i * n + j : j * k + i] = Math.sign(big) * v[j]!;
  }
  return out;
}

/** The Adam direction of transformers' AdamW, updating m and v: m / (sqrt(v) + eps). */
export function refAdamDirection(g: ArrayLike<number>, m: Float64Array, v: Float64Array, o: { beta1: number; beta2: number; eps: number }): Float64Array {
  return Float64Array.from(m, (_, i) => {
    m[i] = o.beta1 * m[i]! + (1 - o.beta1) * g[i]!;
    v[i] = o.beta2 * v[i]! + (1 - o.beta2) * g[i]! ** 2;
    return m[i]! / (Math.sqrt(v[i]!) + o.eps);
  });
}
