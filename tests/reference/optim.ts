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
