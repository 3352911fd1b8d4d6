// The training loop: micro-batches with gradient accumulation (loss normalised by the learned
// tokens of the whole optimizer step, as HF transformers does), AdamW with a schedule, logging
// without per-step readbacks, evaluation, checkpoints that resume on the same loss curve.
// What each step optimises (pt / sft, dpo, kto, rm) is the run's Objective (objective.ts): it does
// the forward and backward of each step and supplies the log's metrics.

import type { Tensor } from '../gpu/tensor';
import { tuneRecordedGemms } from '../kernels/gemm-tuner';
import { mulberry32 } from '../data/random';
import { Adapter, type LoraSettings, type PeftAdapter, type TrainableTensor } from '../model/adapter';
import { loadAdapter } from '../model/adapters';
import { OftAdapter, type OftSettings } from '../model/oft-adapter';
import { Workspace, type LoraDropoutStep } from '../model/forward';
import type { Model } from '../model/model';
import { encodeSafetensors, openSafetensors, readF32, type ByteSource } from '../model/safetensors';
import { makeTrainable } from '../model/trainable';
import { checkCheckpointTensors } from '../model/checkpoint-tensors';
import { parseJsonFile } from '../data/json-file';
import { Pissa, PISSA_INIT_DIR, type PissaOptions } from '../model/pissa';
import { epochOrder, type TrainBatch } from './batches';
import type { Objective, TrainExample, Unlogged } from './objective';
import { checkTrainingData, createObjective } from './objectives';
import { llamaProLayers } from '../model/llama-pro';
import { createOptimizer, type Optimizer, type OptimizerChoice } from './optimizers';
import type { TokenLoss } from '../kernels/loss';
import type { PreferenceLogFields } from './preference/metrics';
import type { PpoRun } from './ppo/objective';
import type { PreferenceOptions } from './preference/options';
import type { ReferenceTable } from './reference';
import { chooseRecompute, memoryBudget, type RecomputeChoice, type RecomputeSetting } from './recompute';
import { lrMultiplier, warmupSteps, type SchedulerType } from './schedule';
import { loraSitesByMixer } from '../model/activations';
import { inDir, storedSource, type RunStore } from './store';

export type { RunStore } from './store';
export type { TrainExample } from './objective';

/** Optimizer steps the host may have submitted before the GPU finishes the oldest of them. */
const STEPS_IN_FLIGHT = 2;

export interface TrainOptions {
  finetuningType: 'lora' | 'oft' | 'freeze' | 'full';
  lora?: LoraSettings & { plusRatio?: number; pissa?: PissaOptions | null };
  oft?: OftSettings;
  /** An adapter to continue from (adapter_name_or_path), instead of a fresh one. */
  initialAdapter?: { configJson: string; weights: ByteSource };
  /** freeze: train the last n layers (negative: the first n), as LLaMA-Factory's freeze_trainable_layers. */
  freezeTrainableLayers?: number;
  /** use_llama_pro: freeze trains the n layers block expansion inserted (every L/n-th), not the last n. */
  llamaPro?: boolean;
  learningRate: number;
  scheduler: SchedulerType;
  warmupSteps: number;
  warmupRatio: number;
  epochs: number;
  maxSteps: number;
  batchSize: number;
  gradAccum: number;
  maxGradNorm: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  neftuneAlpha: number;
  seed: number;
  loggingSteps: number;
  saveSteps: number;
  evalSteps: number;
  cutoffLen: number;
  /** Keep only layer inputs and recompute activations in backward: always, never, or when memory needs it (recompute.ts). */
  recompute: RecomputeSetting;
  /** GPU memory (GiB) the run may use, for the 'auto' recomputation choice; null: the device's reported memory or the default. */
  memoryBudget?: number | null;
  /** AdamW unless use_muon / use_adam_mini / use_galore / use_apollo / use_badam. */
  optimizer?: OptimizerChoice;
  /** pt / sft token loss: cross-entropy unless use_dft_loss, use_eaft_loss or label_smoothing_factor. */
  tokenLoss?: TokenLoss;
  /** Stages rm, dpo, kto (preferenceOptions(config)); absent or null: pt / sft. */
  preference?: PreferenceOptions | null;
  /** Stage ppo: its options and reward model (with preference absent). */
  ppo?: PpoRun | null;
  /** Reference log-probabilities scored beforehand on a separate model (ref_model); otherwise LoRA switches its adapter off, and full / freeze score the initial weights before the first step. */
  referenceTable?: ReferenceTable;
}

