// ppo_score_norm: LLaMA-Factory sets TRL's use_score_scaling and use_score_norm together, so each
// batch's scores become (score - running mean) / (running std + f32 eps). The running moments are
// TRL's RunningMoments: a parallel (Chan et al.) merge of each batch's mean and biased variance,
// starting from mean 0, variance 1 and a count of 1e-24; the std it divides by is unbiased.

const F32_EPS = 1.1920928955078125e-7;

export interface MomentsState {
  mean: number;
  variance: number;
  std: number;
  count: number;
}

export class RunningMoments {
  state: MomentsState = { mean: 0, variance: 1, std: 1, count: 1e-24 };

  /** Merges a batch of scores into the running moments. */
  update(xs: readonly number[]): void {
    const n = xs.length;
    if (n === 0) return;
    const mean = xs.reduce((a, x) => a + x, 0) / n;
    const variance = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / n;
    const s = this.state;
    const delta = mean - s.mean;
    const total = s.count + n;
    const sum = s.variance * s.count + (delta ** 2 * s.count * n) / total + variance * n;
    const merged = sum / total;
    this.state = { mean: s.mean + (delta * n) / total, variance: merged, std: Math.sqrt((merged * total) / (total - 1)), count: total };
  }

  /** Updates with the batch, then normalises it. */
  normalize(xs: readonly number[]): number[] {
    this.update(xs);
    const { mean, std } = this.state;
    return xs.map((x) => (x - mean) / (std + F32_EPS));
  }
}
