// Per-device tuning of the GEMM tiles (gemm-tiles.ts). At first use the launchers record the
// model's real products (one per shape class); tuneRecordedGemms() then times every candidate tile
// of each class on fresh tensors of that shape (warm-up runs, then timed runs: GPU timestamps when
// the device has timestamp-query, else wall time around onSubmittedWorkDone), keeps the fastest,
// and saves the choices in a store keyed by the adapter (vendor, architecture, device, driver)
// and a hash of the kernels, so the next run starts tuned. A candidate that does not compile or
// raises a validation error drops out (the next fastest wins; the default stays when none works).
// Tuning is bounded by a time budget: classes left when it runs out keep the default.
// On by default on real GPUs, off on software adapters (their timings say nothing); overridable.

import f16Source from '../../shaders/matmul-f16.wgsl';
import subgroupSource from '../../shaders/matmul-subgroup.wgsl';
import f32Source from '../../shaders/matmul.wgsl';
import { Profiler } from '../gpu/profiler';
import type { Gpu } from '../gpu/runtime';
import type { ShaderSource } from '../gpu/shader';
import type { Tensor } from '../gpu/tensor';
import type { GemmArgs } from './gemm-args';
import { GEMM_TILES, shapeClass, tileNamed, tuneState, type GemmShape, type GemmTier, type GemmTile } from './gemm-tiles';
import { gemm, gemmSplit, gemmVariant } from './matmul';
import { gemmF16, gemmF16Variant } from './matmul-f16';
import { gemmSubgroupMatrix, subgroupGemmVariant, subgroupWorkgroupBytes } from './matmul-subgroup';
import { compileErrors } from './subgroup-matrix';

/** Milliseconds per run of `run` (which records one product; the timer submits and waits). */
export type GemmTimer = (t: { gpu: Gpu; shape: GemmShape; tile: GemmTile; run: () => void; reps: number }) => Promise<number>;

/** Compile errors of a candidate's WGSL (empty: it compiles). */
export type GemmCheck = (gpu: Gpu, shape: GemmShape, tile: GemmTile) => Promise<string[]>;

/** Where choices persist: the cache dir in Node, IndexedDB in the browser. */
export interface TuningStore {
  /** Where entries live, for notices. */
  where: string;
  load(key: string): Promise<string | null>;
  save(key: string, text: string): Promise<void>;
}

export type TuningMode = 'auto' | 'on' | 'off';

export interface TuneOptions {
  timer?: GemmTimer;
  check?: GemmCheck;
  warmup?: number;
  reps?: number;
  /** Total time tuning may take; classes left when it is spent keep the default tile. */
  budgetMs?: number;
  /** Only these candidates (names) per tier, the default always included (tests keep the list short). */
  only?: Partial<Record<GemmTier, readonly string[]>>;
  notice?: (message: string) => void;
}

export const DEFAULT_BUDGET_MS = 20_000;

/** One class's outcome: the tile chosen, each candidate's ms (or why it dropped out). */
export interface TuneResult {
  cls: string;
  shape: string;
  tile: string;
  times: Record<string, number | string>;
}

/** Whether to tune on this device: `mode` (a config key or env value; empty = auto), auto = not on a software adapter. */
export function tuningEnabled(gpu: Gpu, mode: string | undefined): boolean {
  const m = (mode ?? '').trim().toLowerCase();
  if (m === '' || m === 'auto') return !gpu.caps.software;
  if (['on', '1', 'true', 'yes'].includes(m)) return true;
  if (['off', '0', 'false', 'no'].includes(m)) return false;
  throw new Error(`gemm tuning: "${mode}" is not one of auto, on, off`);
}

// ---- timing ------------------------------------------------------------------------------------

const profilers = new WeakMap<Gpu, Profiler>();

