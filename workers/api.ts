// The one API between the app and its engine worker (workers/engine.worker.ts, exposed with
// comlink). Types, and the one constant both sides read (REWARD_RUN): the UI imports this file without pulling engine code into the page.

import type { Capabilities } from '../src/gpu/capabilities';
import type { LogRecord } from '../src/train/trainer';
import type { RunRecord } from '../src/train/store-browser';
import type { DataFormat } from '../src/data/describe';
import type { ModelInfo } from '../src/engine/model-info';
import type { BenchResult as JobBenchResult } from '../src/engine/jobs';
import type { ExampleView } from '../src/data/preview-view';
import type { DownloadRetry } from '../src/hub/download';

export type { ModelInfo };

/** Where a model's files come from. */
export type ModelSource =
  /** A model folder served next to the app (the embedded demo model): absolute URL ending in '/'. */
  | { kind: 'url'; id: string; base: string }
  /** A Hub model downloaded into IndexedDB (src/hub browserStore). */
  | { kind: 'hub'; id: string; revision?: string };

/** Where a dataset comes from. */
export type DataSource =
  /** A LLaMA-Factory data folder served next to the app (dataset_info.json + files). */
  | { kind: 'url'; base: string; dataset: string }
  /** Files the user dropped in; `dataset` names one of them (format detected from its records). */
  | { kind: 'upload'; files: Record<string, Uint8Array>; dataset: string }
  /** A Hub dataset repo (org/name), fetched on demand. */
  | { kind: 'hub'; repo: string };

/** LLaMA-Factory keys (stage, finetuning_type, lora_rank, learning_rate, ...), as in a YAML. */
export type Settings = Record<string, unknown>;

/** reward_model naming a run of this browser (stage ppo: an rm run's newest checkpoint), as `run:<id>`. */
export const REWARD_RUN = 'run:';

/** How the base is held: quantized (QLoRA / QOFT), or its linear weights in f16 (bf16 / fp16 where the GPU has shader-f16). */
export interface ModelFormat {
  quantizationBit: 4 | 8 | null;
  f16?: boolean;
}

export interface GpuInfo {
  ok: true;
  caps: Capabilities;
}
export interface GpuMissing {
  ok: false;
  /** What is wrong and what to do. */
  message: string;
}

export interface PreviewResult {
  /** sft / pt text with learned tokens marked, preference pairs, or KTO examples. */
  examples: ExampleView[];
  /** Examples in the train split (after max_samples / val_size). */
  count: number;
  evalCount: number;
  template: string;
  warnings: string[];
}

export interface TrainStart {
  runId: string;
  model: ModelSource;
  data: DataSource;
  settings: Settings;
  /** Continue from the run's newest complete checkpoint. */
  resume: boolean;
  /** Display name of the run. */
  name?: string;
}

export interface TrainEvent {
  kind: 'start' | 'log' | 'status' | 'checkpoint' | 'memory';
  /** start: the run's size. */
  start?: { totalSteps: number; examples: number; evalExamples: number; step: number; log: LogRecord[] };
  log?: LogRecord;
  status?: string;
  checkpoint?: { dir: string; step: number };
  memory?: { allocated: number; peak: number };
}

