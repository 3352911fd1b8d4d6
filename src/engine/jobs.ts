// The job API every host drives: the hooks a job reports through and the results it returns.
// The CLI, the server, the app's Worker and users' scripts all see the engine through these.

import type { PreviewExample } from '../data/preview';
import type { GpuCounters } from '../gpu/runtime';
import type { LogRecord } from '../train/trainer';

/** Progress callbacks every job accepts. */
export interface RunHooks {
  /** A one-line status: "downloading Qwen/Qwen3-0.6B", "tokenizing identity (91 examples)". */
  onStatus?: (message: string) => void;
  /** Aborting asks the job to wind down (training: after the current step, with a checkpoint). */
  signal?: AbortSignal;
}

/** One training log record: LLaMA-Factory's trainer_log.jsonl fields (and TRL's preference metrics). */
export type TrainLog = LogRecord;

export interface TrainRunHooks extends RunHooks {
  onLog?: (record: TrainLog) => void;
  /** `best`: the best model's checkpoint so far, with metric_for_best_model (save_total_limit keeps it). */
  onCheckpoint?: (dir: string, step: number, best?: string | null) => void;
}

export interface TrainRunResult {
  /** Where the adapter (or weights) and logs were written. */
  outputDir: string;
  globalStep: number;
  totalSteps: number;
  /** Stopped by the signal before the end. */
  interrupted: boolean;
  /** The newest complete checkpoint folder (null: none, e.g. stopped before the first step). */
  checkpoint: string | null;
  trainLoss?: number;
  /** The evaluation loss of the model left in outputDir (the best checkpoint's when it was loaded). */
  evalLoss?: number;
  /** Why training ended before its last step without an abort (early stopping). */
  stopped?: string;
  /** load_best_model_at_end: the checkpoint whose model outputDir holds. */
  bestCheckpoint?: string;
}

export interface ExportHooks extends RunHooks {
  /** Copy the adapter with the model's side files instead of merging it. */
  adapterOnly?: boolean;
}

export interface ExportRunResult {
  exportDir: string;
  files: string[];
}

export interface PreviewOptions extends RunHooks {
  /** How many examples to show. */
  count: number;
  /** From which example on. */
  offset: number;
}

export interface PreviewResult {
  /** Rendered examples with the learned spans marked, token ids and labels (pairs: both sides). */
  examples: PreviewExample[];
  /** Training examples in the whole dataset. */
  total: number;
}

export interface BenchOptions extends RunHooks {
  steps: number;
  warmup: number;
}

export interface BenchResult {
  /** The GPU adapter's name. */
  device: string;
  model: string;
  /** Measured steps (after the warm-up). */
  steps: number;
  tokensPerSecond: number;
  stepSeconds: number;
  peakBytes: number;
  /** Whether the steps recomputed activations (disable_gradient_checkpointing, or decided from memory as a run would), and why. */
  recompute?: boolean;
  recomputeReason?: string;
  /** "LoRA r8", "QLoRA r8 (4-bit)", "freeze", "full". */
  method?: string;
  tokensPerStep?: number;
  /** The host's recording work of each measured step (dispatches, passes, submits, encode time). */
  perStep?: GpuCounters[];
  /** GEMM shape class -> the tile tuning chose on this device (classes not listed run the default tile). */
  gemmTiles?: Record<string, string>;
}
