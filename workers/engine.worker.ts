// The app's engine: one Web Worker holding the GPU device, the loaded model (a Session), training,
// chat and export, exposed to the page as one comlink API (workers/api.ts). The page never touches
// the GPU; long GPU work here never blocks the UI.

import * as Comlink from 'comlink';
import { listDatasets, listModels } from '@huggingface/hub';
import { browserGpu } from '../src/gpu/browser';
import { browserGemmTuning } from '../src/engine/gemm-tuning-browser';
import type { Gpu } from '../src/gpu/runtime';
import { benchmarkSession } from '../src/engine/bench';
import { checkpointBytes, exportMerged, readAdapter, type MergeSources } from '../src/engine/export';
import { describeModel, type ModelInfo } from '../src/engine/model-info';
import { loadModelTokenizer, Session } from '../src/engine/session';
import { trainModel } from '../src/engine/train';
import { basePrecision } from '../src/engine/precision';
import { configFromObject, type CrucibleConfig } from '../src/config';
import { buildDataset, DataError, previewExamples, type DataDeps, type LmExample, type PreviewExample } from '../src/data';
import { runPredict } from '../src/eval/predict';
import { describeDataset, type DataFormat } from '../src/data/describe';
import { exampleView } from '../src/data/preview-view';
import { browserStore, deleteStoredModel, downloadModel, HubError, listStoredModels, openStoredModel, resolveModel, setOfflineMode, type HubFile, type ModelStore } from '../src/hub';
import { resolveOffline } from '../src/hub/env';
import { openSafetensors } from '../src/model/safetensors';
import type { ModelFiles } from '../src/model/weights';
import { VALUE_HEAD_FILE } from '../src/train/value-head';
import { storedSource } from '../src/train/store';
import { checkpointsToDelete } from '../src/train/rotation';
import { REWARD_RUN } from './api';
import {
  browserRunStore,
  deleteRun,
  getRun,
  getRunData,
  latestCheckpoint,
  listRuns,
  pruneCheckpoints,
  saveRun,
  saveRunData,
  updateRun,
  type RunRecord,
} from '../src/train/store-browser';
import type {
  AdapterFiles,
  BenchResult,
  ChatMessage,
  ChatResult,
  DataSource,
  DownloadEvent,
  EngineApi,
  EngineState,
  GenerationSettings,
  GpuInfo,
  GpuMissing,
  HubModelDetails,
  StoredModelSummary,
  MergedModel,
  ModelFormat,
  ModelSource,
  PredictOutcome,
  PredictRequest,
  PreviewResult,
  Settings,
  TrainEvent,
  TrainResult,
  TrainStart,
} from './api';
import { appDataFiles } from './data-files';
import { fetchBytes, urlModelFiles } from './model-files';

const HUB = 'https://huggingface.co';

let gpuPromise: Promise<Gpu> | null = null;
let session: Session | null = null;
let sessionKey = '';
let sessionSource: ModelSource | null = null;
let sessionFiles: ModelFiles | null = null;
let modelInfo: ModelInfo | null = null;
let adapterOrigin: string | null = null;
/** The value head of the session's adapter when it is a reward model's (stage rm). */
let valueHead: Uint8Array | null = null;
let lastTrained: { runId: string; finetuningType: string } | null = null;
/** Freeze / full fine-tuning changed the loaded base weights: reload before the next run. */
let baseModified = false;
let training = false;
let currentRun: string | null = null;
/** Renames the training run's record (held by trainRun while it trains). */
let renameCurrent: ((name: string) => Promise<void>) | null = null;
let trainAbort: AbortController | null = null;
let stopKind: 'pause' | 'stop' | null = null;
let chatAbort: AbortController | null = null;
let predictAbort: AbortController | null = null;
/** One GPU job at a time: training, chat, benchmark and loading share the device. */
let queue: Promise<unknown> = Promise.resolve();
let hubStore: ModelStore | null = null;

/** Call a page callback (a comlink proxy: its result is a promise) without waiting, ignoring a page that went away. */
function notify<A extends unknown[]>(fn: ((...a: A) => unknown) | undefined, ...args: A): void {
  if (!fn) return;
  try {
    void Promise.resolve(fn(...args)).catch(() => undefined);
  } catch {
    /* the page went away */
  }
}

