// Training as a job, whatever the host: the config's dataset built with the host's file access,
// its options, a continued adapter and a reference model where the config names them, then the
// trainer's steps with checkpoints in the host's run store. The Node job (train-node.ts: an
// output_dir as LLaMA-Factory leaves it) and the app's Worker (a run in IndexedDB) both run this.

import type { CrucibleConfig } from '../config';
import { buildDataset, type DataDeps } from '../data';
import type { ModelFiles } from '../model/weights';
import { usesReference, type PreferenceExample } from '../train/preference';
import type { PpoRun } from '../train/ppo/objective';
import { ppoOptions } from '../train/ppo/options';
import type { RewardSource } from '../train/ppo/reward-model';
import { ReferenceTable, referenceRows, scoreReference } from '../train/reference';
import { VALUE_HEAD_FILE } from '../train/value-head';
import type { RunStore, Trainer, TrainExample } from '../train/trainer';
import type { TrainRunHooks } from './jobs';
import { runOptions, totalSteps } from './options';
import { Session } from './session';

/** Where a dataset's files come from (a folder, uploads, a URL, the Hub): the data layer's access without the tokenizer. */
export type DataFiles = Omit<DataDeps, 'tokenizer'>;

export interface TrainStart {
  totalSteps: number;
  examples: number;
  evalExamples: number;
}

export interface TrainJob {
  /** The model the run trains: the host opens it, or hands over one it holds. */
  session: Session;
  data: DataFiles;
  /** The run's checkpoints. */
  store: RunStore;
  /** A checkpoint folder of `store` to continue from; null starts afresh. */
  resumeFrom: string | null;
  /** Model and adapter folders the config names beside the trained model (adapter_name_or_path, ref_model). */
  openModel: (nameOrPath: string) => Promise<ModelFiles>;
  hooks: TrainRunHooks & {
    /** The data is built and the options known: the last moment before the first step. */
    onStart?: (start: TrainStart) => Promise<void> | void;
    /** After the last step, before the trainer's buffers are freed (save what it produced here). */
    onDone?: (trainer: Trainer) => Promise<void>;
  };
}

/** `shuffle`: the data layer's switch for the order of training examples (on by default). */
export async function trainModel(config: CrucibleConfig & { shuffle?: boolean }, job: TrainJob): Promise<Trainer> {
  const { session, hooks } = job;
  const status = hooks.onStatus ?? (() => {});
  // freeze / full fine-tuning train the base: an adapter the session holds would ride along
  if (config.finetuning_type !== 'lora' && session.adapter) {
    session.adapter.release();
    session.adapter = null;
  }
  const data = await buildDataset(config, { tokenizer: session.tokenizer, imageProcessor: session.imageConfig, ...job.data });
  const train = data.train as TrainExample[];
  const evalSet = data.eval as TrainExample[];
  status(`data: ${train.length} training examples${evalSet.length ? `, ${evalSet.length} for evaluation` : ''}`);

  const opts = runOptions(config, train.length);
  const adapters = config.adapter_name_or_path ?? [];
  if (adapters.length > 1) throw new Error(`adapter_name_or_path: continuing from ${adapters.length} adapters at once is not supported; give one`);
  if (adapters.length === 1 && config.finetuning_type === 'lora') {
    const dir = await job.openModel(adapters[0]!);
    opts.initialAdapter = { configJson: await dir.readText('adapter_config.json'), weights: await dir.open('adapter_model.safetensors') };
  }
  if (config.ref_model && opts.preference && usesReference(opts.preference)) {
    // resuming: the checkpoint's table fills it (Trainer.resume)
    opts.referenceTable = job.resumeFrom ? new ReferenceTable() : await referenceModelTable(config, job, [...train, ...evalSet] as PreferenceExample[], status);
  } else if (config.ref_model) status(`ref_model is not used: stage ${config.stage}${config.stage === 'dpo' ? ` with pref_loss ${config.pref_loss}` : ''} needs no reference model`);

  let rewardSession: Session | null = null;
  if (config.stage === 'ppo') {
    if (config.neftune_noise_alpha) throw new Error('neftune_noise_alpha is not supported with stage ppo (Crucible adds no noise to the rollouts and PPO passes); remove it');
    if (evalSet.length > 0) throw new Error("stage ppo does not evaluate (LLaMA-Factory's PPO trainer has no evaluation): remove eval_dataset / val_size");
    const reward = await ppoReward(config, job, status);
    rewardSession = reward.session;
    opts.ppo = { options: ppoOptions(config, data.template.stopIds), reward: reward.source, seed: config.seed } satisfies PpoRun;
  }

  const total = totalSteps(config, train.length);
  await hooks.onStart?.({ totalSteps: total, examples: train.length, evalExamples: evalSet.length });
  if (job.resumeFrom) status(`resuming from ${job.resumeFrom}`);
  try {
    return await session.train(opts, train, evalSet, job.store, {
      ...(hooks.signal ? { signal: hooks.signal } : {}),
      onStatus: status,
      ...(job.resumeFrom ? { resumeFrom: job.resumeFrom } : {}),
      ...(hooks.onLog ? { onLog: hooks.onLog } : {}),
      ...(hooks.onCheckpoint ? { onCheckpoint: hooks.onCheckpoint } : {}),
      ...(hooks.onDone ? { onDone: hooks.onDone } : {}),
    });
  } finally {
    rewardSession?.release();
  }
}

