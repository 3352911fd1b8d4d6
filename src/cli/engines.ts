// The engine functions the CLI calls, and where each is expected to live.
//
// The commands here do their own argument and config handling, then call one engine function.
// Until the module that provides it lands, the command fails with "not available yet". When it
// lands with the export and signature below, the command works with no change here; the engine
// engineer may then replace the lookup with a static import.

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { CrucibleConfig } from '../config/schema';
import type { ChatBackend } from '../server/types';
import type { PreviewExample } from '../data/preview';
import { CliError, type CliIO } from './io';

/** Progress callbacks every engine function accepts. */
export interface RunHooks {
  /** A one-line status: "downloading Qwen/Qwen3-0.6B", "tokenizing identity (91 examples)". */
  onStatus?: (message: string) => void;
  /** Aborting asks the engine to wind down (training: after the current step, with a checkpoint). */
  signal?: AbortSignal;
}

/** One training log record, LLaMA-Factory's trainer_log.jsonl fields. */
export interface TrainLog {
  current_steps: number;
  total_steps: number;
  loss?: number;
  eval_loss?: number;
  lr: number;
  epoch: number;
  percentage: number;
  grad_norm?: number;
  tokens_per_second: number;
  elapsed_time: number;
  remaining_time: number;
}

export interface TrainRunHooks extends RunHooks {
  onLog?: (record: TrainLog) => void;
  onCheckpoint?: (dir: string, step: number) => void;
}

export interface TrainRunResult {
  /** Where the adapter (or weights) and logs were written. */
  outputDir: string;
  globalStep: number;
  totalSteps: number;
  /** Stopped by the signal before the end (a checkpoint was saved). */
  interrupted: boolean;
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

/** Where each engine function is expected (relative to this file), and what provides it. */
export const ENGINE_MODULES: { readonly [K in keyof EngineImpls]: { module: string; what: string } } = {
  runTraining: { module: '../train/run.ts', what: 'the training engine' },
  createChatBackend: { module: '../model/chat.ts', what: 'the inference engine' },
  exportModel: { module: '../export/merge.ts', what: 'the model exporter' },
  previewDataset: { module: '../engine/preview-node.ts', what: 'the dataset pipeline' },
  benchmarkTraining: { module: '../train/bench.ts', what: 'the training benchmark' },
};

export async function loadEngine<K extends keyof EngineImpls>(
  name: K,
  command: string,
  io: CliIO,
  modules: { readonly [N in keyof EngineImpls]: { module: string; what: string } } = ENGINE_MODULES,
): Promise<EngineImpls[K]> {
  const injected = io.engines?.[name];
  if (injected) return injected as EngineImpls[K];
  const { module, what } = modules[name];
  const url = new URL(module, import.meta.url);
  const shown = `src/${module.replace(/^\.\.\//, '')}`;
  const notYet = (why: string) =>
    new CliError(`crucible ${command} is not available yet: it needs ${what} (${name} in ${shown}), ${why}`);
  if (!existsSync(fileURLToPath(url))) throw notYet('which is not part of this build yet');
  const mod = (await import(/* @vite-ignore */ url.href)) as Record<string, unknown>;
  const fn = mod[name];
  if (typeof fn !== 'function') throw notYet(`but ${shown} does not export it yet`);
  return fn as EngineImpls[K];
}
