// The engine jobs the CLI calls (src/engine/). Commands do their own argument and config handling, then
// call one engine function.

import type { CrucibleConfig } from '../config/schema';
import type { ChatBackend } from '../engine/chat-backend';
import type { ChoiceEvalConfig } from '../engine/eval-node';
import type { ChoiceResult } from '../eval/choice';
import type { PredictResult } from '../eval/predict';
import type { BenchOptions, BenchResult, ExportHooks, ExportRunResult, PreviewOptions, PreviewResult, RunHooks, TrainRunHooks, TrainRunResult } from '../engine/jobs';

export interface EngineImpls {
  /** `crucible train`: the whole run of a config (model, data, trainer, adapter written to output_dir). */
  runTraining: (config: CrucibleConfig, hooks: TrainRunHooks) => Promise<TrainRunResult>;
  /** `crucible chat` and `crucible api`: a model (+ adapter) loaded for generation. */
  createChatBackend: (config: CrucibleConfig, hooks: RunHooks) => Promise<ChatBackend>;
  /** `crucible export`: merge the adapter into the model and write it to export_dir. */
  exportModel: (config: CrucibleConfig, hooks: ExportHooks) => Promise<ExportRunResult>;
  /** `crucible preview`: examples as the trainer will see them (template, masking, truncation). */
  previewDataset: (config: CrucibleConfig, options: PreviewOptions) => Promise<PreviewResult>;
  /** `crucible bench`: training throughput of a config on this GPU. */
  benchmarkTraining: (config: CrucibleConfig, options: BenchOptions) => Promise<BenchResult>;
  /** `crucible eval`: a multiple-choice benchmark (MMLU / C-Eval / CMMLU style), scored by answer-letter logits. */
  runChoiceEval: (config: ChoiceEvalConfig, hooks: RunHooks) => Promise<ChoiceResult>;
  /** `crucible train` with do_predict: generate for the eval set, write predictions and BLEU / ROUGE. */
  runPredictJob: (config: CrucibleConfig, hooks: RunHooks) => Promise<PredictResult>;
}

/** Each command's engine, imported on first use so `--help` and `env` start fast. */
const ENGINES: { readonly [K in keyof EngineImpls]: () => Promise<EngineImpls[K]> } = {
  runTraining: async () => (await import('../engine/train-node.ts')).runTraining,
  createChatBackend: async () => (await import('../engine/chat-node.ts')).createChatBackend,
  exportModel: async () => (await import('../engine/export-node.ts')).exportModel,
  previewDataset: async () => (await import('../engine/preview-node.ts')).previewDataset,
  benchmarkTraining: async () => (await import('../engine/bench-node.ts')).benchmarkTraining,
  runChoiceEval: async () => (await import('../engine/eval-node.ts')).runChoiceEval,
  runPredictJob: async () => (await import('../engine/eval-node.ts')).runPredictJob,
};

/** The engine function behind a command (tests inject their own through io.engines). */
export async function loadEngine<K extends keyof EngineImpls>(name: K, _command: string, io: { engines?: Partial<EngineImpls> }): Promise<EngineImpls[K]> {
  return (io.engines?.[name] as EngineImpls[K] | undefined) ?? ENGINES[name]();
}