function exclusive<T>(fn: () => Promise<T>): Promise<T> {
  const next = queue.then(fn, fn);
  queue = next.catch(() => undefined);
  return next;
}

function gpu(): Promise<Gpu> {
  gpuPromise ??= browserGpu().catch((e) => {
    gpuPromise = null;
    throw e;
  });
  return gpuPromise;
}

function store(): ModelStore {
  hubStore ??= browserStore();
  return hubStore;
}

async function modelFiles(source: ModelSource): Promise<ModelFiles> {
  if (source.kind === 'url') return urlModelFiles(source.base, source.id);
  const m = await openStoredModel(store(), source.id, source.revision ? { revision: source.revision } : {});
  if (!m) throw new Error(`${source.id} is not stored in this browser: download it first`);
  return m;
}

const keyOf = (s: ModelSource, f: ModelFormat) => `${s.kind}:${s.id}:${s.kind === 'url' ? s.base : (s.revision ?? 'main')}:${f.quantizationBit ?? (f.f16 ? 'f16' : 'f32')}`;

/** Unload the model: a fresh device frees every buffer of the old one at once. */
async function dropSession(): Promise<void> {
  if (!session) return;
  const g = session.gpu;
  session.release();
  session = null;
  sessionKey = '';
  sessionSource = null;
  sessionFiles = null;
  modelInfo = null;
  adapterOrigin = null;
  valueHead = null;
  baseModified = false;
  g.destroy();
  gpuPromise = null;
}

/** The format a key names when only the model matters (its tokenizer). */
const F32: ModelFormat = { quantizationBit: null };

async function ensureSession(source: ModelSource, format: ModelFormat, onProgress?: (d: number, t: number, w: string) => void, pristine = false): Promise<Session> {
  const key = keyOf(source, format);
  if (session && key === sessionKey && !(pristine && baseModified)) return session;
  await dropSession();
  const g = await gpu();
  const files = await modelFiles(source);
  const s = await Session.open(g, files, { quantizationBit: format.quantizationBit, f16: !!format.f16 && g.caps.f16, ...(onProgress ? { onProgress } : {}) });
  session = s;
  baseModified = false;
  sessionKey = key;
  sessionSource = source;
  sessionFiles = files;
  modelInfo = await describeModel(s, files, source.id);
  return s;
}

/** The base format a config trains with: quantized, or the f16 tier as the engine decides it (precision.ts). */
async function formatOf(c: CrucibleConfig): Promise<{ format: ModelFormat; note: string | null }> {
  const q = c.quantization_bit === 4 || c.quantization_bit === 8 ? c.quantization_bit : null;
  const p = basePrecision(c, (await gpu()).caps);
  return { format: { quantizationBit: q, f16: p.f16 }, note: p.note };
}

function parseSettings(settings: Settings): CrucibleConfig {
  // the dataset is chosen apart from the settings (and set per run); name one for the checks
  const { config } = configFromObject({ dataset: 'app_dataset', ...settings }, { source: 'settings' });
  return config;
}

/** Where the app's dataset is read, with this session's Hub settings. */
const dataFiles = (source: DataSource) => appDataFiles(source, { endpoint: hubEndpoint, ...(hubToken ? { token: hubToken } : {}), cache: hubDataCache });

/** A dataset's format, as buildDataset will read it (a Hub dataset's is not fetched for this). */
async function describeData(source: DataSource): Promise<DataFormat | null> {
  if (source.kind === 'hub') return null;
  const { files, dataset, dir } = dataFiles(source);
  return describeDataset(files, dataset, dir);
}

let hubEndpoint = HUB;
let hubToken: string | undefined;
function refuseOffline(what: string): void {
  if (resolveOffline()) throw new HubError('offline', `Offline mode is on: ${what}. Stored models still work; switch offline mode off to use the Hub.`);
}
/** Hub dataset files fetched in this session (preview, then training, read them once). */
const hubDataCache = new Map<string, Promise<Uint8Array>>();

