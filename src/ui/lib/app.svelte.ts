// The app's state (Svelte 5 runes) and the actions that change it. Components read `app` and call
// these actions; every GPU, storage and Hub operation goes through the engine worker.

import type { RunRecord } from '../../train/store-browser';
import type { LogRecord } from '../../train/trainer';
import type {
  BenchResult,
  DataSource,
  GpuInfo,
  GpuMissing,
  ModelInfo,
  ModelSource,
  PreviewResult,
  StoredModelSummary,
  TrainEvent,
} from '../../../workers/api';
import { DEMO_MODEL } from '../../config/llamafactory-export';
import { kindOf, type DataFormat, type DataKind } from '../../data/describe';
import { demoDatasetFor, infoEntry, stageFits, stageFor, withInfoEntry, type FormatChoice } from './data-format';
import { cb, getEngine } from './engine';
import { etaSeconds, type StepMark } from './eta';
import { errorText } from './format';
import { adapterRunFor, cleanRunName, modelShortName, runName } from './run-names';
import { loadPersisted, modelFormat, savePersisted, trainsAdapter, withStageKeys, type Persisted, type Settings } from './settings';
import { checkSettings } from './validate';
import { LOG_LINES, logLine, withLine } from './run-log';

export type ModelChoice = { kind: 'demo' } | { kind: 'hub'; id: string };
export type DataChoice =
  | { kind: 'demo'; dataset: string }
  /** `format`: the user's format instead of the detected one (written as a dataset_info.json entry). */
  | { kind: 'upload'; dataset: string; files: Record<string, Uint8Array>; format?: FormatChoice }
  | { kind: 'hub'; repo: string };

export interface RunView {
  id: string;
  /** The run's settings (its stage decides the charts). */
  settings: Settings;
  status: RunRecord['status'] | 'starting' | 'idle';
  step: number;
  total: number;
  loss?: number;
  evalLoss?: number;
  tokensPerSecond?: number;
  remaining?: number;
  elapsed?: number;
  log: LogRecord[];
  /** The live log panel's lines: engine messages and log records. */
  lines: string[];
  /** When each step of this session's training arrived (the ETA's pace). */
  marks: StepMark[];
  message: string;
  /** 'status': the engine's progress line, replaced by the next step; 'action': what the user asked for. */
  messageKind: 'status' | 'action';
  /** Measured during this session's training only: a run shown from the history has none. */
  memory: { allocated: number; peak: number };
  error?: string;
}

export interface GenSettings {
  maxNewTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  system: string;
  useAdapter: boolean;
  compare: boolean;
}

export const DEMO_MODEL_ID = DEMO_MODEL;

export const demoModelBase = () => new URL('./demo/model/', document.baseURI).href;
export const demoDataBase = () => new URL('./demo/data/', document.baseURI).href;

const persisted: Persisted = loadPersisted();

export const app = $state({
  gpu: null as GpuInfo | GpuMissing | null,
  model: (persisted.model ?? { kind: 'demo' }) as ModelChoice,
  modelInfo: null as ModelInfo | null,
  modelConfig: null as Record<string, unknown> | null,
  modelError: '',
  demoDatasets: [] as string[],
  /** The demo data folder's dataset_info.json entries. */
  demoInfo: {} as Record<string, Record<string, unknown>>,
  data: (persisted.data?.kind === 'upload' ? { kind: 'demo', dataset: 'identity' } : (persisted.data ?? { kind: 'demo', dataset: 'identity' })) as DataChoice,
  /** The chosen dataset's declared or detected format (null: unknown, e.g. a Hub dataset). */
  dataFormat: null as DataFormat | null,
  /** Why the stage or the demo dataset changed by itself. */
  dataNote: '',
  preview: null as PreviewResult | null,
  previewError: '',
  previewBusy: false,
  settings: persisted.settings as Settings,
  stored: [] as StoredModelSummary[],
  runs: [] as RunRecord[],
  run: null as RunView | null,
  hasAdapter: false,
  adapterOrigin: null as string | null,
  /** The run whose adapter is chosen for chat and export: loaded on first use after a reload. */
  adapterRun: (persisted.adapterRun ?? null) as string | null,
  weightsTrained: false,
  generation: {
    maxNewTokens: 64,
    temperature: 0,
    topP: 0.9,
    topK: 50,
    repetitionPenalty: 1.1,
    system: '',
    useAdapter: true,
    compare: false,
    ...(persisted.generation ?? {}),
  } as GenSettings,
  hubEndpoint: persisted.hubEndpoint ?? '',
  /** Offline mode (the browser's HF_HUB_OFFLINE): stored models only, the Hub is never contacted. */
  hubOffline: persisted.hubOffline ?? false,
  /** The training setup's Advanced group is open (an error about the template opens it). */
  advancedOpen: false,
  bench: null as BenchResult | null,
  benchStatus: '',
  online: typeof navigator !== 'undefined' ? navigator.onLine : true,
});

