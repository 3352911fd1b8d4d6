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
import { afterEvaluation, afterSave, noBestModel, type BestModelOptions, type BestModelState } from './best-model';

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
  /** eval_on_start: evaluate once before the first step (logged at step 0, not a candidate for the best model, as HF). */
  evalOnStart?: boolean;
  /** eval_delay in steps: no evaluation on the schedule before this step. */
  evalDelay?: number;
  /** metric_for_best_model and what follows from it (load_best_model_at_end, early_stopping_steps); null: no best model tracked. */
  bestModel?: BestModelOptions | null;
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
  /** `best`: the best model's checkpoint so far (save_total_limit never deletes it). */
  onCheckpoint?: (dir: string, step: number, best: string | null) => void;
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
  best: BestModelState;
  /** Why training stopped before total_steps other than an abort (early stopping); null: it did not. */
  stopped: string | null;
}

/** trainer_state.json as Crucible writes it: its own fields, then HF's TrainerState fields. */
interface TrainerStateFile extends Omit<TrainerState, 'best' | 'stopped'> {
  seed: number;
  log_interval?: LogInterval;
  /** Why an earlier run stopped early: a rerun does not train on. */
  stop_reason?: string | null;
  best_metric?: number | null;
  best_global_step?: number | null;
  best_model_checkpoint?: string | null;
  stateful_callbacks?: { EarlyStoppingCallback?: { attributes?: { early_stopping_patience_counter?: number } } };
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
  /** Full / freeze ppo and ASFT: each trained base weight and a copy of its initial value (the reference model). */
  private initial: { param: TrainableTensor; copy: Tensor }[] = [];

  private constructor(
    readonly model: Model,
    readonly adapter: PeftAdapter | null,
    readonly train: readonly TrainExample[],
    readonly evalSet: readonly TrainExample[],
    readonly opts: TrainOptions,
    readonly padId: number,
  ) {
    const gpu = model.gpu;
    // full / freeze runs whose reference model is their initial weights, for every step anew
    const keepsInitial = !adapter && (!!opts.ppo || opts.tokenLoss?.kind === 'asft');
    this.objective = createObjective({
      model, adapter, padId, cutoffLen: opts.cutoffLen, random: seeded(opts.seed + 1), reference: opts.referenceTable ?? null,
      workspace: (B, S, packed = false) => this.workspace(B, S, packed),
      loraDropout: (micro) => this.loraDropout(micro),
      ...(opts.neftuneAlpha > 0 ? { embedNoise: (batch: TrainBatch, n: number) => this.neftuneNoise(batch, n) } : {}),
      ...(opts.tokenLoss ? { tokenLoss: opts.tokenLoss } : {}),
      applyUpdate: () => this.applyUpdate(),
      ...(keepsInitial ? {
        withInitialWeights: <T>(fn: () => Promise<T>) => this.withInitialWeights(fn),
        initialValue: (t: Tensor) => this.initial.find((i) => i.param.value.buffer === t.buffer && i.param.value.offset === t.offset)?.copy ?? null,
      } : {}),
    }, opts.preference, opts.ppo);
    this.params = adapter ? adapter.params(opts.lora?.plusRatio ?? 1) : trainableBase(model, opts);
    // taken before resume() loads a checkpoint: the reference stays the model the run started from
    if (keepsInitial) {
      this.initial = this.params.map((param) => {
        const copy = gpu.tensor([...param.value.shape], 'f32', `${param.name}.initial`);
        gpu.copy(param.value, copy);
        return { param, copy };
      });
    }
    this.params = [...this.params, ...this.objective.params];
    if (this.params.length === 0) throw new Error('nothing to train: the chosen method selects no parameters');
    this.optimizer = createOptimizer(gpu, this.params, {
      lr: opts.learningRate, beta1: opts.beta1, beta2: opts.beta2, eps: opts.eps, weightDecay: opts.weightDecay, maxGradNorm: opts.maxGradNorm,
    }, opts.optimizer ?? { kind: 'adamw' }, { hidden: model.spec.hidden, heads: model.spec.heads }, opts.seed);
    this.microPerEpoch = Math.ceil(train.length / opts.batchSize);
    const stepsPerEpoch = Math.max(1, Math.ceil(this.microPerEpoch / opts.gradAccum));
    this.totalSteps = opts.maxSteps > 0 ? opts.maxSteps : Math.ceil(opts.epochs * stepsPerEpoch);
    this.state = { global_step: 0, epoch: 0, batch_in_epoch: 0, total_steps: this.totalSteps, log_history: [], best: noBestModel(), stopped: null };
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
        // LLaMA Pro with LoRA (LLaMA-Factory's find_expanded_modules): the adapter goes on the expanded blocks only
        const lora = opts.llamaPro ? { ...opts.lora, layers: llamaProLayers(model.layers.length, opts.freezeTrainableLayers ?? 2) } : opts.lora;
        adapter = await createAdapter(model, lora, opts.seed);
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
    const every = (n: number, step: number) => n > 0 && step % n === 0;
    // HF's eval_on_start: logged, but neither a best model nor an early-stopping count (best_metric is unset)
    if (o.evalOnStart && this.state.global_step === 0 && this.evalSet.length > 0 && !hooks.signal?.aborted) await this.evaluate(0, hooks);
    this.intervalStart = performance.now();
    while (this.state.global_step < this.totalSteps && !this.state.stopped && !hooks.signal?.aborted) {
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
      if (this.evalSet.length > 0 && step >= (o.evalDelay ?? 0) && (every(o.evalSteps, step) || (o.evalSteps > 0 && final))) {
        const metrics = await this.evaluate(lr, hooks);
        if (o.bestModel) this.judge(o.bestModel, metrics, step, hooks);
      }
      // decided after the awaits above: an abort that arrived during them still saves this step
      if (store && (every(o.saveSteps, step) || final || this.state.stopped || hooks.signal?.aborted)) {
        const dir = `checkpoint-${step}`;
        this.state.best = afterSave(this.state.best, dir, step);
        await this.saveCheckpoint(store, dir);
        hooks.onCheckpoint?.(dir, step, this.state.best.best_model_checkpoint);
      }
      this.intervalStart += performance.now() - pausedAt; // evaluation and saving are not training time
    }
    await gpu.sync();
    const best = this.state.best.best_model_checkpoint;
    if (store && o.bestModel?.loadAtEnd && best && this.finished && best !== `checkpoint-${this.state.global_step}`) {
      hooks.onStatus?.(`loading the best model from ${best} (${o.bestModel.metric} ${this.state.best.best_metric} at step ${this.state.best.best_global_step})`);
      await this.loadTrained(store, best);
      await gpu.sync();
    } else if (o.bestModel?.loadAtEnd && best && this.finished) {
      hooks.onStatus?.(`the best model is the last one, ${best} (${o.bestModel.metric} ${this.state.best.best_metric})`);
    }
    return this.state;
  }

