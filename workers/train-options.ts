// LLaMA-Factory keys -> the engine's TrainOptions for the app's worker: the CLI's shared mapping
// (src/engine/options.ts), plus HF's "a value below 1 is a fraction of the total steps" for
// logging/save/eval/warmup steps, which needs the number of training examples.

import type { CrucibleConfig } from '../src/config/schema';
import { trainOptionsFromConfig as sharedOptions } from '../src/engine/options';
import type { TrainOptions } from '../src/train/trainer';

/** Optimizer steps of a run, as Trainer computes them. */
export function totalSteps(c: Pick<CrucibleConfig, 'per_device_train_batch_size' | 'gradient_accumulation_steps' | 'max_steps' | 'num_train_epochs'>, trainExamples: number): number {
  const micro = Math.ceil(trainExamples / c.per_device_train_batch_size);
  const perEpoch = Math.max(1, Math.ceil(micro / c.gradient_accumulation_steps));
  return c.max_steps > 0 ? c.max_steps : Math.ceil(c.num_train_epochs * perEpoch);
}

const steps = (v: number, total: number) => (v > 0 && v < 1 ? Math.max(1, Math.ceil(v * total)) : Math.round(v));

/** trainExamples: sequences (pt, sft), pairs (dpo, rm) or KTO examples. */
export function trainOptionsFromConfig(c: CrucibleConfig, trainExamples: number): TrainOptions {
  const o = sharedOptions(c);
  const total = totalSteps(c, trainExamples);
  const perEpoch = Math.max(1, Math.ceil(total / Math.max(1, c.num_train_epochs)));
  return {
    ...o,
    loggingSteps: Math.max(1, steps(c.logging_steps, total)),
    saveSteps: c.save_strategy === 'no' ? 0 : c.save_strategy === 'epoch' ? perEpoch : steps(Number(c.save_steps), total),
    evalSteps: c.eval_strategy === 'no' ? 0 : c.eval_strategy === 'epoch' ? perEpoch : steps(Number(c.eval_steps ?? c.logging_steps), total),
    warmupSteps: steps(c.warmup_steps, total),
  };
}
