// What the preference stages log and chart: TRL's / LLaMA-Factory's metric names.

import type { PrefLoss, PreferenceStage } from './options';

/** Metric keys as TRL / LLaMA-Factory log them (evaluation records carry them with `eval_`). */
export const PREFERENCE_METRICS = [
  'rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins',
  'logps/chosen', 'logps/rejected', 'sft_loss', 'odds_ratio_loss', 'kl', 'accuracy',
] as const;
export type PreferenceMetric = (typeof PREFERENCE_METRICS)[number];
export type PreferenceLogFields = { [K in PreferenceMetric | `eval_${PreferenceMetric}`]?: number };

/** Curves to chart per stage, as LLaMA-Factory's workflows plot them (first) and then the rest. */
export function chartKeys(stage: 'pt' | 'sft' | PreferenceStage, loss: PrefLoss = 'sigmoid'): string[] {
  if (stage === 'dpo') {
    return ['loss', 'rewards/accuracies', 'eval_loss', 'rewards/margins', 'rewards/chosen', 'rewards/rejected', 'eval_rewards/accuracies',
      ...(loss === 'orpo' ? ['sft_loss', 'odds_ratio_loss'] : [])];
  }
  if (stage === 'kto') return ['loss', 'rewards/chosen', 'eval_loss', 'rewards/rejected', 'rewards/margins', 'kl'];
  if (stage === 'rm') return ['loss', 'eval_loss', 'eval_accuracy', 'accuracy'];
  return ['loss', 'eval_loss'];
}
