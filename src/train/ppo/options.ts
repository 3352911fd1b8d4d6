// Stage ppo's settings: LLaMA-Factory's keys (ppo_epochs, ppo_buffer_size, ppo_score_norm,
// ppo_whiten_rewards, ppo_target, reward_model_type) and the TRL PPOConfig defaults LLaMA-Factory
// leaves as they are (gamma, lam, cliprange, cliprange_value, vf_coef, init_kl_coef, horizon,
// ratio_threshold), with the sampling settings of the rollouts.

import type { CrucibleConfig } from '../../config/schema';
import type { AdvantageOptions } from './advantages';
import type { PpoLossOptions } from './loss';

export interface PpoSampling {
  maxNewTokens: number;
  /** 0: greedy (do_sample false). */
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  /** Tokens that end a response (the template's). */
  stopIds: number[];
}

export interface PpoOptions extends AdvantageOptions, PpoLossOptions {
  /** ppo_epochs: passes over each rollout batch. */
  epochs: number;
  /** ppo_buffer_size: backward batches (per_device_train_batch_size × gradient_accumulation_steps rollouts) per PPO step. */
  bufferSize: number;
  /** per_device_train_batch_size: TRL's mini_batch_size. */
  miniBatch: number;
  /** gradient_accumulation_steps: mini-batches per optimizer update. */
  gradAccum: number;
  scoreNorm: boolean;
  /** ppo_target: the adaptive KL controller's target; null: a fixed coefficient. */
  target: number | null;
  initKlCoef: number;
  horizon: number;
  sampling: PpoSampling;
}

/** TRL's PPOConfig defaults for what LLaMA-Factory does not expose. */
export const TRL_PPO_DEFAULTS = {
  gamma: 1, lam: 0.95, cliprange: 0.2, cliprangeValue: 0.2, vfCoef: 0.1, ratioThreshold: 10, initKlCoef: 0.2, horizon: 10000,
} as const;

/** Rollouts per PPO step (TRL's batch_size). */
export const rolloutsPerStep = (o: PpoOptions): number => o.miniBatch * o.gradAccum * o.bufferSize;

export function checkPpoOptions(o: PpoOptions): void {
  for (const [k, v] of [['ppo_epochs', o.epochs], ['ppo_buffer_size', o.bufferSize]] as const) {
    if (!(Number.isInteger(v) && v >= 1)) throw new Error(`${k} must be a whole number >= 1, got ${v}`);
  }
  if (o.target !== null && !(o.target > 0)) throw new Error(`ppo_target must be > 0, got ${o.target}`);
  if (!(o.sampling.maxNewTokens >= 1)) throw new Error(`max_new_tokens must be >= 1 for PPO rollouts, got ${o.sampling.maxNewTokens}`);
}

type PpoKeys = 'ppo_epochs' | 'ppo_buffer_size' | 'ppo_score_norm' | 'ppo_whiten_rewards' | 'ppo_target' | 'per_device_train_batch_size' | 'gradient_accumulation_steps'
  | 'do_sample' | 'temperature' | 'top_k' | 'top_p' | 'max_new_tokens' | 'repetition_penalty';

/** LLaMA-Factory's PPOConfig from the run's keys; `stopIds`: the template's stop tokens (its eos and additional special tokens). */
export function ppoOptions(c: Pick<CrucibleConfig, PpoKeys>, stopIds: readonly number[]): PpoOptions {
  return {
    ...TRL_PPO_DEFAULTS,
    whitenRewards: c.ppo_whiten_rewards,
    epochs: c.ppo_epochs,
    bufferSize: c.ppo_buffer_size,
    miniBatch: c.per_device_train_batch_size,
    gradAccum: c.gradient_accumulation_steps,
    scoreNorm: c.ppo_score_norm,
    target: c.ppo_target,
    sampling: {
      maxNewTokens: c.max_new_tokens,
      temperature: c.do_sample ? c.temperature : 0,
      topK: c.top_k,
      topP: c.top_p,
      repetitionPenalty: c.repetition_penalty,
      stopIds: [...stopIds],
    },
  };
}