/** Keep settings, choices and generation settings across reloads. */
export function persist(): void {
  const data = app.data.kind === 'upload' ? { kind: 'upload' as const, dataset: app.data.dataset } : $state.snapshot(app.data);
  savePersisted({
    settings: $state.snapshot(app.settings),
    model: $state.snapshot(app.model),
    data: data as Persisted['data'],
    generation: $state.snapshot(app.generation) as unknown as Record<string, unknown>,
    hubEndpoint: app.hubEndpoint,
    hubOffline: app.hubOffline,
    ...(app.adapterRun ? { adapterRun: app.adapterRun } : {}),
  });
}

export function modelSource(choice: ModelChoice = app.model): ModelSource {
  return choice.kind === 'demo' ? { kind: 'url', id: DEMO_MODEL_ID, base: demoModelBase() } : { kind: 'hub', id: choice.id };
}

export function dataSource(choice: DataChoice = app.data): DataSource {
  if (choice.kind === 'demo') return { kind: 'url', base: demoDataBase(), dataset: choice.dataset };
  if (choice.kind === 'upload') {
    const files = $state.snapshot(choice.files) as Record<string, Uint8Array>;
    const detected = app.dataFormat;
    if (!choice.format || !detected) return { kind: 'upload', files, dataset: choice.dataset };
    const entry = infoEntry(choice.dataset, $state.snapshot(detected) as DataFormat, choice.format);
    return { kind: 'upload', files: withInfoEntry(files, choice.dataset, entry), dataset: choice.dataset };
  }
  return { kind: 'hub', repo: choice.repo };
}

export const modelLabel = (m: ModelChoice = app.model) => (m.kind === 'demo' ? 'Demo model (embedded)' : m.id);

const sameModel = (a: { kind: string; id: string }, b: ModelSource) => a.kind === b.kind && a.id === b.id;

// ---- GPU -------------------------------------------------------------------------------------

export async function detectGpu(): Promise<void> {
  if (!('gpu' in navigator)) {
    app.gpu = {
      ok: false,
      message:
        'This browser has no WebGPU. Use a current Chrome or Edge (113+), Safari 26+, or Firefox with dom.webgpu.enabled; the page must be served over https or from localhost.',
    };
    return;
  }
  app.gpu = await getEngine().gpuInfo();
}

export async function runBenchmark(): Promise<void> {
  app.bench = null;
  app.benchStatus = 'starting';
  try {
    app.bench = await getEngine().benchmark(modelSource(), $state.snapshot(app.settings), 3, cb((s: string) => {
        app.benchStatus = s;
      }));
    app.benchStatus = '';
    await refreshEngineState();
  } catch (e) {
    app.benchStatus = `Benchmark failed: ${errorText(e)}`;
  }
}

// ---- model -----------------------------------------------------------------------------------

export async function loadModelConfig(): Promise<void> {
  app.modelError = '';
  app.modelConfig = null;
  try {
    app.modelConfig = await getEngine().modelConfig(modelSource());
  } catch (e) {
    app.modelError = errorText(e);
  }
}

export function chooseModel(m: ModelChoice): void {
  app.model = m;
  persist();
  void loadModelConfig();
  void refreshPreview();
}

export async function refreshStored(): Promise<void> {
  try {
    app.stored = await getEngine().listStored();
  } catch {
    app.stored = [];
  }
}

export async function refreshEngineState(): Promise<void> {
  const s = await getEngine().state();
  app.modelInfo = s.model;
  app.hasAdapter = s.hasAdapter;
  app.adapterOrigin = s.adapterOrigin;
  app.weightsTrained = s.weightsTrained;
}

// ---- data ------------------------------------------------------------------------------------