/**
 * Stage ppo's reward model (LLaMA-Factory's reward_model, reward_model_type): a LoRA adapter with
 * its value head on the trained base (lora), or a separate model with its value head (full), which
 * the returned session holds until the run ends.
 */
async function ppoReward(config: CrucibleConfig, job: TrainJob, status: (m: string) => void): Promise<{ source: RewardSource; session: Session | null }> {
  if (config.finetuning_type !== 'lora' && config.finetuning_type !== 'full' && config.finetuning_type !== 'freeze') {
    throw new Error(`stage ppo: finetuning_type ${config.finetuning_type} is not supported; PPO trains a LoRA adapter, or full / freeze weights`);
  }
  // LLaMA-Factory: "Freeze/Full PPO training needs `reward_model_type=full`."
  if (config.finetuning_type !== 'lora' && config.reward_model_type === 'lora') {
    throw new Error(`stage ppo with finetuning_type ${config.finetuning_type} needs reward_model_type: full (a LoRA reward model would sit on the weights being trained)`);
  }
  if (!config.reward_model) throw new Error('stage ppo needs reward_model: the output folder of a `crucible train` stage rm run');
  if (config.reward_model_type === 'api') throw new Error('reward_model_type: api (a reward served over HTTP) is not supported; use lora (an rm run\'s adapter) or full (an rm run\'s full model)');
  const name = config.reward_model;
  const files = await job.openModel(name);
  if (!(await files.exists(VALUE_HEAD_FILE))) throw new Error(`reward_model ${name}: no ${VALUE_HEAD_FILE}; a reward model is the output of a \`crucible train\` run with stage: rm`);
  const valueHead = await files.open(VALUE_HEAD_FILE);
  if (config.reward_model_type === 'lora') {
    if (!(await files.exists('adapter_config.json'))) throw new Error(`reward_model ${name}: no adapter_config.json; with reward_model_type: lora it must be an rm run's LoRA output (reward_model_type: full for a full model)`);
    return { source: { type: 'lora', configJson: await files.readText('adapter_config.json'), weights: await files.open('adapter_model.safetensors'), valueHead }, session: null };
  }
  status(`loading the reward model ${name}`);
  const policy = job.session;
  const session = await Session.open(policy.gpu, files, { quantizationBit: null, f16: policy.model.format === 'f16' });
  return { source: { type: 'full', model: session.model, valueHead }, session };
}

/**
 * LLaMA-Factory's ref_model (with ref_model_adapters, ref_model_quantization_bit): loaded beside
 * the policy, used to score every training and evaluation sequence once, and unloaded before the
 * first step, so training holds one model.
 */
async function referenceModelTable(config: CrucibleConfig, job: TrainJob, examples: readonly PreferenceExample[], status: (m: string) => void): Promise<ReferenceTable> {
  const policy = job.session;
  const name = config.ref_model!;
  const files = await job.openModel(name);
  status(`loading the reference model ${name}${config.ref_model_quantization_bit ? ` (${config.ref_model_quantization_bit}-bit)` : ''}`);
  // a frozen reference shares the policy's f16 tier (bf16 / fp16)
  const ref = await Session.open(policy.gpu, files, { quantizationBit: (config.ref_model_quantization_bit as 4 | 8 | null) ?? null, f16: policy.model.format === 'f16' });
  try {
    if (ref.model.spec.vocab !== policy.model.spec.vocab) {
      throw new Error(`ref_model ${name}: a vocabulary of ${ref.model.spec.vocab} tokens, the trained model has ${policy.model.spec.vocab}; the reference must share its tokenizer`);
    }
    const adapters = config.ref_model_adapters ?? [];
    if (adapters.length > 1) throw new Error(`ref_model_adapters: ${adapters.length} adapters; give one (merge the others into ref_model first)`);
    if (adapters.length === 1) {
      const dir = await job.openModel(adapters[0]!);
      await ref.loadAdapter(await dir.readText('adapter_config.json'), await dir.open('adapter_model.safetensors'));
    }
    const rows = referenceRows(examples);
    status(`reference model: scoring ${rows.length} sequences`);
    const table = new ReferenceTable();
    const padId = policy.tokenizer.padId ?? policy.tokenizer.eosId ?? 0;
    await scoreReference(ref.model, rows, table, { padId, cutoffLen: config.cutoff_len, batchSize: config.per_device_train_batch_size });
    return table;
  } finally {
    ref.release();
  }
}
