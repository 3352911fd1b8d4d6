// The PPO loss of one mini-batch, as TRL's PPOTrainer.loss, in f64 on the host with its gradient
// with respect to every response token's log-probability and value (the GPU side turns those into
// per-token weights of the fused lm_head loss and value-head gradients). Means run over all the
// mini-batch's response tokens:
//   ratio    = exp(logp - old_logp)
//   pg_loss  = mean(max(-A · ratio, -A · clip(ratio, 1 - cliprange, 1 + cliprange)))
//   vf_loss  = 0.5 · mean(max((v - R)², (clip(v, old_v ± cliprange_value) - R)²))
//   loss     = pg_loss + vf_coef · vf_loss; all three are zeroed when mean(ratio) > ratio_threshold
// Where the clipped branch is the larger one the input lies outside the clip range, so its
// gradient is 0; elsewhere it is the unclipped branch's.

export interface PpoLossOptions {
  cliprange: number;
  cliprangeValue: number;
  vfCoef: number;
  ratioThreshold: number;
}

/** One response of the mini-batch: per-token arrays of the same length. */
export interface LossRow {
  logps: ArrayLike<number>;
  oldLogps: ArrayLike<number>;
  values: ArrayLike<number>;
  oldValues: ArrayLike<number>;
  advantages: ArrayLike<number>;
  returns: ArrayLike<number>;
}

export interface PpoLossResult {
  loss: number;
  policyLoss: number;
  /** vf_coef · vf_loss, as TRL's loss() returns it for the sum. */
  valueLoss: number;
  /** d loss / d logp and d loss / d value, per row and token. */
  dLogps: Float64Array[];
  dValues: Float64Array[];
  /** TRL's names under ppo/ (policy/..., val/..., returns/...). */
  stats: Record<string, number>;
}

export function ppoLoss(o: PpoLossOptions, rows: readonly LossRow[]): PpoLossResult {
  const N = rows.reduce((a, r) => a + r.logps.length, 0);
  if (N === 0) throw new Error('PPO loss: the mini-batch has no response token');
  const sum = (f: (r: LossRow, t: number) => number) => rows.reduce((a, r) => {
    for (let t = 0; t < r.logps.length; t++) a += f(r, t);
    return a;
  }, 0);
  const mean = (f: (r: LossRow, t: number) => number) => sum(f) / N;
  const variance = (f: (r: LossRow, t: number) => number) => {
    const m = mean(f);
    return N > 1 ? (mean((r, t) => (f(r, t) - m) ** 2) * N) / (N - 1) : 0;
  };
  let pg = 0, vf = 0, pgClipped = 0, vfClipped = 0, ratioSum = 0;
  const dLogps: Float64Array[] = [], dValues: Float64Array[] = [];
  for (const r of rows) {
    const n = r.logps.length;
    const dl = new Float64Array(n), dv = new Float64Array(n);
    for (let t = 0; t < n; t++) {
      const A = r.advantages[t]!, ret = r.returns[t]!, v = r.values[t]!, old = r.oldValues[t]!;
      const ratio = Math.exp(r.logps[t]! - r.oldLogps[t]!);
      const pg1 = -A * ratio, pg2 = -A * Math.min(1 + o.cliprange, Math.max(1 - o.cliprange, ratio));
      const vClip = Math.min(old + o.cliprangeValue, Math.max(old - o.cliprangeValue, v));
      const vf1 = (v - ret) ** 2, vf2 = (vClip - ret) ** 2;
      pg += Math.max(pg1, pg2);
      vf += Math.max(vf1, vf2);
      ratioSum += ratio;
      if (pg2 > pg1) pgClipped++;
      else dl[t] = (-A * ratio) / N;
      if (vf2 > vf1) vfClipped++;
      else dv[t] = (o.vfCoef * (v - ret)) / N;
    }
    dLogps.push(dl);
    dValues.push(dv);
  }
  let policyLoss = pg / N, valueLoss = (o.vfCoef * 0.5 * vf) / N;
  const avgRatio = ratioSum / N;
  if (avgRatio > o.ratioThreshold) {
    // TRL skips the batch (with a warning): every loss and gradient times 0
    policyLoss = valueLoss = 0;
    for (const d of [...dLogps, ...dValues]) d.fill(0);
  }
  const stats = {
    'policy/approxkl': 0.5 * mean((r, t) => (r.logps[t]! - r.oldLogps[t]!) ** 2),
    'policy/policykl': mean((r, t) => r.oldLogps[t]! - r.logps[t]!),
    'policy/clipfrac': pgClipped / N,
    'policy/advantages_mean': mean((r, t) => r.advantages[t]!),
    'policy/ratio': avgRatio,
    'returns/mean': mean((r, t) => r.returns[t]!),
    'returns/var': variance((r, t) => r.returns[t]!),
    'val/vpred': mean((r, t) => r.values[t]!),
    'val/error': mean((r, t) => (r.values[t]! - r.returns[t]!) ** 2),
    'val/clipfrac': vfClipped / N,
    'val/mean': mean((r, t) => r.oldValues[t]!),
    'val/var': variance((r, t) => r.oldValues[t]!),
  };
  return { loss: policyLoss + valueLoss, policyLoss, valueLoss, dLogps, dValues, stats };
}