/** GPU timestamps around each run where the device has timestamp-query, else wall time around a sync. */
export const gpuTimer: GemmTimer = async ({ gpu, run, reps }) => {
  if (gpu.caps.timestampQuery) {
    const saved = gpu.profiler;
    // one query set per device, however many candidates are timed
    let profiler = profilers.get(gpu);
    if (!profiler) profilers.set(gpu, (profiler = new Profiler(gpu.device)));
    profiler.totals.clear();
    gpu.profiler = profiler;
    try {
      for (let i = 0; i < reps; i++) run();
      gpu.flush();
      await profiler.collect();
      return [...profiler.totals.values()].reduce((a, v) => a + v.ns, 0) / 1e6 / reps;
    } finally {
      gpu.profiler = saved;
    }
  }
  await gpu.sync();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) run();
  await gpu.sync();
  return (performance.now() - t0) / reps;
};

// ---- one candidate on one shape ------------------------------------------------------------------

const trans = (layout: string) => ({ transA: layout[0] === 'T', transB: layout[1] === 'T' });

/** The WGSL a launcher compiles for a dense product of this shape with this tile. */
function variantSource(gpu: Gpu, shape: GemmShape, tile: GemmTile, t: Record<'a' | 'b' | 'c', Tensor>): ShaderSource {
  const { transA, transB } = trans(shape.layout);
  if (shape.tier === 'f32') {
    const entry = gemmSplit({ M: shape.M, N: shape.N, K: shape.K, transA, transB }).splits === 1 ? 'gemm' : 'gemm_split_k';
    return gemmVariant(entry, transA, transB, shape.b === 'f16', tile);
  }
  if (shape.tier === 'f16') {
    const vec = [transA ? shape.M : shape.K, transB ? shape.K : shape.N].every((x) => x % 4 === 0); // dense: as gemmF16 decides
    return gemmF16Variant(shape.c === 'f16' ? 'gemm_f16_to_f16' : 'gemm_f16', transA, transB, vec, tile);
  }
  return subgroupGemmVariant(gpu, shape.matrices!, args(shape, t, tile)).build();
}

const compileCheck: GemmCheck = async (gpu, shape, tile) => {
  if (shape.tier === 'subgroup') {
    const bytes = subgroupWorkgroupBytes(shape.matrices!, tile);
    if (bytes > gpu.caps.limits.maxComputeWorkgroupStorageSize) return [`needs ${bytes} bytes of workgroup memory`];
  }
  const placeholder = { buffer: null as unknown as GPUBuffer, offset: 0, shape: [1], dtype: 'f32' as const };
  const src = variantSource(gpu, shape, tile, { a: { ...placeholder, dtype: shape.a }, b: { ...placeholder, dtype: shape.b }, c: { ...placeholder, dtype: shape.c } });
  return compileErrors(gpu.device, src.code, src.entryPoint);
};

function args(shape: GemmShape, t: Record<'a' | 'b' | 'c', Tensor>, tile: GemmTile): GemmArgs {
  return { ...t, M: shape.M, N: shape.N, K: shape.K, ...trans(shape.layout), tile: tile.name };
}

function launch(gpu: Gpu, shape: GemmShape, t: Record<'a' | 'b' | 'c', Tensor>, tile: GemmTile): void {
  const g = args(shape, t, tile);
  if (shape.tier === 'f32') gemm(gpu, g);
  else if (shape.tier === 'f16') gemmF16(gpu, g);
  else gemmSubgroupMatrix(gpu, shape.matrices!, g);
}

