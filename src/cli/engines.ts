// The engine functions the CLI calls. Commands do their own argument and config handling, then
// call one engine function.

import type { CrucibleConfig } from '../config/schema';
import type { ChatBackend } from '../server/types';
import type { PreviewExample } from '../data/preview';
import type { LogRecord } from '../train/trainer';
import type { CliIO } from './io';

/** Progress callbacks every engine function accepts. */
export interface RunHooks {
  /** A one-line status: "downloading Qwen/Qwen3-0.6B", "tokenizing identity (91 examples)". */
  onStatus?: (message: string) => void;
  /** Aborting asks the engine to wind down (training: after the current step, with a checkpoint). */
  signal?: AbortSignal;
}

/** One training log record: LLaMA-Factory's trainer_log.jsonl fields (and TRL's preference metrics). */
export type TrainLog = LogRecord;

export interface TrainRunHooks extends RunHooks {
  onLog?: (record: TrainLog) => void;
  onCheckpoint?: (dir: string, step: number) => void;
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
  evalLoss?: number;
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
  device: string;
  model: string;
  steps: number;
  tokensPerSecond: number;
  stepSeconds: number;
  peakBytes: number;
  [extra: string]: unknown;
}

export interface EngineImpls {
  /** `crucible train`: the whole run of a config (model, data, trainer, adapter written to output_dir). */
  runTraining: (config: CrucibleConfig, hooks: TrainRunHooks) => Promise<TrainRunResult>;
  /** `crucible chat` and `crucible api`: a model (+ adapter) loaded for generation. */
  createChatBackend: (config: CrucibleConfig, hooks: RunHooks) => Promise<ChatBackend>;
  /** `crucible export`: merge the adapter into the model and write it to export_dir. */
  exportModel: (config: CrucibleConfig, hooks: RunHooks & { adapterOnly?: boolean }) => Promise<ExportRunResult>;
  /** `crucible preview`: examples as the trainer will see them (template, masking, truncation). */
  previewDataset: (config: CrucibleConfig, options: PreviewOptions) => Promise<PreviewResult>;
  /** `crucible bench`: training throughput of a config on this GPU. */
  benchmarkTraining: (config: CrucibleConfig, options: BenchOptions) => Promise<BenchResult>;
}

/** Each command's engine, imported on first use so `--help` and `env` start fast. */
const ENGINES: { readonly [K in keyof EngineImpls]: () => Promise<EngineImpls[K]> } = {
  runTraining: async () => (await import('../train/run.ts')).runTraining,
  createChatBackend: async () => (await import('../model/chat.ts')).createChatBackend,
  exportModel: async () => (await import('../export/merge.ts')).exportModel,
  previewDataset: async () => (await import('../engine/preview-node.ts')).previewDataset,
  benchmarkTraining: async () => (await import('../train/bench.ts')).benchmarkTraining,
};

/** The engine function behind a command (tests inject their own through io.engines). */
export async function loadEngine<K extends keyof EngineImpls>(name: K, _command: string, io: CliIO): Promise<EngineImpls[K]> {
  return (io.engines?.[name] as EngineImpls[K] | undefined) ?? ENGINES[name]();
}