  /** The run reached its end: all its steps, or an early stop (not an abort). */
  get finished(): boolean {
    return this.state.global_step >= this.totalSteps || this.state.stopped !== null;
  }

  /** Loss and the objective's metrics over the evaluation set (rounded, as logged). */
  async evaluate(lr: number, hooks: TrainHooks): Promise<Record<string, number>> {
    const metrics = roundAll(await this.objective.evaluate(this.evalSet, this.opts.batchSize));
    const rec = this.record(lr, metrics);
    this.state.log_history.push(rec);
    hooks.onLog?.(rec);
    return metrics;
  }

  /** The best model and early stopping after an evaluation at `step`. */
  private judge(o: BestModelOptions, metrics: Record<string, number>, step: number, hooks: TrainHooks): void {
    const { state, stop } = afterEvaluation(o, this.state.best, metrics, step);
    this.state.best = state;
    if (!stop) return;
    const evals = state.early_stopping_patience_counter;
    this.state.stopped = `early stopping at step ${step}: ${o.metric} has not improved on ${state.best_metric} (step ${state.best_global_step}) for ${evals} evaluation${evals === 1 ? '' : 's'} (early_stopping_steps: ${o.patience})`;
    hooks.onStatus?.(this.state.stopped);
  }

  /**
   * trainer_state.json: the resumable state, then HF's TrainerState fields (best_metric,
   * best_global_step, best_model_checkpoint, max_steps, the step settings, stateful_callbacks
   * with the early-stopping counter). log_history holds LLaMA-Factory's trainer_log records.
   */
  stateJson(extra: object = {}): string {
    const { best, stopped, ...own } = this.state;
    const o = this.opts;
    const file = {
      ...own, ...extra, seed: o.seed, stop_reason: stopped,
      best_metric: best.best_metric, best_global_step: best.best_global_step, best_model_checkpoint: best.best_model_checkpoint,
      eval_steps: o.evalSteps, logging_steps: o.loggingSteps, save_steps: o.saveSteps, max_steps: this.totalSteps,
      num_train_epochs: o.maxSteps > 0 ? Math.ceil(this.totalSteps / Math.max(1, Math.ceil(this.microPerEpoch / o.gradAccum))) : Math.ceil(o.epochs),
      train_batch_size: o.batchSize, is_local_process_zero: true, is_world_process_zero: true,
      stateful_callbacks: {
        ...(o.bestModel?.patience != null ? { EarlyStoppingCallback: {
          args: { early_stopping_patience: o.bestModel.patience, early_stopping_threshold: 0 },
          attributes: { early_stopping_patience_counter: best.early_stopping_patience_counter },
        } } : {}),
        TrainerControl: { args: { should_training_stop: stopped !== null || this.state.global_step >= this.totalSteps }, attributes: {} },
      },
    };
    return JSON.stringify(file, null, 1);
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
    await store.write(`${dir}/trainer_state.json`, this.stateJson(interval));
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
    const { log_interval: interval, ...state } = parseJsonFile<TrainerStateFile>(new TextDecoder().decode(await store.read(`${dir}/trainer_state.json`)), `${dir}/trainer_state.json`);
    if (state.seed !== this.opts.seed) throw new Error(`${dir}: checkpoint was trained with seed ${state.seed}, this run uses ${this.opts.seed}; the data order would differ`);
    const weights = await this.trainedWeights(store, dir);
    const opt = await openSafetensors(await storedSource(store, `${dir}/optimizer.safetensors`));
    // the step first: BAdam's trained block and state, and GaLore's projection schedule, follow it
    this.optimizer.step = Number(opt.metadata.step ?? state.global_step);
    const moments = this.optimizer.stateTensors();
    checkCheckpointTensors(opt, moments.map(({ name, tensor }) => ({ name, shape: tensor.shape })));
    const pissa = this.adapter?.pissa;
    if (pissa) await pissa.restoreInitial(await openSafetensors(await storedSource(store, `${dir}/${PISSA_INIT_DIR}/adapter_model.safetensors`)));
    await this.writeTrained(store, dir, weights);
    for (const { name, tensor } of moments) gpu.write(tensor, await readF32(opt, name));
    this.state = {
      global_step: state.global_step, epoch: state.epoch, batch_in_epoch: state.batch_in_epoch, total_steps: this.totalSteps, log_history: state.log_history,
      best: {
        best_metric: state.best_metric ?? null, best_global_step: state.best_global_step ?? null, best_model_checkpoint: state.best_model_checkpoint ?? null,
        early_stopping_patience_counter: state.stateful_callbacks?.EarlyStoppingCallback?.attributes?.early_stopping_patience_counter ?? 0,
      },
      stopped: state.stop_reason ?? null,
    };
    this.stepsSinceLog = interval?.steps ?? 0;
    this.objective.restoreUnlogged(interval);
  }

