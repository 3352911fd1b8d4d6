// Runs in the browser: checkpoints (a RunStore per run) and the run history, in IndexedDB through
// idb-keyval. One database ("crucible-runs", object store "kv"), array keys:
//
//   ['run', runId]           RunRecord: settings, model, dataset, status, log history, checkpoints
//   ['file', runId, path]    Uint8Array: a checkpoint file (checkpoint-12/adapter_model.safetensors)
//   ['data', runId]          the run's uploaded dataset files, so a resumed run rebuilds its data
//
// A checkpoint is complete once its trainer_state.json exists (the trainer writes it last), so a
// tab closed mid-write resumes from the previous one. Works in a page and in a Web Worker.

import { createStore, del, get, getMany, keys, promisifyRequest, set, type UseStore } from 'idb-keyval';
import { StorageError } from '../files/errors';
import type { RunStore } from './store';
import { checkpointsToDelete } from './rotation';
import type { LogRecord } from './trainer';

export type RunStatus = 'running' | 'paused' | 'stopped' | 'done' | 'failed' | 'interrupted';

export interface RunRecord {
  id: string;
  /** Display name ("identity on demo-model, LoRA r8"). */
  name: string;
  createdAt: number;
  updatedAt: number;
  status: RunStatus;
  /** The model source as the app describes it (demo, stored Hub model id, ...). */
  model: { kind: string; id: string };
  /** The dataset as the app describes it. */
  dataset: { kind: string; name: string };
  /** LLaMA-Factory keys the run was started with. */
  settings: Record<string, unknown>;
  log: LogRecord[];
  /** Complete checkpoints, oldest first. */
  checkpoints: { dir: string; step: number }[];
  /** The best model's checkpoint so far (metric_for_best_model); load_best_model_at_end ends with its weights. */
  bestCheckpoint?: string;
  totalSteps: number;
  step: number;
  /** The most GPU memory the run's device held (bytes), measured at its logs. */
  peakMemory?: number;
  error?: string;
}

const DEFAULT_DB = 'crucible-runs';
const stores = new Map<string, UseStore>();

function db(name = DEFAULT_DB): UseStore {
  let s = stores.get(name);
  if (!s) {
    s = createStore(name, 'kv');
    stores.set(name, s);
  }
  return s;
}

const runK = (id: string) => ['run', id];
const fileK = (id: string, path: string) => ['file', id, path];
const dataK = (id: string) => ['data', id];
const prefixRange = (...prefix: IDBValidKey[]) => IDBKeyRange.bound(prefix, [...prefix, []]);

function cleanPath(path: string): string {
  const p = path.replace(/\\/g, '/').replace(/^\.?\/+/, '');
  if (!p || p.split('/').some((s) => s === '..' || s === '')) throw new Error(`invalid checkpoint path "${path}"`);
  return p;
}

/** A RunStore for one run: checkpoint files under ['file', runId, path]. */
export function browserRunStore(runId: string, opts: { dbName?: string } = {}): RunStore {
  const store = db(opts.dbName);
  return {
    async write(path, data) {
      const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
      try {
        await set(fileK(runId, cleanPath(path)), bytes, store);
      } catch (e) {
        if ((e as { name?: string })?.name === 'QuotaExceededError') {
          throw new StorageError(`run ${runId}: browser storage is full while saving ${path}: delete old runs or stored models; finished checkpoints are intact`);
        }
        throw e;
      }
    },
    async read(path) {
      const v = await get<Uint8Array>(fileK(runId, cleanPath(path)), store);
      if (!v) throw new Error(`run ${runId}: no checkpoint file ${path}`);
      return v;
    },
    async exists(path) {
      return (await get(fileK(runId, cleanPath(path)), store)) !== undefined;
    },
  };
}

/** Paths of the files stored for a run. */
export async function listRunFiles(runId: string, opts: { dbName?: string } = {}): Promise<string[]> {
  const store = db(opts.dbName);
  return store('readonly', async (s) => {
    const ks = (await promisifyRequest(s.getAllKeys(prefixRange('file', runId)))) as IDBValidKey[][];
    return ks.map((k) => String(k[2]));
  });
}