/** One trainer_log.jsonl record; preference stages add TRL's metric names (rewards/chosen, ...). */
export interface LogRecord extends PreferenceLogFields {
  current_steps: number;
  total_steps: number;
  loss?: number;
  eval_loss?: number;
  /** Stage ppo: the reward model's mean score of the rollouts (LLaMA-Factory's `reward`); TRL's ppo/... and objective/... keys ride along. */
  reward?: number;
  lr: number;
  epoch: number;
  percentage: number;
  grad_norm?: number;
  tokens_per_second: number;
  elapsed_time: number;
  remaining_time: number;
}

export interface TrainHooks {
  onLog?: (rec: LogRecord) => void;
  onCheckpoint?: (dir: string, step: number) => void;
  /** Progress of work outside the steps (scoring the reference model). */
  onStatus?: (message: string) => void;
  /** Aborting stops after the current optimizer step, with a checkpoint. */
  signal?: AbortSignal;
}

interface TrainerState {
  global_step: number;
  epoch: number;
  /** Micro-batches of the current epoch already consumed. */
  batch_in_epoch: number;
  total_steps: number;
  log_history: LogRecord[];
}

/**
 * The steps trained since the last log record, kept in a checkpoint taken off the logging
 * schedule (an interrupt), so the resumed run's next record covers the same steps as an
 * uninterrupted run's.
 */
interface LogInterval extends Unlogged {
  steps: number;
}

export class Trainer {
  readonly params: TrainableTensor[];
  readonly optimizer: Optimizer;
  readonly totalSteps: number;
  readonly microPerEpoch: number;
  readonly objective: Objective;
  state: TrainerState;
  private readonly workspaces = new Map<string, Workspace>();
  /** Made with the first workspace, for every micro-batch shape of the run. */
  private recomputeChoice: RecomputeChoice | null = null;
  private status: ((message: string) => void) | undefined;
  private stepsSinceLog = 0;
  /** Real (unpadded) tokens of the steps since the last log, the compile step left out. */
  private tokensSinceLog = 0;
  private timeSinceLog = 0;
  /** Start of the current logging interval (evaluation and checkpoints are not counted). */
  private intervalStart = 0;
  private readonly started = performance.now();
  /** The step this process started from (a resumed run's checkpoint): the pace is measured from there. */
  private firstStep = 0;
  /** The current step's learning rate (for updates inside a step: applyUpdate). */
  private stepLr = 0;

  private constructor(
    readonly model: Model,
    readonly adapter: PeftAdapter | null,
    readonly train: readonly TrainExample[],
    readonly evalSet: readonly TrainExample[],
    readonly opts: TrainOptions,
    readonly padId: number,
  ) {
    const gpu = model.gpu;
    this.objective = createObjective({
      model, adapter, padId, cutoffLen: opts.cutoffLen, random: seeded(opts.seed + 1), reference: opts.referenceTable ?? null,
      workspace: (B, S, packed = false) => this.workspace(B, S, packed),
      loraDropout: (micro) => this.loraDropout(micro),
      ...(opts.neftuneAlpha > 0 ? { embedNoise: (batch: TrainBatch, n: number) => this.neftuneNoise(batch, n) } : {}),
      ...(opts.tokenLoss ? { tokenLoss: opts.tokenLoss } : {}),
      applyUpdate: () => this.applyUpdate(),
    }, opts.preference, opts.ppo);
    this.params = adapter ? adapter.params(opts.lora?.plusRatio ?? 1) : trainableBase(model, opts);
    this.params = [...this.params, ...this.objective.params];
    if (this.params.length === 0) throw new Error('nothing to train: the chosen method selects no parameters');
    this.optimizer = createOptimizer(gpu, this.params, {
      lr: opts.learningRate, beta1: opts.beta1, beta2: opts.beta2, eps: opts.eps, weightDecay: opts.weightDecay, maxGradNorm: opts.maxGradNorm,
    }, opts.optimizer ?? { kind: 'adamw' }, { hidden: model.spec.hidden, heads: model.spec.heads }, opts.seed);
    this.microPerEpoch = Math.ceil(train.length / opts.batchSize);
    const stepsPerEpoch = Math.max(1, Math.ceil(this.microPerEpoch / opts.gradAccum));
    this.totalSteps = opts.maxSteps > 0 ? opts.maxSteps : Math.ceil(opts.epochs * stepsPerEpoch);
    this.state = { global_step: 0, epoch: 0, batch_in_epoch: 0, total_steps: this.totalSteps, log_history: [] };
  }

