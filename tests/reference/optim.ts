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
