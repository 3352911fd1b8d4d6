// f64 CPU reference for the fused lm_head + cross-entropy (src/kernels/loss.ts).
export const IGNORE = -100;

export interface LossProblem {
  h: ArrayLike<number>; // [T, D]
  w: ArrayLike<number>; // [V, D]
  labels: ArrayLike<number>; // [T]
  T: number;
  D: number;
  V: number;
  softcap?: number;
  /** Token loss variant (src/kernels/loss.ts TokenLoss); default cross-entropy. */
  tokenLoss?: { kind: 'ce' } | { kind: 'dft' } | { kind: 'eaft'; alpha: number } | { kind: 'asft'; alpha: number } | { kind: 'label_smoothing'; epsilon: number };
  /** ASFT: the reference model's final hidden states [T, D] (its logits: hRef wᵀ, soft-capped alike). */
  hRef?: ArrayLike<number>;
  /** ASFT: the reference's lm_head [V, D] (default w). */
  wRef?: ArrayLike<number>;
  /**
   * ASFT: the reference's softmax [T, V] held fixed (it is a separate model, no gradient flows
   * into it): the finite-difference check freezes it at the unperturbed point.
   */
  frozenRefProbs?: ArrayLike<number>;
  /**
   * DFT and EAFT hold each token's weight constant: the finite-difference check differentiates the
   * objective with these weights frozen at the unperturbed point.
   */
  frozenWeights?: ArrayLike<number>;
}

const valid = (label: number, V: number): boolean => label >= 0 && label < V;

/** Logits row t (soft-capped when asked), f64. */
function logitsRow(p: LossProblem, t: number): Float64Array {
  const { h, w, D, V, softcap = 0 } = p;
  const z = new Float64Array(V);
  for (let v = 0; v < V; v++) {
    let s = 0;
    for (let d = 0; d < D; d++) s += h[t * D + d]! * w[v * D + d]!;
    z[v] = softcap > 0 ? softcap * Math.tanh(s / softcap) : s;
  }
  return z;
}

function lse(z: Float64Array): number {
  let m = -Infinity;
  for (const x of z) m = Math.max(m, x);
  let s = 0;
  for (const x of z) s += Math.exp(x - m);
  return m + Math.log(s);
}

/**
 * Per-token loss, 0 where ignored: cross-entropy ce = -log p(label); DFT p·ce with p = exp(-ce)
 * (LLaMA-Factory's _dft_cross_entropy); label smoothing (1-e)·ce + e·mean_v(-log p(v)) (HF's
 * LabelSmoother).
 */
export function refLoss(p: LossProblem): Float64Array {
  const out = new Float64Array(p.T);
  const kind = p.tokenLoss?.kind ?? 'ce';
  for (let t = 0; t < p.T; t++) {
    const label = p.labels[t]!;
    if (!valid(label, p.V)) continue;
    const z = logitsRow(p, t);
    const l = lse(z);
    const ce = l - z[label]!;
    if (kind === 'dft') out[t] = (p.frozenWeights ? p.frozenWeights[t]! : Math.exp(-ce)) * ce;
    else if (kind === 'asft') {
      // LLaMA-Factory's _asft_cross_entropy: DFT plus alpha KL(q || p), q the reference's softmax
      const q = refProbsRow(p, t);
      let kl = 0;
      for (let v = 0; v < p.V; v++) if (q[v]! > 0) kl += q[v]! * (Math.log(q[v]!) - (z[v]! - l));
      out[t] = (p.frozenWeights ? p.frozenWeights[t]! : Math.exp(-ce)) * ce + (p.tokenLoss as { alpha: number }).alpha * kl;
    }
    else if (kind === 'eaft') out[t] = (p.frozenWeights ? p.frozenWeights[t]! : eaftWeight(z, (p.tokenLoss as { alpha: number }).alpha)) * ce;
    else if (kind === 'label_smoothing') {
      const e = (p.tokenLoss as { epsilon: number }).epsilon;
      let nll = 0;
      for (const zv of z) nll += l - zv;
      out[t] = (1 - e) * ce + (e * nll) / p.V;
    } else out[t] = ce;
  }
  return out;
}

