// Best-model selection and early stopping as HF's Trainer does them: after each evaluation
// the metric (metric_for_best_model, eval_-prefixed) is compared with the best so far
// (_determine_best_metric: strictly better, greater_is_better decides the direction), and
// EarlyStoppingCallback counts evaluations without improvement (LLaMA-Factory's
// early_stopping_steps is its patience; threshold 0). The callback compares with the best
// *before* this evaluation updates it, as HF runs on_evaluate before _determine_best_metric.

export interface BestModelOptions {
  /** The metric's name in the evaluation's results (eval_loss, eval_accuracy, ...). */
  metric: string;
  greaterIsBetter: boolean;
  /** load_best_model_at_end: the trained model left at the end is the best checkpoint's. */
  loadAtEnd: boolean;
  /** early_stopping_steps: evaluations without improvement before training stops; null: never. */
  patience: number | null;
}

/** What a run keeps of its best model (HF's TrainerState fields and the callback's counter). */
export interface BestModelState {
  best_metric: number | null;
  best_global_step: number | null;
  /** The checkpoint folder saved at best_global_step (relative to the run's folder). */
  best_model_checkpoint: string | null;
  early_stopping_patience_counter: number;
}

export const noBestModel = (): BestModelState => ({ best_metric: null, best_global_step: null, best_model_checkpoint: null, early_stopping_patience_counter: 0 });

const better = (o: BestModelOptions, value: number, than: number) => (o.greaterIsBetter ? value > than : value < than);

/**
 * The state after an evaluation at `step` with `metrics`; `stop` when the patience ran out.
 * A metric the evaluation does not produce is an error naming those it does (as HF's KeyError).
 */
export function afterEvaluation(o: BestModelOptions, s: BestModelState, metrics: Readonly<Record<string, number>>, step: number): { state: BestModelState; improved: boolean; stop: boolean } {
  const value = metrics[o.metric];
  if (value === undefined) {
    throw new Error(`metric_for_best_model: the evaluation has no ${o.metric}; it reports ${Object.keys(metrics).filter((k) => k.startsWith('eval_')).join(', ')}`);
  }
  const counter = s.best_metric === null || better(o, value, s.best_metric) ? 0 : s.early_stopping_patience_counter + 1;
  const improved = better(o, value, s.best_metric ?? (o.greaterIsBetter ? -Infinity : Infinity));
  const state: BestModelState = improved ? { ...s, best_metric: value, best_global_step: step, early_stopping_patience_counter: counter } : { ...s, early_stopping_patience_counter: counter };
  return { state, improved, stop: o.patience !== null && counter >= o.patience };
}

/** After a checkpoint `dir` is saved at `step`: it is the best model's when the best was found at this step. */
export function afterSave(s: BestModelState, dir: string, step: number): BestModelState {
  return s.best_global_step === step ? { ...s, best_model_checkpoint: dir } : s;
}