export async function loadDemoDatasets(): Promise<void> {
  try {
    const res = await fetch(new URL('dataset_info.json', demoDataBase()));
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const info = (await res.json()) as Record<string, Record<string, unknown>>;
    app.demoInfo = info;
    app.demoDatasets = Object.keys(info);
    if (app.data.kind === 'demo' && !app.demoDatasets.includes(app.data.dataset) && app.demoDatasets.length) {
      app.data = { kind: 'demo', dataset: app.demoDatasets.includes('identity') ? 'identity' : app.demoDatasets[0]! };
    }
  } catch {
    app.demoDatasets = [];
  }
}

/** The kind of data the current choice trains (its format choice, else what was declared or detected). */
export function dataKind(): DataKind | null {
  if (app.data.kind === 'upload' && app.data.format) return app.data.format.kind;
  return app.dataFormat?.kind ?? null;
}

/** A stage that cannot train the chosen data is switched to one that can (dpo, kto or sft). */
function fitStageToData(): void {
  const kind = dataKind();
  if (!kind || stageFits(app.settings.stage, kind)) return;
  const stage = stageFor(kind);
  app.dataNote = `Stage set to ${stage}: ${app.settings.stage} cannot train this dataset.`;
  app.settings = withStageKeys({ ...app.settings, stage });
  persist();
}

/** Read the chosen dataset's format, fit the stage to it, and preview it. */
export async function refreshData(): Promise<void> {
  const d = app.data;
  const raw: DataChoice = d.kind === 'upload' ? { kind: 'upload', dataset: d.dataset, files: d.files } : d;
  try {
    const f = await getEngine().describeData(dataSource(raw));
    if (app.data !== d) return;
    app.dataFormat = f;
  } catch {
    // unreadable: the preview says why
    if (app.data !== d) return;
    app.dataFormat = null;
  }
  fitStageToData();
  await refreshPreview();
}

export function chooseData(d: DataChoice): void {
  app.data = d;
  app.dataNote = '';
  persist();
  void refreshData();
}

/** Override an upload's detected format (null: back to the detected one). */
export function chooseFormat(format: FormatChoice | null): void {
  if (app.data.kind !== 'upload') return;
  const { kind, dataset, files } = app.data;
  app.data = format ? { kind, dataset, files, format } : { kind, dataset, files };
  app.dataNote = '';
  fitStageToData();
  void refreshPreview();
}

/** A new stage: its preference keys, and a demo dataset it can train. */
export function chooseStage(stage: string): void {
  app.settings = withStageKeys({ ...app.settings, stage });
  app.dataNote = '';
  persist();
  if (app.data.kind === 'demo') {
    const fit = demoDatasetFor(stage, app.demoInfo, app.data.dataset);
    if (fit !== app.data.dataset) {
      app.dataNote = `Demo dataset ${fit}: ${app.data.dataset} cannot train stage ${stage}.`;
      app.data = { kind: 'demo', dataset: fit };
      persist();
      void refreshData();
      return;
    }
  }
  void refreshPreview();
}

/** The kind of a demo dataset, from its dataset_info.json entry. */
export const demoKind = (name: string): DataKind | null => (app.demoInfo[name] ? kindOf(app.demoInfo[name]!) : null);

let previewSeq = 0;
export async function refreshPreview(): Promise<void> {
  const seq = ++previewSeq;
  app.previewBusy = true;
  app.previewError = '';
  try {
    const p = await getEngine().preview(modelSource(), dataSource(), $state.snapshot(app.settings), 3);
    if (seq === previewSeq) app.preview = p;
  } catch (e) {
    if (seq === previewSeq) {
      app.preview = null;
      app.previewError = errorText(e);
    }
  } finally {
    if (seq === previewSeq) app.previewBusy = false;
  }
}

// ---- training --------------------------------------------------------------------------------

/** The settings as the worker will read them: problems block Start. */
export const settingsCheck = () => checkSettings($state.snapshot(app.settings) as Settings);

/** Show the template control (an error asked to set `template`). */
export function revealTemplate(): void {
  app.advancedOpen = true;
  queueMicrotask(() => document.getElementById('f-template')?.focus());
}

export const isTraining = () => !!app.run && (app.run.status === 'running' || app.run.status === 'starting');

function newRunId(): string {
  const d = new Date();
  const stamp = `${d.getFullYear()}${String(d.getMonth() + 1).padStart(2, '0')}${String(d.getDate()).padStart(2, '0')}-${String(d.getHours()).padStart(2, '0')}${String(d.getMinutes()).padStart(2, '0')}${String(d.getSeconds()).padStart(2, '0')}`;
  return `run-${stamp}-${Math.random().toString(36).slice(2, 6)}`;
}