  static async create(model: Model, train: readonly TrainExample[], evalSet: readonly TrainExample[], opts: TrainOptions, padId: number): Promise<Trainer> {
    if (train.length === 0) throw new Error('the training set is empty');
    checkTrainingData(opts.preference, train, 'training data', opts.ppo);
    checkTrainingData(opts.preference, evalSet, 'evaluation data', opts.ppo);
    let adapter: PeftAdapter | null = null;
    if (opts.finetuningType === 'oft') {
      if (!opts.oft) throw new Error('finetuning_type oft needs OFT settings');
      adapter = OftAdapter.create(model, opts.oft);
    } else if (opts.finetuningType === 'lora') {
      if (opts.initialAdapter && opts.lora?.pissa) throw new Error('pissa_init starts a new adapter; it cannot continue from adapter_name_or_path');
      if (opts.initialAdapter) adapter = await loadAdapter(model, opts.initialAdapter.configJson, opts.initialAdapter.weights);
      else {
        if (!opts.lora) throw new Error('finetuning_type lora needs LoRA settings');
        adapter = await createAdapter(model, opts.lora, opts.seed);
      }
    }
    return new Trainer(model, adapter, train, evalSet, opts, padId);
  }

  /**
   * Runs until total steps or an abort. An abort, whenever it arrives (during a step, a log, an
   * evaluation or a save), ends the run with a complete checkpoint of the last finished step.
   */
  async run(store: RunStore | null, hooks: TrainHooks = {}): Promise<TrainerState> {
    const gpu = this.model.gpu;
    const o = this.opts;
    const schedule = { type: o.scheduler, warmupSteps: warmupSteps(this.totalSteps, o.warmupSteps, o.warmupRatio), totalSteps: this.totalSteps };
    this.firstStep = this.state.global_step;
    this.status = hooks.onStatus;
    await this.objective.prepare([...this.train, ...this.evalSet], o.batchSize, hooks.onStatus);
    this.intervalStart = performance.now();
    const every = (n: number, step: number) => n > 0 && step % n === 0;
    while (this.state.global_step < this.totalSteps && !hooks.signal?.aborted) {
      const rows = this.nextMicroRows();
      this.optimizer.zeroGrad();
      const lr = o.learningRate * lrMultiplier(schedule, this.state.global_step);
      this.stepLr = lr;
      this.tokensSinceLog += await this.objective.step(rows);
      await this.optimizer.prepare?.();
      const sumSq = this.optimizer.update(lr);
      this.state.global_step++;
      this.stepsSinceLog++;
      // bounded run-ahead: the host encodes at most two steps ahead of the GPU, and the event loop
      // gets a turn every step (a Ctrl-C or Pause is seen within a step, not at the next log)
      await gpu.pace(STEPS_IN_FLIGHT);
      const step = this.state.global_step;
      const final = step === this.totalSteps;
      if (step === this.firstStep + 1 && !final) {
        // this process's first step compiles the GPU pipelines: its tokens and time are not the pace;
        // where GEMM tuning is on, its products are the shapes timed now
        await gpu.sync();
        await tuneRecordedGemms(gpu);
        this.tokensSinceLog = 0;
        this.intervalStart = performance.now();
      }
      if (every(Math.max(1, o.loggingSteps), step) || final) await this.log(lr, sumSq, hooks);
      const pausedAt = performance.now();
      if (this.evalSet.length > 0 && (every(o.evalSteps, step) || (o.evalSteps > 0 && final))) await this.evaluate(lr, hooks);
      // decided after the awaits above: an abort that arrived during them still saves this step
      if (store && (every(o.saveSteps, step) || final || hooks.signal?.aborted)) {
        const dir = `checkpoint-${step}`;
        await this.saveCheckpoint(store, dir);
        hooks.onCheckpoint?.(dir, step);
      }
      this.intervalStart += performance.now() - pausedAt; // evaluation and saving are not training time
    }
    await gpu.sync();
    return this.state;
  }

