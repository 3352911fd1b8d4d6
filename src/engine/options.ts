// LLaMA-Factory config keys -> the engine's training options. Shared by the CLI and the app, so a
// YAML means the same run in both. runOptions adds HF's "a value below 1 is a fraction of the
// total steps" for logging/save/eval/warmup steps and the epoch strategies, which need the number
// of training examples.

import type { CrucibleConfig } from '../config';
import { bestModelSettings } from '../config/best-model';
import { preferenceOptions } from '../train/preference';
import type { OptimizerChoice } from '../train/optimizers';
import type { TrainOptions } from '../train/trainer';

/** Fields of the config this mapping reads (the app builds them from its form). */
export type TrainConfig = Pick<CrucibleConfig,
  | 'finetuning_type' | 'oft_rank' | 'oft_block_size' | 'oft_target' | 'module_dropout' | 'lora_rank' | 'lora_alpha' | 'lora_dropout' | 'lora_target' | 'use_rslora' | 'use_dora' | 'pissa_init' | 'pissa_iter' | 'pissa_convert'
  | 'loraplus_lr_ratio' | 'freeze_trainable_layers' | 'freeze_trainable_modules' | 'learning_rate' | 'lr_scheduler_type'
  | 'warmup_ratio' | 'warmup_steps' | 'num_train_epochs' | 'max_steps' | 'per_device_train_batch_size'
  | 'gradient_accumulation_steps' | 'max_grad_norm' | 'weight_decay' | 'adam_beta1' | 'adam_beta2' | 'adam_epsilon'
  | 'neftune_noise_alpha' | 'seed' | 'logging_steps' | 'save_steps' | 'save_strategy' | 'eval_strategy' | 'eval_steps'
  | 'cutoff_len' | 'disable_gradient_checkpointing' | 'memory_budget'
  | 'use_muon' | 'use_adam_mini' | 'use_llama_pro'
  | 'use_galore' | 'galore_layerwise' | 'use_apollo' | 'apollo_layerwise' | 'galore_target' | 'galore_rank' | 'galore_update_interval' | 'galore_scale' | 'galore_proj_type'
  | 'apollo_target' | 'apollo_rank' | 'apollo_update_interval' | 'apollo_scale' | 'apollo_proj' | 'apollo_proj_type' | 'apollo_scale_type' | 'apollo_scale_front'
  | 'use_badam' | 'badam_mode' | 'badam_start_block' | 'badam_switch_mode' | 'badam_switch_interval' | 'badam_update_ratio' | 'badam_mask_mode' | 'use_dft_loss' | 'use_eaft_loss' | 'eaft_alpha' | 'use_asft_loss' | 'asft_alpha' | 'label_smoothing_factor'
  | 'stage' | 'pref_beta' | 'pref_ftx' | 'pref_loss' | 'dpo_label_smoothing' | 'simpo_gamma' | 'kto_chosen_weight' | 'kto_rejected_weight'>
  & Partial<Pick<CrucibleConfig, 'ppo_buffer_size' | 'eval_on_start' | 'eval_delay'
    | 'load_best_model_at_end' | 'metric_for_best_model' | 'greater_is_better' | 'early_stopping_steps'>>;

export function trainOptionsFromConfig(c: TrainConfig): TrainOptions {
  const pissa = c.finetuning_type === 'lora' && c.pissa_init ? { iter: c.pissa_iter, convert: c.pissa_convert } : null;
  // LLaMA-Factory (hparams/finetuning_args.py): "Cannot use PiSSA for current training stage." for kto and reference-using dpo
  if (pissa && (c.stage === 'kto' || c.stage === 'ppo' || (c.stage === 'dpo' && c.pref_loss !== 'orpo' && c.pref_loss !== 'simpo'))) {
    throw new Error(`pissa_init cannot be used with stage ${c.stage}${c.stage === 'dpo' ? ` (pref_loss ${c.pref_loss})` : ''}: `
      + 'LLaMA-Factory refuses PiSSA for stages with a reference model; use pref_loss orpo or simpo, or drop pissa_init');
  }
  const modules = c.freeze_trainable_modules ?? ['all'];
  if (c.finetuning_type === 'freeze' && !(modules.length === 1 && modules[0] === 'all')) {
    throw new Error(`freeze_trainable_modules: only "all" is supported (got ${modules.join(',')})`);
  }
  const evalSteps = c.eval_strategy === 'steps' ? Number(c.eval_steps ?? c.logging_steps) : 0;
  return {
    finetuningType: c.finetuning_type,
    lora: {
      rank: c.lora_rank,
      alpha: c.lora_alpha,
      targets: c.lora_target,
      dropout: c.lora_dropout,
      rslora: c.use_rslora,
      dora: c.use_dora,
      plusRatio: c.loraplus_lr_ratio ?? 1,
      pissa,
    },
    // LLaMA-Factory leaves OFTConfig's Cayley-Neumann default (5 terms) as it is
    oft: { rank: c.oft_rank, blockSize: c.oft_block_size, targets: c.oft_target, moduleDropout: c.module_dropout, neumannTerms: 5 },
    freezeTrainableLayers: c.freeze_trainable_layers,
    llamaPro: c.use_llama_pro,
    learningRate: c.learning_rate,
    scheduler: c.lr_scheduler_type,
    warmupSteps: c.warmup_steps,
    warmupRatio: c.warmup_ratio,
    epochs: c.num_train_epochs,
    maxSteps: c.max_steps,
    batchSize: c.per_device_train_batch_size,
    gradAccum: draws(c),
    // layerwise GaLore / APOLLO step each weight inside the backward pass (a gradient hook): HF's
    // clipping afterwards finds no gradient left, so nothing is clipped
    maxGradNorm: (c.use_galore && c.galore_layerwise) || (c.use_apollo && c.apollo_layerwise) ? 0 : c.max_grad_norm,
    weightDecay: c.weight_decay,
    beta1: c.adam_beta1,
    beta2: c.adam_beta2,
    eps: c.adam_epsilon,
    neftuneAlpha: c.neftune_noise_alpha ?? 0,
    seed: c.seed,
    loggingSteps: c.logging_steps,
    saveSteps: c.save_strategy === 'no' ? 0 : Number(c.save_steps),
    evalSteps,
    evalOnStart: c.eval_on_start ?? false,
    bestModel: bestModelSettings({
      load_best_model_at_end: c.load_best_model_at_end ?? false, metric_for_best_model: c.metric_for_best_model ?? null,
      greater_is_better: c.greater_is_better ?? null, early_stopping_steps: c.early_stopping_steps ?? null,
    }),
    cutoffLen: c.cutoff_len,
    recompute: c.disable_gradient_checkpointing === null ? 'auto' : !c.disable_gradient_checkpointing,
    memoryBudget: c.memory_budget,
    preference: preferenceOptions(c),
    optimizer: optimizerChoice(c),
    tokenLoss: c.use_dft_loss ? { kind: 'dft' } : c.use_eaft_loss ? { kind: 'eaft', alpha: c.eaft_alpha } : c.use_asft_loss ? { kind: 'asft', alpha: c.asft_alpha }
      : c.label_smoothing_factor > 0 ? { kind: 'label_smoothing', epsilon: c.label_smoothing_factor } : { kind: 'ce' },
  };
}