function onTrainEvent(e: TrainEvent): void {
  const r = app.run;
  if (!r) return;
  if (e.kind === 'start' && e.start) {
    r.total = e.start.totalSteps;
    r.step = e.start.step;
    r.log = e.start.log;
    r.lines = withLine(r.lines, `${e.start.examples} examples${e.start.evalExamples ? ` (+${e.start.evalExamples} eval)` : ''}, ${e.start.totalSteps} steps${e.start.step ? `, from step ${e.start.step}` : ''}`);
    r.status = 'running';
    void refreshRuns();
  } else if (e.kind === 'log' && e.log) {
    const l = e.log;
    r.log.push(l);
    r.lines = withLine(r.lines, logLine(l));
    r.step = l.current_steps;
    r.total = l.total_steps;
    if (l.loss !== undefined) r.loss = l.loss;
    if (l.eval_loss !== undefined) r.evalLoss = l.eval_loss;
    if (l.tokens_per_second > 0) r.tokensPerSecond = l.tokens_per_second;
    if (l.current_steps > (r.marks.at(-1)?.step ?? -1)) r.marks.push({ step: l.current_steps, at: performance.now() });
    r.remaining = etaSeconds(r.marks, r.total);
    r.elapsed = l.elapsed_time;
    r.status = 'running';
    // "resuming from checkpoint-10", "tokenizing ...": over once steps arrive
    if (r.messageKind === 'status') r.message = '';
  } else if (e.kind === 'status' && e.status) {
    r.lines = withLine(r.lines, e.status);
    r.message = e.status;
    r.messageKind = 'status';
  } else if (e.kind === 'memory' && e.memory) {
    r.memory = e.memory;
  } else if (e.kind === 'checkpoint' && e.checkpoint) {
    r.message = `saved ${e.checkpoint.dir}`;
    r.lines = withLine(r.lines, r.message);
    r.messageKind = 'action';
  }
}

async function train(runId: string, data: DataSource, settings: Settings, resume: boolean, name: string, prior: LogRecord[] = []): Promise<void> {
  app.run = {
    id: runId,
    settings,
    status: 'starting',
    step: prior.at(-1)?.current_steps ?? 0,
    total: prior.at(-1)?.total_steps ?? 0,
    log: [...prior],
    lines: prior.map(logLine),
    marks: [],
    message: resume ? 'resuming' : 'starting',
    messageKind: 'status',
    memory: { allocated: 0, peak: 0 },
  };
  const lastLoss = [...prior].reverse().find((l) => l.loss !== undefined);
  if (lastLoss) app.run.loss = lastLoss.loss;
  try {
    const res = await getEngine().train({ runId, model: modelSource(), data, settings, resume, name }, cb(onTrainEvent));
    if (app.run?.id === runId) {
      app.run.status = res.status;
      app.run.step = res.step;
      app.run.total = res.totalSteps;
      if (app.run.messageKind === 'status') app.run.message = '';
    }
    // the session's adapter is this run's now
    if (trainsAdapter(settings)) {
      app.adapterRun = runId;
      persist();
    }
  } catch (e) {
    if (app.run?.id === runId) {
      app.run.status = 'failed';
      app.run.error = errorText(e);
      app.run.lines = withLine(app.run.lines, `error: ${app.run.error}`);
      app.run.message = '';
    }
  }
  await Promise.all([refreshRuns(), refreshEngineState()]);
}

export async function startTraining(): Promise<void> {
  if (isTraining()) return;
  const settings = $state.snapshot(app.settings);
  const name = runName({ dataset: app.data.kind === 'hub' ? app.data.repo : app.data.dataset, model: modelShortName(app.model), settings, at: Date.now() });
  await train(newRunId(), dataSource(), settings, false, name);
}

export async function resumeRun(proxied: RunRecord): Promise<void> {
  if (isTraining()) return;
  const run = $state.snapshot(proxied) as RunRecord;
  let data: DataSource;
  if (run.dataset.kind === 'upload') {
    const files = await getEngine().runData(run.id);
    if (!files) {
      app.run = { id: run.id, settings: run.settings, status: 'failed', step: run.step, total: run.totalSteps, log: run.log, lines: [], marks: [], message: '', messageKind: 'status', memory: { allocated: 0, peak: 0 }, error: 'the uploaded dataset of this run is gone' };
      return;
    }
    data = { kind: 'upload', files, dataset: run.dataset.name };
  } else if (run.dataset.kind === 'url') data = { kind: 'url', base: demoDataBase(), dataset: run.dataset.name };
  else data = { kind: 'hub', repo: run.dataset.name };
  if (run.model.kind === 'hub') app.model = { kind: 'hub', id: run.model.id };
  else app.model = { kind: 'demo' };
  await train(run.id, data, run.settings, true, run.name, run.log);
}