  /** The trained weights of checkpoint `dir` (load_best_model_at_end), without its optimizer state or step. */
  async loadTrained(store: RunStore, dir: string): Promise<void> {
    await this.writeTrained(store, dir, await this.trainedWeights(store, dir));
  }

  /** A checkpoint's trained tensors, checked against the run's before anything is written to the GPU (a changed lora_rank / lora_target / model is named). */
  private async trainedWeights(store: RunStore, dir: string) {
    const weights = await openSafetensors(await storedSource(store, `${dir}/${this.adapter ? 'adapter_model' : 'trained_weights'}.safetensors`));
    const own = new Set(this.objective.params);
    const pissa = this.adapter?.pissa;
    checkCheckpointTensors(weights, this.params.filter((p) => !own.has(p)).map((p) => ({ name: p.name, shape: pissa ? pissa.publishedShape(p.name, p.value.shape) : p.value.shape })));
    return weights;
  }

  private async writeTrained(store: RunStore, dir: string, weights: Awaited<ReturnType<typeof openSafetensors>>): Promise<void> {
    await this.objective.load(store, dir);
    const own = new Set(this.objective.params);
    const pissa = this.adapter?.pissa;
    for (const p of this.params) {
      if (!own.has(p)) this.model.gpu.write(p.value, pissa ? await pissa.readTrained(weights, p.name) : await readF32(weights, p.name));
    }
  }

  private async logInterval(): Promise<LogInterval> {
    return { steps: this.stepsSinceLog, ...(await this.objective.unlogged()) };
  }

  release(): void {
    for (const ws of this.workspaces.values()) ws.release();
    this.objective.release();
    this.optimizer.release();
    this.model.gpu.release(...this.initial.map((i) => i.copy));
  }

  /**
   * ObjectiveContext.withInitialWeights: the trained weights swapped for their initial copies while
   * fn runs (one more transient copy of them holds the current values), then put back.
   */
  async withInitialWeights<T>(fn: () => Promise<T>): Promise<T> {
    if (this.initial.length === 0) throw new Error('withInitialWeights: only full / freeze ppo and ASFT runs keep their initial weights');
    const gpu = this.model.gpu;
    const current = this.initial.map(({ param }) => {
      const keep = gpu.tensor([...param.value.shape], 'f32', `${param.name}.current`);
      gpu.copy(param.value, keep);
      return keep;
    });
    for (const { param, copy } of this.initial) gpu.copy(copy, param.value);
    try {
      return await fn();
    } finally {
      this.initial.forEach(({ param }, i) => gpu.copy(current[i]!, param.value));
      gpu.release(...current);
    }
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
