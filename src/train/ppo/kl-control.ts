// The KL coefficient of the reward's penalty, as TRL's controllers: adaptive (Ziegler et al.,
// "Fine-Tuning Language Models from Human Preferences") toward a target KL when LLaMA-Factory's
// ppo_target is set (it always is: default 6.0), fixed otherwise. TRL's defaults: init_kl_coef 0.2,
// horizon 10000.

export interface KlController {
  value: number;
  /** After a PPO step: `kl` the batch's mean summed KL, `nSteps` its rollouts. */
  update(kl: number, nSteps: number): void;
}

export class AdaptiveKl implements KlController {
  constructor(public value: number, readonly target: number, readonly horizon: number) {
    if (!(target > 0)) throw new Error(`ppo_target must be > 0, got ${target}`);
  }

  update(kl: number, nSteps: number): void {
    const error = Math.min(0.2, Math.max(-0.2, kl / this.target - 1));
    this.value *= 1 + (error * nSteps) / this.horizon;
  }
}

export class FixedKl implements KlController {
  constructor(public value: number) {}

  update(): void {}
}
