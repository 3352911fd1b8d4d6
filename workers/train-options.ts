// LLaMA-Factory keys (a CrucibleConfig) -> the engine's TrainOptions, for the app's worker.
// Mirrors the CLI's mapping (src/train/run.ts); fractions of the total (logging_steps 0.1) need
// the number of training examples, so the total steps are computed here as the Trainer does.

import type { CrucibleConfig } from '../src/config/schema';
import type { TrainOptions } from '../src/train/trainer';

/** Optimizer steps of a run, as Trainer computes them. */
export function totalSteps(c: CrucibleConfig, trainExamples: number): number {
  const micro = Math.ceil(trainExamples / c.per_device_train_batch_size);
  const perEpoch = Math.max(1, Math.ceil(micro / c.gradient_accumulation_steps));
  return c.max_steps > 0 ? c.max_steps : Math.ceil(c.num_train_epochs * perEpoch);
}

/** HF: a value below 1 is a fraction of the total steps. */
function steps(v: number, total: number): number {
  return v < 1 ? Math.max(1, Math.ceil(v * total)) : Math.round(v);
}

export function trainOptionsFromConfig(c: CrucibleConfig, trainExamples: number): TrainOptions {
  if (c.stage !== 'sft' && c.stage !== 'pt') {
    throw new Error(`stage "${c.stage}": the app trains pt and sft so far (preference stages run in the CLI)`);
  }
  if (c.pissa_init) throw new Error('pissa_init is not supported yet');
  const total = totalSteps(c, trainExamples);
  const logging = steps(c.logging_steps, total);
  const targets = c.lora_target.length === 1 && c.lora_target[0] === 'all' ? 'all' : c.lora_target;
  const evalSteps = c.eval_strategy === 'no' ? 0 : c.eval_strategy === 'epoch' ? Math.max(1, Math.ceil(total / Math.max(1, c.num_train_epochs))) : steps(c.eval_steps ?? c.logging_steps, total);
  const saveSteps = c.save_strategy === 'no' ? 0 : c.save_strategy === 'epoch' ? Math.max(1, Math.ceil(total / Math.max(1, c.num_train_epochs))) : steps(c.save_steps, total);
  return {
    finetuningType: c.finetuning_type,
    ...(c.finetuning_type === 'lora'
      ? {
          lora: {
            rank: c.lora_rank,
            alpha: c.lora_alpha ?? 2 * c.lora_rank,
            targets,
            dropout: c.lora_dropout,
            rslora: c.use_rslora,
            dora: c.use_dora,
            plusRatio: c.loraplus_lr_ratio ?? 1,
          },
        }
      : {}),
    freezeTrainableLayers: c.freeze_trainable_layers,
    learningRate: c.learning_rate,
    scheduler: c.lr_scheduler_type,
    warmupSteps: c.warmup_steps > 0 && c.warmup_steps < 1 ? Math.ceil(c.warmup_steps * total) : c.warmup_steps,
    warmupRatio: c.warmup_ratio,
    epochs: c.num_train_epochs,
    maxSteps: c.max_steps,
    batchSize: c.per_device_train_batch_size,
    gradAccum: c.gradient_accumulation_steps,
    maxGradNorm: c.max_grad_norm,
    weightDecay: c.weight_decay,
    beta1: c.adam_beta1,
    beta2: c.adam_beta2,
    eps: c.adam_epsilon,
    neftuneAlpha: c.neftune_noise_alpha ?? 0,
    seed: c.seed,
    loggingSteps: logging,
    saveSteps,
    evalSteps,
    cutoffLen: c.cutoff_len,
    recompute: !c.disable_gradient_checkpointing,
  };
}