export interface TrainResult {
  runId: string;
  status: RunRecord['status'];
  step: number;
  totalSteps: number;
  loss?: number;
  evalLoss?: number;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface GenerationSettings {
  maxNewTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  system?: string;
  /** false: the base model alone (the adapter switched off). */
  useAdapter: boolean;
  seed?: number;
}

export interface ChatResult {
  text: string;
  promptTokens: number;
  completionTokens: number;
  finishReason: 'stop' | 'length' | 'aborted';
  tokensPerSecond: number;
}

export interface AdapterFiles {
  'adapter_config.json': string;
  'adapter_model.safetensors': Uint8Array;
  /** Stage rm: the reward model's value head (LLaMA-Factory's v_head.summary keys). */
  'value_head.safetensors'?: Uint8Array;
}

/** Every figure of a benchmark: the app's runs measure the method and the batch shape too. */
export type BenchResult = Required<JobBenchResult>;

export interface MergeOptions {
  /** export_size: shards of at most this many GB (1e9 bytes); null: one model.safetensors. */
  shardGB: number | null;
}

export interface MergedModel {
  /** File name -> bytes: model.safetensors, config.json, tokenizer files. */
  files: Record<string, Uint8Array>;
  bytes: number;
}

export interface EngineState {
  model: ModelInfo | null;
  modelSource: ModelSource | null;
  hasAdapter: boolean;
  adapterOrigin: string | null;
  /** Freeze / full fine-tuning changed the loaded weights themselves (no adapter to switch off). */
  weightsTrained: boolean;
  training: boolean;
  memory: { allocated: number; peak: number };
}

export interface HubModel {
  id: string;
  /** Parameters (from the Hub's safetensors metadata), when known. */
  params?: number;
  downloads: number;
  likes: number;
  gated: boolean;
}

export interface HubDataset {
  id: string;
  downloads: number;
  likes: number;
}

/** A Hub model before download: its files and config (for the memory estimate). */
export interface HubModelDetails {
  id: string;
  revision: string;
  /** Bytes of the files the app downloads. */
  size: number;
  files: string[];
  config: Record<string, unknown> | null;
}

export interface StoredModelSummary {
  id: string;
  size: number;
  partialBytes: number;
  complete: boolean;
}

export interface DownloadEvent {
  file: string;
  loaded: number;
  total: number;
  bytesPerSecond: number;
  etaSeconds: number;
  /** Set while a file waits to be tried again (a cut connection, a stall, 429/5xx). */
  retry?: DownloadRetry;
}

export interface PredictRequest {
  model: ModelSource;
  data: DataSource;
  /** The form's settings (template, cutoff_len, seed ...). */
  settings: Settings;
  /** The first examples of the dataset only (max_samples). */
  maxSamples: number;
  maxNewTokens: number;
  /** false: the base model alone. */
  useAdapter: boolean;
}

/** do_predict with predict_with_generate: each example's answer beside its label, BLEU-4 and ROUGE. */
export interface PredictOutcome {
  predictions: { prompt: string; predict: string; label: string }[];
  /** predict_bleu-4, predict_rouge-1, predict_rouge-2, predict_rouge-l, predict_runtime, ... */
  metrics: Record<string, number>;
  /** Who answered: the adapter's origin, or null for the base model. */
  adapter: string | null;
}

/** What engine.worker.ts exposes. Callbacks are comlink proxies. */
export interface EngineApi {
  /** Hub endpoint (default https://huggingface.co) and a session token (kept in memory only). */
  setHub(endpoint: string | null, token: string | null): Promise<void>;
  /** The offline switch (the browser's HF_HUB_OFFLINE): only stored models are used, the Hub is never contacted. */
  setOffline(offline: boolean): Promise<void>;
  searchModels(query: string, limit?: number): Promise<HubModel[]>;
  searchDatasets(query: string, limit?: number): Promise<HubDataset[]>;
  hubModel(id: string): Promise<HubModelDetails>;
  download(id: string, onProgress: (p: DownloadEvent) => void): Promise<StoredModelSummary>;
  cancelDownload(): Promise<void>;
  listStored(): Promise<StoredModelSummary[]>;
  deleteStored(id: string): Promise<boolean>;
  listRuns(): Promise<RunRecord[]>;
  deleteRun(id: string): Promise<void>;
  /** A new display name, also while the run trains (the worker holds its record then). */
  renameRun(id: string, name: string): Promise<void>;
  /** The dataset files kept with a run (uploads), to resume it. */
  runData(id: string): Promise<Record<string, Uint8Array> | null>;

  gpuInfo(): Promise<GpuInfo | GpuMissing>;
  state(): Promise<EngineState>;
  /** Load (or keep, when already loaded with the same source and format) a model on the GPU. */
  openModel(source: ModelSource, format: ModelFormat, onProgress?: (done: number, total: number, what: string) => void): Promise<ModelInfo>;
  /** Read a model's config.json without loading it (memory estimates). */
  modelConfig(source: ModelSource): Promise<Record<string, unknown>>;
  /** A dataset's format: its dataset_info.json entry, or detected from its first record (null: a Hub dataset). */
  describeData(data: DataSource): Promise<DataFormat | null>;
  preview(model: ModelSource, data: DataSource, settings: Settings, n: number): Promise<PreviewResult>;
  train(start: TrainStart, onEvent: (e: TrainEvent) => void): Promise<TrainResult>;
  /** Stop after the current step with a checkpoint; the run can be resumed later. */
  pause(): Promise<void>;
  /** Stop after the current step with a checkpoint; the run is over. */
  stop(): Promise<void>;
  chat(messages: ChatMessage[], gen: GenerationSettings, onText: (piece: string) => void): Promise<ChatResult>;
  stopChat(): Promise<void>;
  exportAdapter(): Promise<AdapterFiles>;
  importAdapter(files: AdapterFiles, origin: string): Promise<void>;
  /** The adapter of a run's newest checkpoint becomes the session's adapter. */
  loadRunAdapter(runId: string): Promise<void>;
  /** The base model with the adapter merged in (PEFT's merge_and_unload), when it fits in memory. */
  mergedModel(options?: MergeOptions): Promise<MergedModel>;
  benchmark(model: ModelSource, settings: Settings, steps: number, onStatus?: (s: string) => void): Promise<BenchResult>;
  /** Generate an answer to every example of a dataset (sft) with the loaded model and adapter, and score them. */
  predict(req: PredictRequest, onProgress?: (done: number, total: number) => void): Promise<PredictOutcome>;
  stopPredict(): Promise<void>;
  /** URLs of the scripts this worker loaded (for the offline cache). */
  loadedUrls(): Promise<string[]>;
}