  /** Loss and the objective's metrics over the evaluation set; returns the loss. */
  async evaluate(lr: number, hooks: TrainHooks): Promise<number> {
    const metrics = await this.objective.evaluate(this.evalSet, this.opts.batchSize);
    const rec = this.record(lr, roundAll(metrics));
    this.state.log_history.push(rec);
    hooks.onLog?.(rec);
    return metrics.eval_loss!;
  }

  async saveCheckpoint(store: RunStore, dir: string): Promise<void> {
    const gpu = this.model.gpu;
    await this.saveModel(store, dir);
    const opt: Record<string, { dtype: 'F32'; shape: readonly number[]; data: Float32Array }> = {};
    for (const { name, tensor } of this.optimizer.stateTensors()) opt[name] = { dtype: 'F32', shape: tensor.shape, data: await gpu.readF32(tensor) };
    await store.write(`${dir}/optimizer.safetensors`, encodeSafetensors(opt, { step: String(this.optimizer.step) }));
    await this.objective.saveState(store, dir);
    const interval = this.stepsSinceLog > 0 ? { log_interval: await this.logInterval() } : {};
    // written last: a checkpoint without trainer_state.json is incomplete and is not resumed from
    await store.write(`${dir}/trainer_state.json`, JSON.stringify({ ...this.state, ...interval, seed: this.opts.seed }, null, 1));
  }

