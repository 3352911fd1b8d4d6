// From a scored rollout to what the PPO loss trains on, as TRL's PPOTrainer (the version
// LLaMA-Factory's CustomPPOTrainer drives) computes it; f64 on the host. Each row is one response:
// its tokens' log-probabilities under the policy and the reference, the policy's values at the
// same positions (the position that predicts each response token), and the reward model's score.
//
//   rewards[t]  = -kl_coef · (logp[t] - ref_logp[t]), plus the score on the last token   (compute_rewards)
//   ppo_whiten_rewards: rewards whitened over the batch's tokens, mean kept              (masked_whiten shift_mean=False)
//   delta[t]    = rewards[t] + γ · values[t+1] - values[t]   (values past the response are 0)
//   adv[t]      = delta[t] + γλ · adv[t+1]                                               (GAE)
//   returns     = adv + values;  advantages whitened over the batch's tokens             (compute_advantages)
// Whitening uses the unbiased variance and 1e-8 inside the square root, as TRL's masked_whiten.

export interface ScoredRow {
  logps: ArrayLike<number>;
  refLogps: ArrayLike<number>;
  values: ArrayLike<number>;
  score: number;
}

export interface AdvantageOptions {
  gamma: number;
  lam: number;
  whitenRewards: boolean;
}

export interface Advantages {
  /** Per row, per response token. */
  rewards: Float64Array[];
  advantages: Float64Array[];
  returns: Float64Array[];
  /** logp - ref_logp per token (TRL's "kl" penalty). */
  kls: Float64Array[];
  /** -kl_coef · kl per token. */
  nonScoreRewards: Float64Array[];
}

/** Mean and unbiased variance over every token of every row. */
export function tokenMoments(rows: readonly ArrayLike<number>[]): { mean: number; variance: number } {
  let n = 0, s = 0;
  for (const r of rows) for (let i = 0; i < r.length; i++) (s += r[i]!), n++;
  if (n < 2) throw new Error(`PPO whitens over a step's response tokens and needs at least 2, got ${n} (as TRL): sample more rollouts per step (per_device_train_batch_size × gradient_accumulation_steps) or longer responses`);
  const mean = s / n;
  let q = 0;
  for (const r of rows) for (let i = 0; i < r.length; i++) q += (r[i]! - mean) ** 2;
  return { mean, variance: (q / n) * (n / (n - 1)) };
}

/** (x - mean) / sqrt(var + 1e-8) over all tokens; `keepMean` adds the mean back. */
export function whiten(rows: readonly Float64Array[], keepMean: boolean): Float64Array[] {
  const { mean, variance } = tokenMoments(rows);
  const inv = 1 / Math.sqrt(variance + 1e-8);
  return rows.map((r) => r.map((x) => (x - mean) * inv + (keepMean ? mean : 0)));
}

export function computeAdvantages(rows: readonly ScoredRow[], klCoef: number, o: AdvantageOptions): Advantages {
  const kls = rows.map((r) => Float64Array.from(r.logps, (l, t) => l - r.refLogps[t]!));
  const nonScoreRewards = kls.map((k) => k.map((x) => -klCoef * x));
  let rewards: Float64Array[] = rows.map((r, i) => {
    const n = r.logps.length;
    if (n === 0) throw new Error(`rollout row ${i} has no response token`);
    if (r.values.length !== n || r.refLogps.length !== n) throw new Error(`rollout row ${i}: ${n} log-probabilities, ${r.refLogps.length} reference ones, ${r.values.length} values`);
    const w = Float64Array.from(nonScoreRewards[i]!);
    w[n - 1] += r.score;
    return w;
  });
  if (o.whitenRewards) rewards = whiten(rewards, true);
  const raw = rows.map((r, i) => {
    const n = r.logps.length, rew = rewards[i]!;
    const adv = new Float64Array(n);
    let last = 0;
    for (let t = n - 1; t >= 0; t--) {
      const next = t + 1 < n ? r.values[t + 1]! : 0;
      last = rew[t]! + o.gamma * next - r.values[t]! + o.gamma * o.lam * last;
      adv[t] = last;
    }
    return adv;
  });
  const returns = raw.map((a, i) => a.map((x, t) => x + rows[i]!.values[t]!));
  return { rewards, advantages: whiten(raw, false), returns, kls, nonScoreRewards };
}