function optimizerChoice(c: TrainConfig): OptimizerChoice {
  if (c.use_galore) {
    if (c.galore_proj_type === 'full') throw new Error('galore_proj_type: full (projecting both sides) is not supported; use std, reverse_std, left or right');
    return { kind: 'galore', galore: { targets: c.galore_target, rank: c.galore_rank, updateInterval: c.galore_update_interval, scale: c.galore_scale, projType: c.galore_proj_type } };
  }
  if (c.use_apollo) {
    return { kind: 'apollo', apollo: {
      targets: c.apollo_target, rank: c.apollo_rank, updateInterval: c.apollo_update_interval, scale: c.apollo_scale, proj: c.apollo_proj,
      projType: c.apollo_proj_type, scaleType: c.apollo_scale_type, scaleFront: c.apollo_scale_front,
    } };
  }
  if (c.use_badam) {
    return { kind: 'badam', badam: {
      mode: c.badam_mode, startBlock: c.badam_start_block, switchMode: c.badam_switch_mode, switchInterval: c.badam_switch_interval,
      updateRatio: c.badam_update_ratio, maskMode: c.badam_mask_mode, seed: c.seed,
    } };
  }
  return { kind: c.use_muon ? 'muon' : c.use_adam_mini ? 'adam_mini' : 'adamw' };
}

/**
 * Micro-batches of examples one step draws: gradient_accumulation_steps, and for stage ppo times
 * ppo_buffer_size (a PPO step samples that many backward batches of rollouts; the PPO objective
 * makes the updates inside it).
 */
function draws(c: Pick<CrucibleConfig, 'gradient_accumulation_steps'> & Partial<Pick<CrucibleConfig, 'stage' | 'ppo_buffer_size'>>): number {
  return c.gradient_accumulation_steps * (c.stage === 'ppo' ? c.ppo_buffer_size ?? 1 : 1);
}

/** Steps of a run, as Trainer computes them (stage ppo: PPO steps, as LLaMA-Factory counts them). */
export function totalSteps(c: Pick<CrucibleConfig, 'per_device_train_batch_size' | 'gradient_accumulation_steps' | 'max_steps' | 'num_train_epochs'> & Partial<Pick<CrucibleConfig, 'stage' | 'ppo_buffer_size'>>, trainExamples: number): number {
  const micro = Math.ceil(trainExamples / c.per_device_train_batch_size);
  const perEpoch = Math.max(1, Math.ceil(micro / draws(c)));
  return c.max_steps > 0 ? c.max_steps : Math.ceil(c.num_train_epochs * perEpoch);
}

const steps = (v: number, total: number) => (v > 0 && v < 1 ? Math.max(1, Math.ceil(v * total)) : Math.round(v));

/** The options of a run on `trainExamples` sequences (pt, sft), pairs (dpo, rm) or KTO examples. */
export function runOptions(c: TrainConfig, trainExamples: number): TrainOptions {
  const o = trainOptionsFromConfig(c);
  const total = totalSteps(c, trainExamples);
  const perEpoch = Math.max(1, Math.ceil(total / Math.max(1, c.num_train_epochs)));
  return {
    ...o,
    loggingSteps: Math.max(1, steps(c.logging_steps, total)),
    saveSteps: c.save_strategy === 'no' ? 0 : c.save_strategy === 'epoch' ? perEpoch : steps(Number(c.save_steps), total),
    evalSteps: c.eval_strategy === 'no' ? 0 : c.eval_strategy === 'epoch' ? perEpoch : steps(Number(c.eval_steps ?? c.logging_steps), total),
    // HF compares eval_delay with the step (eval_strategy steps) or the epoch (epoch)
    evalDelay: (c.eval_delay ?? 0) * (c.eval_strategy === 'epoch' ? perEpoch : 1),
    warmupSteps: steps(c.warmup_steps, total),
  };
}
