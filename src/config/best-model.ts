// load_best_model_at_end, metric_for_best_model, greater_is_better and early_stopping_steps as HF's
// TrainingArguments.__post_init__ and EarlyStoppingCallback check and default them: the metric
// defaults to loss with load_best_model_at_end and gets the eval_ prefix, greater_is_better
// defaults from its name (false for names ending in loss), and load_best_model_at_end needs the
// evaluation and save schedules to line up so that every save follows an evaluation.

import type { BestModelOptions } from '../train/best-model';
import type { CrucibleConfig } from './schema';

type BestModelConfig = Pick<CrucibleConfig, 'load_best_model_at_end' | 'metric_for_best_model' | 'greater_is_better' | 'early_stopping_steps'
  | 'eval_strategy' | 'save_strategy' | 'eval_steps' | 'save_steps' | 'logging_steps'>;

/** The run's best-model settings; null when no metric is tracked (no metric_for_best_model, no load_best_model_at_end). */
export function bestModelSettings(c: Pick<BestModelConfig, 'load_best_model_at_end' | 'metric_for_best_model' | 'greater_is_better' | 'early_stopping_steps'>): BestModelOptions | null {
  const name = c.metric_for_best_model ?? (c.load_best_model_at_end ? 'loss' : null);
  if (name === null) return null;
  return {
    metric: name.startsWith('eval_') ? name : `eval_${name}`,
    greaterIsBetter: c.greater_is_better ?? !name.endsWith('loss'),
    loadAtEnd: c.load_best_model_at_end,
    patience: c.early_stopping_steps,
  };
}

/** What HF refuses in these keys, each with the key to blame. */
export function bestModelProblems(c: BestModelConfig): { key: keyof BestModelConfig; message: string }[] {
  const problems: { key: keyof BestModelConfig; message: string }[] = [];
  if (c.load_best_model_at_end) {
    if (c.eval_strategy !== c.save_strategy) {
      problems.push({ key: 'load_best_model_at_end', message: `load_best_model_at_end requires the save and eval strategy to match, but found eval_strategy: ${c.eval_strategy}, save_strategy: ${c.save_strategy}` });
    } else if (c.eval_strategy === 'steps') {
      const save = c.save_steps;
      const evalSteps = c.eval_steps ?? c.logging_steps;
      if (!isMultiple(save, evalSteps)) {
        problems.push({
          key: 'load_best_model_at_end',
          message: (save < 1) !== (evalSteps < 1)
            ? `load_best_model_at_end requires save_steps to be a multiple of eval_steps, which cannot be guaranteed when mixing a ratio and absolute steps (save_steps ${save}, eval_steps ${evalSteps})`
            : `load_best_model_at_end requires save_steps to be a round multiple of eval_steps, but found save_steps ${save}, eval_steps ${evalSteps}${c.eval_steps === null ? ' (eval_steps defaults to logging_steps)' : ''}`,
        });
      }
    }
  }
  if (c.early_stopping_steps !== null) {
    if (bestModelSettings(c) === null) problems.push({ key: 'early_stopping_steps', message: 'early_stopping_steps needs metric_for_best_model (or load_best_model_at_end: true, which makes it loss)' });
    if (c.eval_strategy === 'no') problems.push({ key: 'early_stopping_steps', message: 'early_stopping_steps counts evaluations: set eval_strategy to steps or epoch' });
  }
  return problems;
}

/** HF's test, with its work-around for ratios (both below 1: compared in millionths). */
function isMultiple(save: number, evalSteps: number): boolean {
  if (save >= 1 && evalSteps >= 1) return save % evalSteps === 0;
  if (save < 1 && evalSteps < 1) return Math.round(save * 1e6) % Math.round(evalSteps * 1e6) === 0;
  return false;
}