function userAction(message: string): void {
  if (!app.run) return;
  app.run.message = message;
  app.run.messageKind = 'action';
}

export async function pauseTraining(): Promise<void> {
  userAction('pausing after this step (saving a checkpoint)');
  await getEngine().pause();
}

export async function stopTraining(): Promise<void> {
  userAction('stopping after this step (saving a checkpoint)');
  await getEngine().stop();
}

export async function refreshRuns(): Promise<void> {
  try {
    app.runs = await getEngine().listRuns();
  } catch {
    app.runs = [];
  }
}

/** A run left 'running' by a closed tab is interrupted: it can resume from its last checkpoint. */
export function runStatus(r: RunRecord): RunRecord['status'] {
  if (r.status === 'running' && !(isTraining() && app.run?.id === r.id)) return 'interrupted';
  return r.status;
}

export async function deleteRun(id: string): Promise<void> {
  await getEngine().deleteRun(id);
  if (app.run?.id === id) app.run = null;
  if (app.adapterRun === id) {
    app.adapterRun = null;
    persist();
  }
  await refreshRuns();
}

/** A new display name, kept by the worker (which holds the record of a training run). */
export async function renameRun(id: string, name: string): Promise<void> {
  const clean = cleanRunName(name);
  if (!clean) throw new Error('a run name cannot be empty');
  await getEngine().renameRun(id, clean);
  await refreshRuns();
}

/** The base format of these settings on this page's GPU (quantized, f16 tier or f32). */
export const formatFor = (s: Settings) => modelFormat(s, app.gpu?.ok ? app.gpu.caps : null);

export async function useRunAdapter(proxied: RunRecord): Promise<void> {
  const run = $state.snapshot(proxied) as RunRecord;
  if (run.model.kind === 'hub') app.model = { kind: 'hub', id: run.model.id };
  else app.model = { kind: 'demo' };
  await getEngine().openModel(modelSource(), formatFor(run.settings));
  await getEngine().loadRunAdapter(run.id);
  app.adapterRun = run.id;
  persist();
  await refreshEngineState();
}

/** After a reload: the last chosen (or newest) LoRA run of the chosen model is the adapter again, loaded when first used. */
export function restoreAdapterChoice(): void {
  const run = adapterRunFor(app.runs, app.adapterRun, modelSource());
  app.adapterRun = run?.id ?? null;
}

/** The chosen run's adapter, when the engine has none loaded yet (a reload): chat and export use it. */
export const pendingAdapterRun = (): RunRecord | undefined =>
  app.hasAdapter || app.weightsTrained || !app.adapterRun ? undefined : app.runs.find((r) => r.id === app.adapterRun && sameModel(r.model, modelSource()));

export async function ensureAdapter(): Promise<void> {
  const run = pendingAdapterRun();
  if (run) await useRunAdapter(run);
}

/** Restore the view of the newest run after a reload (chart and numbers). */
export function showRun(r: RunRecord): void {
  const last = r.log.filter((l) => l.loss !== undefined).at(-1);
  const lastEval = r.log.filter((l) => l.eval_loss !== undefined).at(-1);
  const tail = r.log.at(-1);
  app.run = {
    id: r.id,
    settings: r.settings,
    status: runStatus(r),
    step: r.step,
    total: r.totalSteps,
    log: r.log,
    lines: r.log.map(logLine).slice(-LOG_LINES),
    marks: [],
    message: '',
    messageKind: 'status',
    memory: { allocated: 0, peak: r.peakMemory ?? 0 },
    ...(last?.loss !== undefined ? { loss: last.loss } : {}),
    ...(lastEval?.eval_loss !== undefined ? { evalLoss: lastEval.eval_loss } : {}),
    ...(last?.tokens_per_second ? { tokensPerSecond: last.tokens_per_second } : {}),
    ...(tail ? { elapsed: tail.elapsed_time, remaining: tail.remaining_time } : {}),
    ...(r.error ? { error: r.error } : {}),
  };
}