  /**
   * The trained model into `dir` (a checkpoint, or the output folder at the end): the adapter
   * (adapter_config.json + adapter_model.safetensors) or trained_weights.safetensors, and what
   * the objective adds beside it (rm: value_head.safetensors).
   */
  async saveModel(store: RunStore, dir: string): Promise<void> {
    const gpu = this.model.gpu;
    const at = (f: string) => inDir(dir, f);
    if (this.adapter) {
      await store.write(at('adapter_model.safetensors'), await this.adapter.safetensors());
      await store.write(at('adapter_config.json'), this.adapter.configJson(null));
      // resume rebuilds W_res from the initial adapter (kept as LLaMA-Factory keeps it, output_dir/pissa_init)
      const initial = this.adapter.pissa?.initialFiles(this.adapter.peftConfig(null));
      for (const [f, data] of Object.entries(initial ?? {})) await store.write(at(`${PISSA_INIT_DIR}/${f}`), data);
    } else {
      const own = new Set(this.objective.params);
      const tensors: Record<string, { dtype: 'F32'; shape: readonly number[]; data: Float32Array }> = {};
      for (const p of this.params) if (!own.has(p)) tensors[p.name] = { dtype: 'F32', shape: p.value.shape, data: await gpu.readF32(p.value) };
      await store.write(at('trained_weights.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
    }
    await this.objective.save(store, dir);
  }

  /** Restore weights, optimizer moments, step and data position from a checkpoint folder. */
  async resume(store: RunStore, dir: string): Promise<void> {
    const gpu = this.model.gpu;
    if (!(await store.exists(`${dir}/trainer_state.json`))) throw new Error(`${dir}: no trainer_state.json (not a checkpoint, or an incomplete one)`);
    const { log_interval: interval, ...state } = parseJsonFile<TrainerState & { seed: number; log_interval?: LogInterval }>(new TextDecoder().decode(await store.read(`${dir}/trainer_state.json`)), `${dir}/trainer_state.json`);
    if (state.seed !== this.opts.seed) throw new Error(`${dir}: checkpoint was trained with seed ${state.seed}, this run uses ${this.opts.seed}; the data order would differ`);
    const weights = await openSafetensors(await storedSource(store, `${dir}/${this.adapter ? 'adapter_model' : 'trained_weights'}.safetensors`));
    const opt = await openSafetensors(await storedSource(store, `${dir}/optimizer.safetensors`));
    const own = new Set(this.objective.params);
    const pissa = this.adapter?.pissa;
    // before anything is written to the GPU: a changed lora_rank / lora_target / model is named
    checkCheckpointTensors(weights, this.params.filter((p) => !own.has(p)).map((p) => ({ name: p.name, shape: pissa ? pissa.publishedShape(p.name, p.value.shape) : p.value.shape })));
    // the step first: BAdam's trained block and state, and GaLore's projection schedule, follow it
    this.optimizer.step = Number(opt.metadata.step ?? state.global_step);
    const moments = this.optimizer.stateTensors();
    checkCheckpointTensors(opt, moments.map(({ name, tensor }) => ({ name, shape: tensor.shape })));
    await this.objective.load(store, dir);
    if (pissa) await pissa.restoreInitial(await openSafetensors(await storedSource(store, `${dir}/${PISSA_INIT_DIR}/adapter_model.safetensors`)));
    for (const p of this.params) {
      if (!own.has(p)) gpu.write(p.value, pissa ? await pissa.readTrained(weights, p.name) : await readF32(weights, p.name));
    }
    for (const { name, tensor } of moments) gpu.write(tensor, await readF32(opt, name));
    const { seed: _, ...trainerState } = state;
    this.state = { ...trainerState, total_steps: this.totalSteps };
    this.stepsSinceLog = interval?.steps ?? 0;
    this.objective.restoreUnlogged(interval);
  }

  private async logInterval(): Promise<LogInterval> {
    return { steps: this.stepsSinceLog, ...(await this.objective.unlogged()) };
  }

  release(): void {
    for (const ws of this.workspaces.values()) ws.release();
    this.objective.release();
    this.optimizer.release();
  }

  /** An update inside the step (ObjectiveContext.applyUpdate). */
  private async applyUpdate(): Promise<void> {
    await this.optimizer.prepare?.();
    this.optimizer.update(this.stepLr);
    this.optimizer.zeroGrad();
  }

  /** The examples of the next optimizer step's micro-batches. */
  private nextMicroRows(): TrainExample[][] {
    const out: TrainExample[][] = [];
    const o = this.opts;
    for (let i = 0; i < o.gradAccum; i++) {
      if (this.state.batch_in_epoch >= this.microPerEpoch) {
        if (out.length > 0) break; // an epoch's last, shorter accumulation (as HF)
        this.state.epoch++;
        this.state.batch_in_epoch = 0;
      }
      const order = epochOrder(this.train.length, o.seed, Math.floor(this.state.epoch));
      const start = this.state.batch_in_epoch * o.batchSize;
      out.push(order.slice(start, start + o.batchSize).map((j) => this.train[j]!));
      this.state.batch_in_epoch++;
    }
    return out;
  }

  /**
   * lora_dropout of the step's `micro`-th micro-batch: the adapter's setting (from adapter_config.json
   * when continuing an adapter, as PEFT), its masks a function of (seed, step, micro-batch), so a
   * resumed run draws the same ones.
   */
  private loraDropout(micro: number): LoraDropoutStep | undefined {
    const p = this.adapter?.dropout ?? 0;
    return p > 0 ? { p, seed: this.opts.seed >>> 0, step: this.state.global_step, micro } : undefined;
  }

  private workspace(B: number, S: number, packed: boolean): Workspace {
    const key = `${B}x${S}${packed ? 'p' : ''}`;
    let ws = this.workspaces.get(key);
    if (!ws) {
      ws = new Workspace(this.model, B, S, this.recompute(B, packed).recompute, packed);
      this.workspaces.set(key, ws);
    }
    return ws;
  }

  /** Decided once, for the first workspace's rows at the longest sequence (cutoff_len); logged when decided from memory (not the user's). */
  recompute(B: number, packed: boolean): RecomputeChoice {
    if (this.recomputeChoice) return this.recomputeChoice;
    const { model, opts } = this;
    const caps = model.gpu.caps;
    this.recomputeChoice = chooseRecompute({
      setting: opts.recompute, spec: model.spec, B, S: opts.cutoffLen, packed, lora: loraSitesByMixer(model.layers),
      residentBytes: model.gpu.allocated, limits: caps.limits, budget: memoryBudget(opts.memoryBudget, caps.memoryBytes),
    });
    if (opts.recompute === 'auto') this.status?.(this.recomputeChoice.reason);
    return this.recomputeChoice;
  }

  /** NEFTune (Jain et al.): uniform noise scaled by alpha / sqrt(seq_len * hidden), drawn per forward (`n`: the step's n-th noisy forward). */
  private neftuneNoise(batch: TrainBatch, n = 0): Tensor {
    const D = this.model.spec.hidden;
    const mag = this.opts.neftuneAlpha / Math.sqrt(batch.S * D);
    const rand = seeded(this.opts.seed * 7919 + this.state.global_step * 31 + this.state.batch_in_epoch + n * 104729);
    const noise = Float32Array.from({ length: batch.B * batch.S * D }, () => (2 * rand() - 1) * mag);
    return this.model.gpu.upload(noise, [batch.B * batch.S, D]);
  }

  private async log(lr: number, sumSq: Tensor, hooks: TrainHooks): Promise<void> {
    const gpu = this.model.gpu;
    const metrics = await this.objective.takeMetrics(this.stepsSinceLog);
    const gradNorm = Math.sqrt((await gpu.readF32(sumSq))[0]!);
    // the readbacks above waited for the GPU: the interval's wall time includes all its work
    this.timeSinceLog = performance.now() - this.intervalStart;
    const rec = this.record(lr, { ...roundAll(metrics), grad_norm: round(gradNorm) });
    this.stepsSinceLog = 0;
    this.tokensSinceLog = 0;
    this.timeSinceLog = 0;
    this.intervalStart = performance.now();
    this.state.log_history.push(rec);
    hooks.onLog?.(rec);
  }

  private record(lr: number, extra: Partial<LogRecord>): LogRecord {
    const elapsed = (performance.now() - this.started) / 1000;
    const step = this.state.global_step;
    const tps = this.timeSinceLog > 0 ? this.tokensSinceLog / (this.timeSinceLog / 1000) : 0;
    return {
      current_steps: step,
      total_steps: this.totalSteps,
      ...extra,
      lr,
      epoch: round(this.state.epoch + this.state.batch_in_epoch / this.microPerEpoch),
      percentage: round((100 * step) / this.totalSteps),
      tokens_per_second: Math.round(tps),
      elapsed_time: round(elapsed),
      remaining_time: round(step > this.firstStep ? (elapsed / (step - this.firstStep)) * (this.totalSteps - step) : 0),
    };
  }
}

/** A fresh adapter: PEFT's default initialisation, or PiSSA's (the base then holds W_res). */
async function createAdapter(model: Model, lora: NonNullable<TrainOptions['lora']>, seed: number): Promise<Adapter> {
  if (!lora.pissa) return Adapter.create(model, lora, seeded(seed));
  const pissa = new Pissa(model, lora, lora.pissa, seed);
  try {
    const adapter = await Adapter.create(model, lora, seeded(seed), (mods) => pissa.init(mods));
    adapter.pissa = pissa;
    return adapter;
  } catch (e) {
    pissa.release();
    throw e;
  }
}

function trainableBase(model: Model, o: TrainOptions): TrainableTensor[] {
  const L = model.layers.length;
  if (o.finetuningType === 'full') return makeTrainable(model, model.layers.map((l) => l.index), true);
  const n = o.freezeTrainableLayers ?? 2;
  const layers = o.llamaPro ? llamaProLayers(L, n)
    : n > 0 ? Array.from({ length: Math.min(n, L) }, (_, i) => L - 1 - i) : Array.from({ length: Math.min(-n, L) }, (_, i) => i);
  return makeTrainable(model, layers, false);
}

const round = (x: number) => Math.round(x * 1e4) / 1e4;
const roundAll = (m: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, round(v)]));

/** The trainer's draws (adapter and value-head initialisation, NEFTune noise): the project's generator, seeded as the trainer always seeded it so runs keep their numbers. */
const seeded = (seed: number): (() => number) => mulberry32((seed >>> 0) || 0x2545f491);
