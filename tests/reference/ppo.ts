// f64 references for stage ppo written the way TRL's PPOTrainer computes on padded tensors: a
// batch [B, L] of positions with a response mask (1 on the positions that predict a response
// token), masked means over the whole batch, the reward on each row's last masked position, and
// GAE run backwards over every position (masked values and rewards are 0).

export interface Padded {
  B: number;
  L: number;
  /** [B * L] each. */
  mask: Float64Array;
  logprobs: Float64Array;
  refLogprobs: Float64Array;
  values: Float64Array;
}

const maskedMean = (x: Float64Array, m: Float64Array) => {
  let s = 0, n = 0;
  for (let i = 0; i < x.length; i++) (s += x[i]! * m[i]!), (n += m[i]!);
  return s / n;
};
const maskedVar = (x: Float64Array, m: Float64Array) => {
  const mu = maskedMean(x, m);
  const n = m.reduce((a, b) => a + b, 0);
  return maskedMean(x.map((v) => (v - mu) ** 2), m) * (n / (n - 1));
};
const maskedWhiten = (x: Float64Array, m: Float64Array, shiftMean: boolean) => {
  const mu = maskedMean(x, m), v = maskedVar(x, m);
  return x.map((e) => (e - mu) / Math.sqrt(v + 1e-8) + (shiftMean ? 0 : mu));
};

export function refAdvantages(p: Padded, scores: number[], klCoef: number, gamma: number, lam: number, whitenRewards: boolean) {
  const { B, L, mask } = p;
  let rewards = new Float64Array(B * L);
  for (let b = 0; b < B; b++) {
    let last = -1;
    for (let t = 0; t < L; t++) {
      rewards[b * L + t] = -klCoef * (p.logprobs[b * L + t]! - p.refLogprobs[b * L + t]!);
      if (mask[b * L + t]) last = t;
    }
    rewards[b * L + last] += scores[b]!;
  }
  const values = p.values.map((v, i) => v * mask[i]!);
  rewards = rewards.map((r, i) => r * mask[i]!);
  // re-masked: TRL leaves whitened values on the padding after each response, which GAE then
  // carries into the response's advantages (a padding artifact Crucible does not reproduce)
  if (whitenRewards) rewards = maskedWhiten(rewards, mask, false).map((r, i) => r * mask[i]!);
  const adv = new Float64Array(B * L);
  for (let b = 0; b < B; b++) {
    let lastgae = 0;
    for (let t = L - 1; t >= 0; t--) {
      const next = t < L - 1 ? values[b * L + t + 1]! : 0;
      const delta = rewards[b * L + t]! + gamma * next - values[b * L + t]!;
      lastgae = delta + gamma * lam * lastgae;
      adv[b * L + t] = lastgae;
    }
  }
  const returns = adv.map((a, i) => a + values[i]!);
  return { advantages: maskedWhiten(adv, mask, true), returns, values };
}

export interface RefLossInputs {
  mask: Float64Array;
  oldLogprobs: Float64Array;
  oldValues: Float64Array;
  logprobs: Float64Array;
  vpreds: Float64Array;
  advantages: Float64Array;
  returns: Float64Array;
}

export function refPpoLoss(x: RefLossInputs, o: { cliprange: number; cliprangeValue: number; vfCoef: number }) {
  const clip = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
  const vf = x.vpreds.map((v, i) => {
    const vc = clip(v, x.oldValues[i]! - o.cliprangeValue, x.oldValues[i]! + o.cliprangeValue);
    return Math.max((v - x.returns[i]!) ** 2, (vc - x.returns[i]!) ** 2);
  });
  const pg = x.logprobs.map((l, i) => {
    const ratio = Math.exp(l - x.oldLogprobs[i]!);
    return Math.max(-x.advantages[i]! * ratio, -x.advantages[i]! * clip(ratio, 1 - o.cliprange, 1 + o.cliprange));
  });
  const pgLoss = maskedMean(pg, x.mask), vfLoss = 0.5 * maskedMean(vf, x.mask);
  return { pgLoss, vfLoss, loss: pgLoss + o.vfCoef * vfLoss };
}