function dataConfig(c: CrucibleConfig, dataset: string, dir: string): CrucibleConfig & { shuffle: boolean } {
  return { ...c, dataset: [dataset], dataset_dir: dir, eval_dataset: null, shuffle: !c.disable_shuffling };
}

/** Uploads live in a virtual "upload/" folder: name the file as the user knows it. */
const plainPaths = (m: string) => m.replace(/\bupload\//g, '');

function errorText(e: unknown): string {
  return plainPaths(e instanceof DataError || e instanceof Error ? e.message : String(e));
}

/** The files of a Hub repo the engine reads: top-level configs, tokenizer, safetensors. */
const WANTED = /^(config\.json|generation_config\.json|tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|chat_template\.jinja|model\.safetensors\.index\.json|[^/]*\.safetensors)$/;
const wantedFile = (f: { path: string }) => WANTED.test(f.path);

let downloadAbort: AbortController | null = null;

const hubOpts = () => ({ endpoint: hubEndpoint, ...(hubToken ? { token: hubToken } : {}) });

const api: EngineApi = {
  async setHub(endpoint, token) {
    hubEndpoint = (endpoint || HUB).replace(/\/+$/, '');
    hubToken = token || undefined;
  },

  async setOffline(offline) {
    setOfflineMode(offline);
  },

  async searchModels(query, limit = 20) {
    refuseOffline('the Hub is not searched');
    const out = [];
    for await (const m of listModels({
      search: { query, tags: ['safetensors'] },
      additionalFields: ['safetensors'],
      limit,
      sort: 'downloads',
      hubUrl: hubEndpoint,
      ...(hubToken ? { accessToken: hubToken } : {}),
    })) {
      const st = (m as { safetensors?: { total?: number } }).safetensors;
      out.push({ id: m.name, downloads: m.downloads, likes: m.likes, gated: !!m.gated, ...(st?.total ? { params: st.total } : {}) });
    }
    return out;
  },

  async searchDatasets(query, limit = 20) {
    refuseOffline('the Hub is not searched');
    const out = [];
    for await (const d of listDatasets({ search: { query }, limit, hubUrl: hubEndpoint, ...(hubToken ? { accessToken: hubToken } : {}) })) {
      out.push({ id: d.name, downloads: d.downloads, likes: d.likes });
    }
    return out;
  },

  async hubModel(id): Promise<HubModelDetails> {
    const r = await resolveModel(id, { ...hubOpts(), store: store() });
    const files = r.files.filter(wantedFile);
    let config: Record<string, unknown> | null = null;
    if (files.some((f) => f.path === 'config.json')) {
      try {
        config = JSON.parse(new TextDecoder().decode(await fetchBytes(`${hubEndpoint}/${id}/resolve/${r.revision}/config.json`)));
      } catch {
        config = null;
      }
    }
    return { id, revision: r.revision, size: files.reduce((a, f: HubFile) => a + f.size, 0), files: files.map((f) => f.path), config };
  },

  async download(id, onProgress) {
    downloadAbort?.abort();
    const abort = new AbortController();
    downloadAbort = abort;
    let last: DownloadEvent = { file: '', loaded: 0, total: 0, bytesPerSecond: 0, etaSeconds: Infinity };
    await downloadModel(id, {
      ...hubOpts(),
      store: store(),
      files: wantedFile,
      signal: abort.signal,
      onProgress: (p) => notify(onProgress, (last = { file: p.file, loaded: p.loaded, total: p.total, bytesPerSecond: p.bytesPerSecond, etaSeconds: p.etaSeconds })),
      onRetry: (retry) => notify(onProgress, { ...last, retry }),
    });
    const info = (await api.listStored()).find((m) => m.id === id);
    if (!info) throw new Error(`${id}: downloaded, but not found in the store`);
    return info;
  },

  async cancelDownload() {
    downloadAbort?.abort();
  },

  async listStored(): Promise<StoredModelSummary[]> {
    return (await listStoredModels(store())).map((m) => ({ id: m.id, size: m.size, partialBytes: m.partialBytes, complete: m.revisions.some((r) => r.complete) }));
  },

  async deleteStored(id) {
    if (sessionSource?.kind === 'hub' && sessionSource.id === id) {
      if (training) throw new Error(`${id} is training: stop the run first`);
      await exclusive(dropSession);
    }
    return deleteStoredModel(store(), id);
  },

  listRuns: () => listRuns(),

  async deleteRun(id) {
    if (training && currentRun === id) throw new Error('this run is training: stop it first');
    await deleteRun(id);
  },

  async renameRun(id, name) {
    const clean = name.trim();
    if (!clean) throw new Error('a run name cannot be empty');
    if (training && currentRun === id && renameCurrent) return renameCurrent(clean);
    if (!(await updateRun(id, (r) => ({ ...r, name: clean })))) throw new Error(`run ${id} is not stored any more`);
  },

  async runData(id) {
    const d = await getRunData(id);
    if (!d) return null;
    const out: Record<string, Uint8Array> = {};
    for (const [k, v] of Object.entries(d)) out[k] = typeof v === 'string' ? new TextEncoder().encode(v) : v;
    return out;
  },

  async gpuInfo(): Promise<GpuInfo | GpuMissing> {
    try {
      const g = await gpu();
      return { ok: true, caps: g.caps };
    } catch (e) {
      return { ok: false, message: errorText(e) };
    }
  },

  async state(): Promise<EngineState> {
    const g = gpuPromise ? await gpuPromise.catch(() => null) : null;
    return {
      model: modelInfo,
      modelSource: sessionSource,
      hasAdapter: !!session?.adapter,
      adapterOrigin: session?.adapter ? adapterOrigin : null,
      weightsTrained: !!session && baseModified,
      training,
      memory: { allocated: g?.allocated ?? 0, peak: g?.peakAllocated ?? 0 },
    };
  },

  openModel(source, format, onProgress) {
    return exclusive(async () => {
      await ensureSession(source, format, onProgress ? (d, t, w) => notify(onProgress, d, t, w) : undefined);
      return modelInfo!;
    });
  },

  async describeData(source) {
    try {
      return await describeData(source);
    } catch (e) {
      throw new Error(errorText(e));
    }
  },

  async modelConfig(source) {
    const files = await modelFiles(source);
    return JSON.parse(await files.readText('config.json')) as Record<string, unknown>;
  },

  preview(model, data, settings, n) {
    return exclusive(() => previewData(model, data, settings, n)).catch((e: unknown) => {
      throw new Error(errorText(e));
    });
  },

  train(start, onEvent) {
    if (training) return Promise.reject(new Error('a run is already training'));
    training = true;
    currentRun = start.runId;
    return exclusive(() => trainRun(start, onEvent)).finally(() => {
      training = false;
      currentRun = null;
      renameCurrent = null;
      trainAbort = null;
      stopKind = null;
    });
  },

  async pause() {
    if (!training) return;
    stopKind = 'pause';
    trainAbort?.abort();
  },

  async stop() {
    if (!training) return;
    stopKind ??= 'stop';
    trainAbort?.abort();
  },

  chat(messages, gen, onText) {
    const abort = new AbortController();
    chatAbort?.abort();
    chatAbort = abort;
    return exclusive(async (): Promise<ChatResult> => {
      if (!session) throw new Error('load a model first');
      const t0 = performance.now();
      let aborted = false;
      abort.signal.addEventListener('abort', () => (aborted = true));
      const system = gen.system?.trim() ? gen.system : undefined;
      const msgs = messages.filter((m) => m.role !== 'system');
      try {
        const r = await session.chat(
          msgs,
          {
            maxNewTokens: gen.maxNewTokens,
            temperature: gen.temperature,
            topP: gen.topP,
            topK: gen.topK,
            repetitionPenalty: gen.repetitionPenalty,
            ...(gen.seed !== undefined ? { seed: gen.seed } : {}),
            ...(system !== undefined ? { system } : {}),
            useAdapter: gen.useAdapter,
            signal: abort.signal,
          },
          (piece) => {
            notify(onText, piece);
            return !aborted;
          },
        );
        const secs = (performance.now() - t0) / 1000;
        return { ...r, finishReason: aborted ? 'aborted' : r.finishReason, tokensPerSecond: r.completionTokens / Math.max(1e-3, secs) };
      } catch (e) {
        if (aborted) return { text: '', promptTokens: 0, completionTokens: 0, finishReason: 'aborted', tokensPerSecond: 0 };
        throw e;
      }
    });
  },

  async stopChat() {
    chatAbort?.abort();
  },

  exportAdapter() {
    return exclusive(async (): Promise<AdapterFiles> => {
      if (!session) throw new Error('load a model first');
      const base = sessionSource?.kind === 'hub' ? sessionSource.id : (sessionSource?.id ?? null);
      const files: AdapterFiles = await session.exportAdapter(base);
      if (valueHead) files['value_head.safetensors'] = valueHead.slice();
      return Comlink.transfer(files, [files['adapter_model.safetensors'], files['value_head.safetensors']].filter((b) => !!b).map((b) => b.buffer as ArrayBuffer));
    });
  },

  importAdapter(files, origin) {
    return exclusive(async () => {
      if (!session) throw new Error('load a model first');
      const w = files['adapter_model.safetensors'];
      const cfg = JSON.parse(files['adapter_config.json']) as { peft_type?: string };
      if (cfg.peft_type && cfg.peft_type !== 'LORA' && cfg.peft_type !== 'OFT') throw new Error(`adapter_config.json: peft_type ${cfg.peft_type} is not supported (LORA and OFT are)`);
      await session.loadAdapter(files['adapter_config.json'], { name: origin, size: w.length, read: async (o, n) => w.subarray(o, o + n) });
      adapterOrigin = origin;
      valueHead = files['value_head.safetensors'] ?? null;
    });
  },

  loadRunAdapter(runId) {
    return exclusive(async () => {
      if (!session) throw new Error('load a model first');
      const ck = await runCheckpoint(runId);
      if (!ck) throw new Error(`run ${runId} has no checkpoint`);
      const st = browserRunStore(runId);
      if (!(await st.exists(`${ck.dir}/adapter_model.safetensors`))) throw new Error(`run ${runId} trained no adapter (freeze / full fine-tuning)`);
      const w = await st.read(`${ck.dir}/adapter_model.safetensors`);
      const cfg = new TextDecoder().decode(await st.read(`${ck.dir}/adapter_config.json`));
      await session.loadAdapter(cfg, { name: `${runId}/${ck.dir}`, size: w.length, read: async (o, n) => w.subarray(o, o + n) });
      adapterOrigin = `run ${runId} (${ck.dir})`;
      valueHead = await runValueHead(runId, ck.dir);
    });
  },

  mergedModel(options) {
    return exclusive(async (): Promise<MergedModel> => {
      if (!session || !sessionFiles) throw new Error('load a model first');
      const size = await checkpointBytes(sessionFiles);
      const mem = ((navigator as Navigator & { deviceMemory?: number }).deviceMemory ?? 4) * 2 ** 30;
      const limit = Math.min(1.9 * 2 ** 30, mem / 3);
      if (size * 2 > limit) {
        throw new Error(`the merged model needs about ${(size * 2 / 2 ** 30).toFixed(1)} GiB of memory in this tab (limit ${(limit / 2 ** 30).toFixed(1)} GiB): export the adapter and merge it with the CLI (crucible export)`);
      }
      const inMemory = (bytes: Uint8Array, name: string) => ({ name, size: bytes.length, read: async (o: number, n: number) => bytes.subarray(o, o + n) });
      let sources: MergeSources = { base: sessionFiles, adapters: [] };
      if (session.adapter) {
        const a = await session.exportAdapter(null);
        sources = { ...sources, adapters: [await readAdapter(a['adapter_config.json'], inMemory(a['adapter_model.safetensors'], 'adapter_model.safetensors'))] };
      } else if (lastTrained && (lastTrained.finetuningType === 'full' || lastTrained.finetuningType === 'freeze')) {
        const ck = await runCheckpoint(lastTrained.runId);
        if (!ck) throw new Error('the last run has no checkpoint');
        const trained = await browserRunStore(lastTrained.runId).read(`${ck.dir}/trained_weights.safetensors`);
        sources = { ...sources, trained: await openSafetensors(inMemory(trained, 'trained_weights.safetensors')) };
      } else throw new Error('there is nothing to merge: train or import an adapter first');
      const out: Record<string, Uint8Array> = {};
      const write = async (path: string, data: Uint8Array | string) => void (out[path] = typeof data === 'string' ? new TextEncoder().encode(data) : data);
      // without a shard size, one model.safetensors: the download is one file per tensor file
      await exportMerged(sources, { write, maxBytes: options?.shardGB ? options.shardGB * 1e9 : Infinity });
      if (valueHead) out[VALUE_HEAD_FILE] = valueHead.slice();
      const bytes = Object.values(out).reduce((a, b) => a + b.length, 0);
      return Comlink.transfer({ files: out, bytes }, Object.values(out).map((b) => b.buffer as ArrayBuffer));
    });
  },

  benchmark(model, settings, steps, onStatus) {
    if (training) return Promise.reject(new Error('training is running: benchmark after it'));
    return exclusive(() => benchmarkRun(model, settings, steps, onStatus));
  },

  predict(req, onProgress) {
    if (training) return Promise.reject(new Error('training is running: predict after it'));
    const abort = new AbortController();
    predictAbort?.abort();
    predictAbort = abort;
    return exclusive(() => predictRun(req, abort.signal, onProgress)).catch((e: unknown) => {
      throw new Error(errorText(e));
    });
  },

  async stopPredict() {
    predictAbort?.abort();
  },

  async loadedUrls() {
    return performance.getEntriesByType('resource').map((e) => e.name).concat([self.location.href]);
  },
};

async function previewData(model: ModelSource, data: DataSource, settings: Settings, n: number): Promise<PreviewResult> {
  const c = parseSettings(settings);
  const files = await modelFiles(model);
  const tokenizer = session && sessionSource && keyOf(sessionSource, F32) === keyOf(model, F32) ? session.tokenizer : await loadModelTokenizer(files);
  const { files: dataAccess, dataset, dir } = dataFiles(data);
  const deps: DataDeps = { tokenizer, ...dataAccess };
  const cfg = dataConfig(c, dataset, dir);
  const built = await buildDataset({ ...cfg, max_samples: c.max_samples ?? undefined, shuffle: false }, deps);
  const examples = (await previewExamples(cfg, deps, n)) as PreviewExample[];
  return {
    examples: examples.map(exampleView),
    count: built.train.length,
    evalCount: built.eval.length,
    template: built.stats.template,
    warnings: built.stats.warnings.map(plainPaths),
  };
}

/** The checkpoint whose model a finished run left: the best one with load_best_model_at_end (as output_dir of `crucible train`), else the newest. */
async function runCheckpoint(runId: string): Promise<{ dir: string } | null> {
  const r = await getRun(runId);
  if (r?.status === 'done' && r.settings.load_best_model_at_end === true && r.bestCheckpoint && (await browserRunStore(runId).exists(`${r.bestCheckpoint}/trainer_state.json`))) return { dir: r.bestCheckpoint };
  return latestCheckpoint(runId);
}

async function runValueHead(runId: string, dir: string): Promise<Uint8Array | null> {
  const st = browserRunStore(runId);
  const path = `${dir}/${VALUE_HEAD_FILE}`;
  return (await st.exists(path)) ? st.read(path) : null;
}

/** A run of this browser as a model folder (stage ppo's reward_model run:<id>): its newest checkpoint. */
async function runModelFiles(runId: string): Promise<ModelFiles> {
  const ck = await latestCheckpoint(runId);
  if (!ck) throw new Error(`reward model run ${runId} has no checkpoint (deleted?): choose another rm run`);
  const st = browserRunStore(runId);
  const at = (p: string) => `${ck.dir}/${p}`;
  return {
    name: `run ${runId} (${ck.dir})`,
    exists: (p) => st.exists(at(p)),
    readText: async (p) => new TextDecoder().decode(await st.read(at(p))),
    open: (p) => storedSource(st, at(p)),
  };
}

/** A run of the engine's train job: the model this worker holds, the run's checkpoints and history in IndexedDB. */
async function trainRun(start: TrainStart, onEvent: (e: TrainEvent) => void): Promise<TrainResult> {
  const c = parseSettings(start.settings);
  const emit = (e: TrainEvent) => notify(onEvent, e);
  const status = (s: string) => emit({ kind: 'status', status: s });
  let record: RunRecord | undefined = start.resume ? await getRun(start.runId) : undefined;
  const fail = async (e: unknown) => {
    const msg = errorText(e);
    if (record) await updateRun(record.id, (r) => ({ ...r, status: 'failed', error: msg }));
    throw new Error(msg);
  };
  try {
    status(`loading ${start.model.id}`);
    const { format, note } = await formatOf(c);
    if (note) status(note);
    const s = await ensureSession(start.model, format, (d, t) =>
      status(`loading ${start.model.id}: ${d}/${t} tensors`),
    true);
    status('tokenizing the dataset');
    const { files, dataset, dir } = dataFiles(start.data);
    // steps after the checkpoint are trained again: their logs go
    const resumed = start.resume ? await latestCheckpoint(start.runId) : null;
    trainAbort = new AbortController();
    if (stopKind) trainAbort.abort();
    const g = s.gpu;
    // GEMM tiles tuned on real GPUs at the run's first step, remembered per adapter in IndexedDB
    await browserGemmTuning(g, { notice: status });
    let total = 0;
    let lastLoss: number | undefined;
    let lastEval: number | undefined;
    let pending: Promise<void> = Promise.resolve();
    const persist = () => {
      const snap = record!;
      pending = pending.then(() => saveRun(snap)).catch(() => undefined);
    };
    let pendingName: string | null = null;
    renameCurrent = async (name) => {
      if (!record) return void (pendingName = name);
      record = { ...record, name };
      persist();
      await pending;
    };
    await trainModel(dataConfig(c, dataset, dir), {
      session: s,
      data: files,
      store: browserRunStore(start.runId),
      resumeFrom: resumed?.dir ?? null,
      openModel: (id) => (id.startsWith(REWARD_RUN) ? runModelFiles(id.slice(REWARD_RUN.length)) : modelFiles({ kind: 'hub', id })),
      hooks: {
        signal: trainAbort.signal,
        onStatus: status,
        onStart: async (run) => {
          total = run.totalSteps;
          if (record && start.resume) record = { ...record, log: record.log.filter((l) => l.current_steps <= (resumed?.step ?? 0)), step: resumed?.step ?? 0 };
          if (!record) {
            record = {
              id: start.runId,
              name: pendingName ?? start.name ?? `${dataset} on ${start.model.id}`,
              createdAt: Date.now(),
              updatedAt: Date.now(),
              status: 'running',
              model: { kind: start.model.kind, id: start.model.id },
              dataset: { kind: start.data.kind, name: dataset },
              settings: start.settings,
              log: [],
              checkpoints: [],
              totalSteps: total,
              step: 0,
            };
            if (start.data.kind === 'upload') await saveRunData(start.runId, start.data.files);
          }
          record = { ...record, status: 'running', totalSteps: total, error: undefined };
          await saveRun(record);
          if (!resumed) status(`training ${run.examples} examples, ${total} steps`);
          emit({ kind: 'start', start: { totalSteps: total, examples: run.examples, evalExamples: run.evalExamples, step: record.step, log: record.log } });
          adapterOrigin = `run ${start.runId}`;
          valueHead = null;
          if (c.finetuning_type === 'full' || c.finetuning_type === 'freeze') baseModified = true;
        },
        onLog: (rec) => {
          if (rec.loss !== undefined) lastLoss = rec.loss;
          if (rec.eval_loss !== undefined) lastEval = rec.eval_loss;
          record = { ...record!, log: [...record!.log, rec], step: rec.current_steps, peakMemory: Math.max(record!.peakMemory ?? 0, g.peakAllocated) };
          persist();
          emit({ kind: 'log', log: rec });
          emit({ kind: 'memory', memory: { allocated: g.allocated, peak: g.peakAllocated } });
        },
        onCheckpoint: (ckDir, step, best) => {
          // the best model's checkpoint is kept past save_total_limit (load_best_model_at_end loads it at the end)
          const limit = c.save_total_limit ?? 2;
          const saved = [...record!.checkpoints.filter((x) => x.step < step), { dir: ckDir, step }];
          const bestStep = saved.find((x) => x.dir === best)?.step ?? null;
          const dropped = new Set(checkpointsToDelete(saved.map((x) => x.step), limit, bestStep));
          record = { ...record!, checkpoints: saved.filter((x) => !dropped.has(x.step)), step, ...(best ? { bestCheckpoint: best } : {}) };
          persist();
          pending = pending.then(() => pruneCheckpoints(start.runId, limit, { best: best ?? null })).catch(() => undefined);
          emit({ kind: 'checkpoint', checkpoint: { dir: ckDir, step } });
        },
      },
    });
    await pending;
    lastTrained = { runId: start.runId, finetuningType: c.finetuning_type };
    const step = record!.step;
    const finalStatus = stopKind === 'pause' && step < total ? 'paused' : stopKind === 'stop' && step < total ? 'stopped' : 'done';
    record = { ...record!, status: finalStatus };
    await saveRun(record);
    // the reward model's value head is beside the adapter in the checkpoint the run ends with
    const last = c.stage === 'rm' ? await runCheckpoint(start.runId) : undefined;
    if (last) valueHead = await runValueHead(start.runId, last.dir);
    status(finalStatus === 'done' ? `done: ${step} steps` : `${finalStatus} at step ${step}/${total}`);
    return { runId: start.runId, status: finalStatus, step, totalSteps: total, ...(lastLoss !== undefined ? { loss: lastLoss } : {}), ...(lastEval !== undefined ? { evalLoss: lastEval } : {}) };
  } catch (e) {
    return fail(e);
  }
}

/**
 * LLaMA-Factory's do_predict with predict_with_generate on the chosen dataset (as eval_dataset),
 * with the loaded model and its adapter (switched off for useAdapter false), greedy unless the
 * settings sample; nothing is written (the page shows and downloads the results).
 */
async function predictRun(req: PredictRequest, signal: AbortSignal, onProgress?: (done: number, total: number) => void): Promise<PredictOutcome> {
  const c = parseSettings(req.settings);
  if (c.stage !== 'sft') throw new Error(`predict generates answers of sft data; the form's stage is ${c.stage}`);
  const s = await ensureSession(req.model, (await formatOf(c)).format);
  const { files, dataset, dir } = dataFiles(req.data);
  const cfg = { ...dataConfig(c, dataset, dir), dataset: null, eval_dataset: [dataset], val_size: 0, max_samples: req.maxSamples, predict_with_generate: true };
  const data = await buildDataset(cfg, { tokenizer: s.tokenizer, ...files });
  const useAdapter = req.useAdapter && !!s.adapter;
  const run = () =>
    runPredict(s.model, s.tokenizer, data.eval as LmExample[], {
      maxNewTokens: req.maxNewTokens,
      temperature: c.do_sample ? c.temperature : 0,
      topP: c.top_p,
      topK: c.top_k,
      repetitionPenalty: c.repetition_penalty,
      seed: c.seed,
      stopIds: data.template.stopIds,
      batchSize: c.per_device_eval_batch_size,
      skipSpecialTokens: c.skip_special_tokens,
    }, { signal, ...(onProgress ? { onProgress: (d: number, t: number) => notify(onProgress, d, t) } : {}) });
  const result = useAdapter || !s.adapter ? await run() : await s.adapter.withDisabled(run);
  return { ...result, adapter: useAdapter ? adapterOrigin : null };
}

/** The engine's benchmark on the model this worker holds (its adapter is kept), at most 256 tokens a row. */
async function benchmarkRun(model: ModelSource, settings: Settings, steps: number, onStatus?: (s: string) => void): Promise<BenchResult> {
  const c = parseSettings(settings);
  notify(onStatus, `loading ${model.id}`);
  const s = await ensureSession(model, (await formatOf(c)).format);
  return benchmarkSession(s, { ...c, model_name_or_path: model.id, cutoff_len: Math.max(8, Math.min(c.cutoff_len, 256)) }, { steps, warmup: 1, onStatus: (m) => notify(onStatus, m) });
}

Comlink.expose(api);
