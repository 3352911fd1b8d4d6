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

/** Per-token -log p(label), 0 where ignored. */
export function refLoss(p: LossProblem): Float64Array {
  const out = new Float64Array(p.T);
  for (let t = 0; t < p.T; t++) {
    const label = p.labels[t]!;
    if (!valid(label, p.V)) continue;
    const z = logitsRow(p, t);
    out[t] = lse(z) - z[label]!;
  }
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
    for (let v = 0; v < V; v++) {
      let g = Math.exp(z[v]! - l) - (v === label ? 1 : 0);
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