/** The newest complete checkpoint of a run (its trainer_state.json exists), or null. */
export async function latestCheckpoint(runId: string, opts: { dbName?: string } = {}): Promise<{ dir: string; step: number } | null> {
  const files = await listRunFiles(runId, opts);
  let best: { dir: string; step: number } | null = null;
  for (const f of files) {
    const m = /^(checkpoint-(\d+))\/trainer_state\.json$/.exec(f);
    if (m && (!best || Number(m[2]) > best.step)) best = { dir: m[1]!, step: Number(m[2]) };
  }
  return best;
}

/**
 * Delete all checkpoints of a run but the newest `keep` complete ones and the best model's (`best`,
 * load_best_model_at_end reads it at the end: rotation.ts as HF rotates them); incomplete ones
 * older than the newest complete one are leftovers of an interrupted save.
 */
export async function pruneCheckpoints(runId: string, keep: number, opts: { dbName?: string; best?: string | null } = {}): Promise<void> {
  const files = await listRunFiles(runId, opts);
  const complete = [...new Set(files.filter((f) => /^checkpoint-\d+\/trainer_state\.json$/.test(f)).map((f) => Number(/\d+/.exec(f)![0])))];
  if (complete.length === 0) return;
  const bestStep = opts.best ? Number(/^checkpoint-(\d+)$/.exec(opts.best)?.[1] ?? NaN) : NaN;
  const deleted = new Set(checkpointsToDelete(complete, Math.max(1, keep), Number.isFinite(bestStep) ? bestStep : null));
  const newest = Math.max(...complete);
  const drop = files.filter((f) => {
    const m = /^checkpoint-(\d+)\//.exec(f);
    const step = Number(m?.[1]);
    return m && (deleted.has(step) || (!complete.includes(step) && step < newest));
  });
  if (drop.length === 0) return;
  await db(opts.dbName)('readwrite', (s) => {
    for (const f of drop) s.delete(fileK(runId, f));
    return promisifyRequest(s.transaction);
  });
}

// ---- run history ---------------------------------------------------------------------------------

export async function saveRun(run: RunRecord, opts: { dbName?: string } = {}): Promise<void> {
  await set(runK(run.id), { ...run, updatedAt: Date.now() }, db(opts.dbName));
}

export async function getRun(id: string, opts: { dbName?: string } = {}): Promise<RunRecord | undefined> {
  return get<RunRecord>(runK(id), db(opts.dbName));
}

/** Update a stored run in one read-modify-write. */
export async function updateRun(id: string, patch: (r: RunRecord) => RunRecord, opts: { dbName?: string } = {}): Promise<RunRecord | undefined> {
  const r = await getRun(id, opts);
  if (!r) return undefined;
  const next = patch(r);
  await saveRun(next, opts);
  return next;
}

/** All runs, newest first. */
export async function listRuns(opts: { dbName?: string } = {}): Promise<RunRecord[]> {
  const store = db(opts.dbName);
  const ks = ((await keys(store)) as IDBValidKey[]).filter((k) => Array.isArray(k) && k[0] === 'run');
  const runs = (await getMany<RunRecord>(ks, store)).filter((r): r is RunRecord => !!r);
  return runs.sort((a, b) => b.createdAt - a.createdAt);
}

/** A run, its checkpoints and its dataset. */
export async function deleteRun(id: string, opts: { dbName?: string } = {}): Promise<void> {
  const store = db(opts.dbName);
  await store('readwrite', (s) => {
    s.delete(prefixRange('file', id));
    s.delete(runK(id));
    s.delete(dataK(id));
    return promisifyRequest(s.transaction);
  });
}

/** Files of a dataset the user dropped in, kept with the run so it can resume after a reload. */
export async function saveRunData(id: string, files: Record<string, Uint8Array | string>, opts: { dbName?: string } = {}): Promise<void> {
  await set(dataK(id), files, db(opts.dbName));
}

export async function getRunData(id: string, opts: { dbName?: string } = {}): Promise<Record<string, Uint8Array | string> | undefined> {
  return get(dataK(id), db(opts.dbName));
}

export async function deleteRunData(id: string, opts: { dbName?: string } = {}): Promise<void> {
  await del(dataK(id), db(opts.dbName));
}