/** Milliseconds per run, or why the candidate dropped out. */
async function timeCandidate(gpu: Gpu, shape: GemmShape, tile: GemmTile, o: Required<Pick<TuneOptions, 'timer' | 'check' | 'warmup' | 'reps'>>): Promise<number | string> {
  const errors = await o.check(gpu, shape, tile);
  if (errors.length > 0) return `does not compile: ${errors[0]}`;
  const { transA, transB } = trans(shape.layout);
  // the product's own tensors, allocated beside the model's: a device short of memory drops the candidate, not the run
  gpu.device.pushErrorScope('out-of-memory');
  gpu.device.pushErrorScope('validation');
  const tensors: Tensor[] = [];
  const alloc = (dims: number[], dtype: GemmShape['a']) => {
    const x = gpu.tensor(dims, dtype);
    tensors.push(x);
    return x;
  };
  let ms: number | string;
  try {
    const t = {
      a: alloc(transA ? [shape.K, shape.M] : [shape.M, shape.K], shape.a),
      b: alloc(transB ? [shape.N, shape.K] : [shape.K, shape.N], shape.b),
      c: alloc([shape.M, shape.N], shape.c),
    };
    const run = () => launch(gpu, shape, t, tile);
    for (let i = 0; i < o.warmup; i++) run();
    await gpu.sync();
    ms = await o.timer({ gpu, shape, tile, run, reps: o.reps });
  } catch (e) {
    ms = `failed: ${(e as Error).message}`;
  } finally {
    gpu.flush();
    const invalid = await gpu.device.popErrorScope();
    const oom = await gpu.device.popErrorScope();
    if (invalid) ms = `validation error: ${invalid.message}`;
    else if (oom) ms = `out of memory: ${oom.message}`;
  }
  gpu.release(...tensors);
  return ms;
}

// ---- tuning ------------------------------------------------------------------------------------

/** Times the candidates of each shape's class and makes the fastest this device's choice. */
export async function tuneGemms(gpu: Gpu, shapes: readonly GemmShape[], opts: TuneOptions = {}): Promise<TuneResult[]> {
  const o = { timer: opts.timer ?? gpuTimer, check: opts.check ?? compileCheck, warmup: opts.warmup ?? 2, reps: opts.reps ?? 5 };
  const budget = opts.budgetMs ?? DEFAULT_BUDGET_MS;
  const start = performance.now();
  const state = tuneState(gpu);
  const results: TuneResult[] = [];
  let skipped = 0;
  for (const shape of shapes) {
    const cls = shapeClass(shape.tier, shape.layout, shape.M, shape.N, shape.K);
    if (performance.now() - start >= budget) {
      skipped++;
      continue;
    }
    const only = opts.only?.[shape.tier];
    const candidates = GEMM_TILES[shape.tier].filter((c, i) => i === 0 || !only || only.includes(c.name));
    const times: Record<string, number | string> = {};
    for (const tile of candidates) {
      times[tile.name] = await timeCandidate(gpu, shape, tile, o);
      if (typeof times[tile.name] === 'string') opts.notice?.(`gemm tuning: ${cls} tile ${tile.name} ${times[tile.name]}; trying the next`);
    }
    const timed = candidates.filter((c) => typeof times[c.name] === 'number');
    const best = timed.reduce<GemmTile | null>((b, c) => (b && (times[b.name] as number) <= (times[c.name] as number) ? b : c), null) ?? candidates[0]!;
    state.choices.set(cls, best.name);
    results.push({ cls, shape: `${shape.M}x${shape.N}x${shape.K}`, tile: best.name, times });
  }
  if (skipped > 0) opts.notice?.(`gemm tuning: the ${Math.round(budget / 1000)} s budget ran out; ${skipped} shape class${skipped > 1 ? 'es keep' : ' keeps'} the default tile until a later run tunes them`);
  return results;
}

// ---- the cache ---------------------------------------------------------------------------------

const FORMAT = 'crucible-gemm-tuning';

/** FNV-1a of a string, as 8 hex digits. */
export function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/** Changes with any GEMM shader or candidate list: choices made for other kernels are stale. */
export const gemmKernelsHash = (): string => fnv1a([f32Source, f16Source, subgroupSource, JSON.stringify(GEMM_TILES)].join('\0'));

/** The store key of this device's entry. */
export const tuningKey = (gpu: Gpu): string => `gemm-tuning-${fnv1a(gpu.caps.identity)}`;

interface TuningEntry {
  format: typeof FORMAT;
  adapter: string;
  kernels: string;
  choices: Record<string, string>;
}