/** ASFT: the reference's softmax over row t (frozen when given). */
function refProbsRow(p: LossProblem, t: number): Float64Array {
  if (p.frozenRefProbs) return Float64Array.from({ length: p.V }, (_, v) => p.frozenRefProbs![t * p.V + v]!);
  if (!p.hRef) throw new Error('ASFT reference: hRef missing');
  const z = logitsRow({ ...p, h: p.hRef, w: p.wRef ?? p.w }, t);
  const l = lse(z);
  return z.map((x) => Math.exp(x - l));
}

/** ASFT: the reference's softmax [T, V] at the given point. */
export function refAsftProbs(p: LossProblem): Float64Array {
  const out = new Float64Array(p.T * p.V);
  for (let t = 0; t < p.T; t++) out.set(refProbsRow(p, t), t * p.V);
  return out;
}

/** DFT's per-token weights exp(-ce) at the given point (1 where ignored). */
export function refDftWeights(p: LossProblem): Float64Array {
  const ce = refLoss({ ...p, tokenLoss: { kind: 'ce' } });
  return ce.map((c) => Math.exp(-c));
}

/**
 * LLaMA-Factory's _eaft_cross_entropy weight: (H / 3)^alpha, H the entropy of the softmax over the
 * 20 largest logits (torch.topk, k = 20).
 */
export function eaftWeight(z: ArrayLike<number>, alpha: number): number {
  const top = Array.from(z).sort((a, b) => b - a).slice(0, 20);
  const l = lse(Float64Array.from(top));
  const h = -top.reduce((s, x) => s + Math.exp(x - l) * (x - l), 0);
  return (h / 3) ** alpha;
}

/** EAFT's per-token weights at the given point. */
export function refEaftWeights(p: LossProblem, alpha: number): Float64Array {
  const out = new Float64Array(p.T);
  for (let t = 0; t < p.T; t++) out[t] = eaftWeight(logitsRow(p, t), alpha);
  return out;
}

/** sum_t scale * loss_t (the scalar the gradients differentiate). */
export function refObjective(p: LossProblem, scale: number): number {
  return refLoss(p).reduce((a, b) => a + scale * b, 0);
}

/** Gradients of sum_t scale * loss_t with respect to h [T, D] and w [V, D]. */
export function refLossGrad(p: LossProblem, scale: number): { dH: Float64Array; dW: Float64Array } {
  const { h, w, T, D, V, softcap = 0 } = p;
  const dH = new Float64Array(T * D), dW = new Float64Array(V * D);
  for (let t = 0; t < T; t++) {
    const label = p.labels[t]!;
    if (!valid(label, V)) continue;
    const z = logitsRow(p, t);
    const l = lse(z);
    const e = p.tokenLoss?.kind === 'label_smoothing' ? p.tokenLoss.epsilon : 0;
    const kind = p.tokenLoss?.kind;
    const weight = kind === 'dft' || kind === 'asft' ? Math.exp(z[label]! - l) : p.tokenLoss?.kind === 'eaft' ? eaftWeight(z, p.tokenLoss.alpha) : 1;
    const q = p.tokenLoss?.kind === 'asft' ? refProbsRow(p, t) : null;
    const alpha = p.tokenLoss?.kind === 'asft' ? p.tokenLoss.alpha : 0;
    for (let v = 0; v < V; v++) {
      let g = (Math.exp(z[v]! - l) - (v === label ? 1 - e : 0) - e / V) * weight;
      if (q) g += alpha * (Math.exp(z[v]! - l) - q[v]!);
      if (softcap > 0) g *= 1 - (z[v]! / softcap) ** 2;
      g *= scale;
      for (let d = 0; d < D; d++) {
        dH[t * D + d] += g * w[v * D + d]!;
        dW[v * D + d] += g * h[t * D + d]!;
      }
    }
  }
  return { dH, dW };
}
