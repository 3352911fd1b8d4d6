// What a training run optimises, behind one interface: the Trainer owns the loop (data order,
// optimizer, schedule, logging, checkpoints) and asks its Objective for each step's forward and
// backward, for evaluation, and for whatever the objective adds to the model or to a checkpoint.
// Implementations: SftObjective (sft.ts: pt / sft), PreferenceObjective (preference/: dpo and
// its pref_loss family, kto, rm) and PpoObjective (ppo/); objectives.ts picks one from the run's options.

import type { TokenLoss } from '../kernels/loss';
import type { Tensor } from '../gpu/tensor';
import type { PeftAdapter, TrainableTensor } from '../model/adapter';
import type { LoraDropoutStep, Workspace } from '../model/forward';
import type { Model } from '../model/model';
import type { TokenExample, TrainBatch } from './batches';
import type { PreferenceExample } from './preference/options';
import type { ReferenceTable } from './reference';
import type { RunStore } from './store';
import type { ValueHead } from './value-head';

/** sft / pt rows, preference pairs (rm, dpo) or KTO examples. */
export type TrainExample = TokenExample | PreferenceExample;

/** What the trainer lends its objective. */
export interface ObjectiveContext {
  model: Model;
  /** The trained adapter; without a reference table, dpo and kto use the base with it switched off as the reference model. */
  adapter: PeftAdapter | null;
  /** Reference log-probabilities (full / freeze fine-tuning, ref_model); empty ones are scored in prepare(). */
  reference?: ReferenceTable | null;
  /** NEFTune noise for a training forward of `batch` (the n-th of the step), or none. */
  embedNoise?: (batch: TrainBatch, n: number) => Tensor | null;
  /** lora_dropout of the step's `micro`-th micro-batch. */
  loraDropout?: (micro: number) => LoraDropoutStep | undefined;
  padId: number;
  cutoffLen: number;
  /** A workspace for B rows of S tokens (`packed`: with segment ids); the trainer keeps them. */
  workspace: (B: number, S: number, packed?: boolean) => Workspace;
  /** Draws for the objective's own initial weights (rm's value head). */
  random: () => number;
  /**
   * Full / freeze ppo and ASFT: runs fn with the trained weights set back to their initial values
   * (the reference model, LLaMA-Factory's separately loaded ref_model), then restores them.
   */
  withInitialWeights?: <T>(fn: () => Promise<T>) => Promise<T>;
  /** With withInitialWeights: the initial value of trained tensor t (as it is now bound), or null for an untrained one. */
  initialValue?: (t: Tensor) => Tensor | null;
  /** pt / sft: the token loss (cross-entropy unless DFT, EAFT, ASFT or label smoothing). */
  tokenLoss?: TokenLoss;
  /**
   * An optimizer update with the gradients accumulated so far, at the step's learning rate, then
   * zeroed gradients: for objectives that update several times in one step (ppo). The trainer
   * makes the step's last update itself.
   */
  applyUpdate?: () => Promise<void>;
}

/**
 * Results trained but not yet logged, as a checkpoint keeps them in trainer_state.json's
 * log_interval: a resumed run's next log record covers the same steps as an uninterrupted run's.
 */
export interface Unlogged {
  /** pt / sft: the sum of the interval's per-step mean losses. */
  loss_sum: number;
  /** Preference stages: their micro-batch results. */
  objective?: unknown;
}

export interface Objective {
  /** Trainable tensors the objective adds to the model's (rm's value head). */
  readonly params: readonly TrainableTensor[];
  /** rm's value head: like the adapter it outlives the trainer (the caller saves it beside the adapter, then releases it). */
  readonly valueHead?: ValueHead | null;
  /** Work before the first step on these examples (scoring the reference model). */
  prepare(examples: readonly TrainExample[], batchSize: number, onStatus?: (message: string) => void): Promise<void>;
  /** Forward and backward of one optimizer step's micro-batches (gradients accumulate); returns the tokens processed. */
  step(micro: readonly (readonly TrainExample[])[]): Promise<number>;
  /** Training metrics since the last call: `loss` per optimizer step (over `steps` steps) and the objective's own. */
  takeMetrics(steps: number): Promise<Record<string, number>>;
  /** eval_loss and the objective's metrics (eval_ keys) over an evaluation set. */
  evaluate(examples: readonly TrainExample[], batchSize: number): Promise<Record<string, number>>;
  unlogged(): Promise<Unlogged>;
  restoreUnlogged(saved: Unlogged | undefined): void;
  /** The objective's trained parts beside the model in `dir` (a checkpoint, or '' for the output folder). */
  save(store: RunStore, dir: string): Promise<void>;
  /** What a checkpoint needs besides the weights to resume (the reference log-probabilities). */
  saveState(store: RunStore, dir: string): Promise<void>;
  /** Restores what save() and saveState() wrote into checkpoint `dir`. */
  load(store: RunStore, dir: string): Promise<void>;
  /** Frees the objective's buffers (not the value head: see valueHead). */
  release(): void;
}