/** The choices of a stored entry, or why it is not used (corrupt, another adapter, other kernels). */
export function parseTuningEntry(text: string, adapter: string, kernels: string): Map<string, string> | string {
  let e: TuningEntry;
  try {
    e = JSON.parse(text) as TuningEntry;
  } catch (err) {
    return `is corrupt (${(err as Error).message})`;
  }
  if (!e || typeof e !== 'object' || e.format !== FORMAT || typeof e.choices !== 'object' || e.choices === null) return 'is corrupt (not a tuning entry)';
  if (e.adapter !== adapter) return `is for another adapter (${String(e.adapter)})`;
  if (e.kernels !== kernels) return 'is stale (the GEMM kernels changed since)';
  const out = new Map<string, string>();
  for (const [cls, name] of Object.entries(e.choices)) {
    const tier = cls.split(':')[0] as GemmTier;
    if (!GEMM_TILES[tier] || typeof name !== 'string') return `is corrupt (class "${cls}")`;
    try {
      tileNamed(tier, name);
    } catch (err) {
      return `is corrupt (${(err as Error).message})`;
    }
    out.set(cls, name);
  }
  return out;
}

export function formatTuningEntry(adapter: string, kernels: string, choices: ReadonlyMap<string, string>): string {
  const entry: TuningEntry = { format: FORMAT, adapter, kernels, choices: Object.fromEntries([...choices].sort()) };
  return `${JSON.stringify(entry, null, 1)}\n`;
}

// ---- at first use --------------------------------------------------------------------------------

interface Session {
  store: TuningStore;
  opts: TuneOptions;
}
const sessions = new WeakMap<Gpu, Session>();

/**
 * Turns tuning on for this device: the stored choices apply at once, and the launchers record the
 * shapes they run until tuneRecordedGemms(). A corrupt or stale entry is ignored with a notice.
 */
export async function enableGemmTuning(gpu: Gpu, store: TuningStore, opts: TuneOptions = {}): Promise<void> {
  const state = tuneState(gpu);
  let text: string | null = null;
  try {
    text = await store.load(tuningKey(gpu));
  } catch (e) {
    opts.notice?.(`gemm tuning: could not read ${store.where}: ${(e as Error).message}; tuning afresh`);
  }
  if (text !== null) {
    const parsed = parseTuningEntry(text, gpu.caps.identity, gemmKernelsHash());
    if (typeof parsed === 'string') opts.notice?.(`gemm tuning: the entry in ${store.where} ${parsed}; ignoring it and tuning afresh`);
    else for (const [cls, name] of parsed) state.choices.set(cls, name);
  }
  state.recorded = new Map();
  sessions.set(gpu, { store, opts });
}

/**
 * Tunes the classes recorded since enableGemmTuning() that have no choice yet and saves all
 * choices; a no-op where tuning is off. Call after the first step (its products were recorded).
 */
export async function tuneRecordedGemms(gpu: Gpu): Promise<TuneResult[]> {
  const session = sessions.get(gpu);
  const state = tuneState(gpu);
  if (!session || !state.recorded) return [];
  // the largest products first: the budget goes where the time is, and classes left over are tuned by a later run
  const shapes = [...state.recorded].filter(([cls]) => !state.choices.has(cls)).map(([, s]) => s).sort((a, b) => b.M * b.N * b.K - a.M * a.N * a.K);
  state.recorded = null;
  if (shapes.length === 0) return [];
  const { notice } = session.opts;
  notice?.(`gemm tuning: timing ${shapes.length} product shape${shapes.length > 1 ? 's' : ''} on ${gpu.caps.adapter}`);
  const results = await tuneGemms(gpu, shapes, session.opts);
  try {
    await session.store.save(tuningKey(gpu), formatTuningEntry(gpu.caps.identity, gemmKernelsHash(), state.choices));
  } catch (e) {
    notice?.(`gemm tuning: could not save the choices to ${session.store.where}: ${(e as Error).message}`);
  }
  return results;
}

/** The tile each class uses on this device (tuned or default), for reports. */
export function gemmChoices(gpu: Gpu): ReadonlyMap<string, string> {
  return tuneState(gpu).choices;
}

/** Whether tuning is on for this device and still waiting for its first products (benchmarks run them first). */
export const gemmTuningPending = (gpu: Gpu): boolean => sessions.has(gpu) && tuneState(gpu).recorded !== null;
