// Mamba-2's SSD scan (shaders/ssd.wgsl; the math is in its header), as transformers'
// GraniteMoeHybridMambaLayer computes it after the conv1d: the step size from dt, dt_bias and A_log,
// the selective scan over a per-head state, and the D skip. The gated norm and out_proj follow in
// the model.
//
//   x, y: [B, T, H, P]   dt: [B, T, H]   Bm, Cm: [B, T, G, N]   dtBias, aLog, D: [H]   state: [B, H, N, P]
//
// ssdForward is the chunked form (training and prefill); with `saved` it keeps the state at each
// chunk start and where segments start for the backward (ssdSavedElements floats). Packed sequences
// (segments i32 [B, T]) each start from a zero state, as if they ran alone (mamba_chunk_scan_combined's
// seq_idx). ssdRecurrent steps token by token (decode) with the state updated in place.

import source from '../../shaders/ssd.wgsl';
import { f32, type Gpu, type Param } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';
import { distinctBuffers, requireF32 } from './checks';
import { scratch } from './scratch';

export interface SsdShape {
  batch: number;
  len: number;
  heads: number;
  groups: number;
  /** d_state */
  stateDim: number;
  /** d_head */
  headDim: number;
  /** time_step_limit: dtp is clamped to [dtMin, dtMax] (0 and Infinity by default). */
  dtMin?: number;
  dtMax?: number;
}

export interface SsdInputs {
  x: Tensor;
  dt: Tensor;
  Bm: Tensor;
  Cm: Tensor;
}

/** The layer's per-head parameters. */
export interface SsdParams {
  dtBias: Tensor;
  aLog: Tensor;
  D: Tensor;
}

export interface SsdGrads {
  dx: Tensor;
  ddt: Tensor;
  dBm: Tensor;
  dCm: Tensor;
  /** Gradients of dt_bias, A_log and D (all overwritten), for full fine-tuning; absent under LoRA. */
  params?: { dtBias: Tensor; aLog: Tensor; D: Tensor } | null;
}

export interface SsdForwardOptions {
  /** Tokens per chunk. */
  chunk: number;
  /** Read as the initial state and overwritten with the final one (prefill); zeros when absent. */
  state?: Tensor | null;
  /** Where the backward's input goes (ssdSavedElements floats); not kept when absent. */
  saved?: Tensor | null;
  /** Segment ids i32 [B, T] of packed sequences (training). */
  segments?: Tensor | null;
}

const WG = 256;
const FLAG_READ_STATE = 1, FLAG_WRITE_STATE = 2, FLAG_SAVE = 4, FLAG_ACCUMULATE = 8, FLAG_SEGMENTS = 16, FLAG_RESETS = 32;
// the largest finite f32: the clamp's upper end when there is none
const F32_MAX = 3.4028234663852886e38;

type Entry =
  | 'ssd_steps' | 'ssd_chunk_prepare' | 'ssd_chunk_scan' | 'ssd_recurrent'
  | 'ssd_backward' | 'ssd_backward_reduce_x' | 'ssd_backward_reduce_bc' | 'ssd_backward_params';

const chunks = (s: SsdShape, chunk: number) => Math.ceil(s.len / chunk);

/** Floats of the forward's record for the backward: the state at each chunk start, segment starts. */
export function ssdSavedElements(s: SsdShape, chunk: number): number {
  return s.batch * s.heads * chunks(s, chunk) * s.stateDim * s.headDim + s.batch * s.len;
}

function checkShape(fn: string, s: SsdShape, chunk: number | null): void {
  const ints: [string, number][] = [
    ['batch', s.batch], ['len', s.len], ['heads', s.heads], ['groups', s.groups], ['stateDim', s.stateDim], ['headDim', s.headDim],
  ];
  if (chunk !== null) ints.push(['chunk', chunk]);
  for (const [name, v] of ints) if (!Number.isInteger(v) || v < 1) throw new Error(`${fn}: ${name} = ${v} must be a positive integer`);
  if (s.heads % s.groups !== 0) throw new Error(`${fn}: heads ${s.heads} is not a multiple of groups ${s.groups}`);
  if (s.stateDim > WG) throw new Error(`${fn}: stateDim ${s.stateDim} is over ${WG}`);
  if (chunk !== null && chunk > WG) throw new Error(`${fn}: chunk ${chunk} is over ${WG}`);
  const lo = s.dtMin ?? 0, hi = s.dtMax ?? Infinity;
  if (!(lo >= 0) || !(hi >= lo)) throw new Error(`${fn}: the dt limits [${lo}, ${hi}] must satisfy 0 <= dtMin <= dtMax`);
}

function checkTensors(fn: string, named: [string, Tensor, number, string][]): void {
  for (const [name, t, n, layout] of named) {
    requireF32(fn, [name, t]);
    if (numel(t.shape) !== n) throw new Error(`${fn}: ${name} ${shapeStr(t.shape)} must have ${n} elements (${layout})`);
  }
}

function inputTensors(s: SsdShape, x: SsdInputs, w: SsdParams): [string, Tensor, number, string][] {
  const { batch: B, len: T, heads: H, groups: G, stateDim: N, headDim: P } = s;
  return [
    ['x', x.x, B * T * H * P, `[B, T, H, P] = [${B}, ${T}, ${H}, ${P}]`],
    ['dt', x.dt, B * T * H, `[B, T, H] = [${B}, ${T}, ${H}]`],
    ['Bm', x.Bm, B * T * G * N, `[B, T, G, N] = [${B}, ${T}, ${G}, ${N}]`],
    ['Cm', x.Cm, B * T * G * N, `[B, T, G, N] = [${B}, ${T}, ${G}, ${N}]`],
    ['dtBias', w.dtBias, H, `[H] = [${H}]`],
    ['aLog', w.aLog, H, `[H] = [${H}]`],
    ['D', w.D, H, `[H] = [${H}]`],
  ];
}

const stateLayout = (s: SsdShape): [number, string] => [
  s.batch * s.heads * s.stateDim * s.headDim,
  `[B, H, N, P] = [${s.batch}, ${s.heads}, ${s.stateDim}, ${s.headDim}]`,
];

/** Columns of P per workgroup: the most (up to 32) whose state block and reduction buffers fit the workgroup storage. */
function columnBlock(gpu: Gpu, s: SsdShape, chunk: number): number {
  const floats = Math.floor(gpu.caps.limits.maxComputeWorkgroupStorageSize / 4);
  const fits = (cb: number) => s.stateDim * cb + 2 * chunk + 2 * WG <= floats;
  let cb = Math.min(32, 2 ** Math.ceil(Math.log2(s.headDim)));
  while (cb > 1 && !fits(cb)) cb /= 2;
  if (!fits(cb)) throw new Error(`ssd: stateDim ${s.stateDim} with chunk ${chunk} does not fit ${floats * 4} bytes of workgroup storage`);
  return cb;
}

function pipeline(gpu: Gpu, entry: Entry, DN: number, CB: number, CHUNK: number): GPUComputePipeline {
  return gpu.pipeline(`${entry}:n${DN}:cb${CB}:c${CHUNK}`, () => shaderVariant(source, entry, { DN, CB, CHUNK }));
}

function params(s: SsdShape, chunk: number, CB: number, flags: number, b0: number, SB: number): Param[] {
  return [
    s.batch, s.len, s.heads, s.groups, s.stateDim, s.headDim, chunk, chunks(s, chunk), Math.ceil(s.headDim / CB), flags,
    f32(s.dtMin ?? 0), f32(Math.min(s.dtMax ?? Infinity, F32_MAX)), b0, SB,
  ];
}

/**
 * Batch rows per dispatch so that each scratch region (floats per row) fits one storage binding:
 * large batches run in slices that reuse the same scratch.
 */
function rowsPerSlice(gpu: Gpu, fn: string, s: SsdShape, perRow: number[]): number {
  const limit = Math.floor(Math.min(gpu.caps.limits.maxStorageBufferBindingSize, gpu.caps.limits.maxBufferSize) / 4);
  const worst = Math.max(...perRow);
  if (worst > limit) {
    throw new Error(`${fn}: one batch row needs ${worst * 4} bytes of scratch, over this GPU's ${limit * 4}-byte binding limit; use a shorter sequence or a smaller chunk`);
  }
  return Math.min(s.batch, Math.floor(limit / worst));
}

/** The steps (dtp, slope, log decay, a) of a slice of rows into the front of `prep` (and, with FLAG_RESETS, the segment starts). */
function steps(gpu: Gpu, s: SsdShape, dt: Tensor, w: SsdParams, prep: Tensor, segments: Tensor | null, p: Param[], rows: number, CB: number, chunk: number): void {
  const n = rows * s.len * s.heads;
  gpu.dispatch(pipeline(gpu, 'ssd_steps', s.stateDim, CB, chunk), [dt, w.dtBias, w.aLog, prep, segments ?? dt], gpu.grid(Math.ceil(n / WG)), p);
}

/** The chunked form: y (overwritten); the state and the backward's record as the options say. */
export function ssdForward(gpu: Gpu, s: SsdShape, x: SsdInputs, w: SsdParams, y: Tensor, opts: SsdForwardOptions): void {
  const fn = 'ssdForward';
  const { chunk } = opts;
  checkShape(fn, s, chunk);
  const named = inputTensors(s, x, w);
  const inputs = named.map(([n, t]) => [n, t] as [string, Tensor]);
  named.push(['y', y, s.batch * s.len * s.heads * s.headDim, '[B, T, H, P]']);
  const written: [string, Tensor][] = [['y', y]];
  if (opts.state) {
    named.push(['state', opts.state, ...stateLayout(s)]);
    written.push(['state', opts.state]);
  }
  if (opts.saved) {
    named.push(['saved', opts.saved, ssdSavedElements(s, chunk), 'ssdSavedElements']);
    written.push(['saved', opts.saved]);
  }
  checkTensors(fn, named);
  distinctBuffers(fn, written, inputs);
  for (let i = 0; i < written.length; i++) distinctBuffers(fn, written.slice(i + 1), [written[i]!]);
  const segments = opts.segments ?? null;
  if (segments) {
    if (segments.dtype !== 'i32') throw new Error(`${fn}: segments must be i32, not ${segments.dtype}`);
    if (numel(segments.shape) !== s.batch * s.len) throw new Error(`${fn}: segments ${shapeStr(segments.shape)} must have ${s.batch * s.len} elements ([B, T])`);
    distinctBuffers(fn, written, [['segments', segments]]);
  }

  const CB = columnBlock(gpu, s, chunk);
  const NC = chunks(s, chunk), NCB = Math.ceil(s.headDim / CB);
  const prepRow = s.len * s.heads * (4 + chunk) + s.len;
  const SB = rowsPerSlice(gpu, fn, s, [prepRow]);
  const prep = scratch(gpu, 'ssd.prep', SB * prepRow);
  const flags = (opts.state ? FLAG_READ_STATE | FLAG_WRITE_STATE : 0) | (opts.saved ? FLAG_SAVE : 0) | (segments ? FLAG_SEGMENTS : 0) | FLAG_RESETS;
  const state = opts.state ?? scratch(gpu, 'ssd.noState', 1);
  const saved = opts.saved ?? scratch(gpu, 'ssd.noSaved', 1);
  const prepare = pipeline(gpu, 'ssd_chunk_prepare', s.stateDim, CB, chunk), scan = pipeline(gpu, 'ssd_chunk_scan', s.stateDim, CB, chunk);
  for (let b0 = 0; b0 < s.batch; b0 += SB) {
    const rows = Math.min(SB, s.batch - b0);
    const p = params(s, chunk, CB, flags, b0, rows);
    steps(gpu, s, x.dt, w, prep, segments, p, rows, CB, chunk);
    gpu.dispatch(prepare, [x.Bm, x.Cm, prep], [NC, s.heads, rows], p);
    gpu.dispatch(scan, [x.x, x.Bm, x.Cm, w.D, prep, state, y, saved], [NCB, s.heads, rows], p);
  }
}

/** The recurrence token by token (decode: len 1), the state [B, H, N, P] read and updated in place. */
export function ssdRecurrent(gpu: Gpu, s: SsdShape, x: SsdInputs, w: SsdParams, y: Tensor, state: Tensor): void {
  const fn = 'ssdRecurrent';
  checkShape(fn, s, null);
  const named = inputTensors(s, x, w);
  const inputs = named.map(([n, t]) => [n, t] as [string, Tensor]);
  named.push(['y', y, s.batch * s.len * s.heads * s.headDim, '[B, T, H, P]'], ['state', state, ...stateLayout(s)]);
  checkTensors(fn, named);
  distinctBuffers(fn, [['y', y], ['state', state]], inputs);
  distinctBuffers(fn, [['y', y]], [['state', state]]);
  const CB = columnBlock(gpu, s, 1);
  const SB = rowsPerSlice(gpu, fn, s, [s.len * s.heads * 4]);
  const prep = scratch(gpu, 'ssd.prep', SB * s.len * s.heads * 4);
  const recurrent = pipeline(gpu, 'ssd_recurrent', s.stateDim, CB, 1);
  for (let b0 = 0; b0 < s.batch; b0 += SB) {
    const rows = Math.min(SB, s.batch - b0);
    const p = params(s, 1, CB, 0, b0, rows);
    steps(gpu, s, x.dt, w, prep, null, p, rows, CB, 1);
    gpu.dispatch(recurrent, [x.x, x.Bm, x.Cm, w.D, prep, state, y], [Math.ceil(s.headDim / CB), s.heads, rows], p);
  }
}

/**
 * Gradients of the chunked forward (all overwritten) from its record `saved` (same chunk) and the
 * output gradient dy. The gradient of an initial state is not produced (training starts from zeros).
 */
export function ssdBackward(gpu: Gpu, s: SsdShape, x: SsdInputs, w: SsdParams, saved: Tensor, chunk: number, dy: Tensor, grads: SsdGrads): void {
  const fn = 'ssdBackward';
  checkShape(fn, s, chunk);
  const named = inputTensors(s, x, w);
  const read: [string, Tensor][] = [...named.map(([n, t]) => [n, t] as [string, Tensor]), ['saved', saved], ['dy', dy]];
  const { batch: B, len: T, heads: H, groups: G, stateDim: N, headDim: P } = s;
  named.push(
    ['saved', saved, ssdSavedElements(s, chunk), 'ssdSavedElements'],
    ['dy', dy, B * T * H * P, '[B, T, H, P]'],
    ['dx', grads.dx, B * T * H * P, '[B, T, H, P]'],
    ['ddt', grads.ddt, B * T * H, '[B, T, H]'],
    ['dBm', grads.dBm, B * T * G * N, '[B, T, G, N]'],
    ['dCm', grads.dCm, B * T * G * N, '[B, T, G, N]'],
  );
  const written: [string, Tensor][] = [['dx', grads.dx], ['ddt', grads.ddt], ['dBm', grads.dBm], ['dCm', grads.dCm]];
  if (grads.params) {
    for (const name of ['dtBias', 'aLog', 'D'] as const) {
      named.push([`d${name}`, grads.params[name], H, `[H] = [${H}]`]);
      written.push([`d${name}`, grads.params[name]]);
    }
  }
  checkTensors(fn, named);
  distinctBuffers(fn, written, read);
  for (let i = 0; i < written.length; i++) distinctBuffers(fn, written.slice(i + 1), [written[i]!]);

  const CB = columnBlock(gpu, s, chunk);
  const NCB = Math.ceil(P / CB);
  const prepRow = T * H * 4, statesRow = H * NCB * chunk * N * CB, partsRow = NCB * T * H * (2 * N + 1) + T * H * P;
  const SB = rowsPerSlice(gpu, fn, s, [prepRow, statesRow, partsRow]);
  const prep = scratch(gpu, 'ssd.prep', SB * prepRow);
  const states = scratch(gpu, 'ssd.states', SB * statesRow);
  const parts = scratch(gpu, 'ssd.parts', SB * partsRow);
  const backward = pipeline(gpu, 'ssd_backward', N, CB, chunk);
  for (let b0 = 0; b0 < B; b0 += SB) {
    const rows = Math.min(SB, B - b0);
    const p = params(s, chunk, CB, b0 > 0 ? FLAG_ACCUMULATE : 0, b0, rows);
    steps(gpu, s, x.dt, w, prep, null, p, rows, CB, chunk);
    gpu.dispatch(backward, [x.x, x.Bm, x.Cm, dy, prep, saved, states, parts], [NCB, H, rows], p);
    const nx = rows * T * H * (P + 1);
    gpu.dispatch(pipeline(gpu, 'ssd_backward_reduce_x', N, CB, chunk), [parts, x.x, dy, w.D, prep, grads.dx, grads.ddt], gpu.grid(Math.ceil(nx / WG)), p);
    const nbc = rows * T * G * N;
    gpu.dispatch(pipeline(gpu, 'ssd_backward_reduce_bc', N, CB, chunk), [parts, grads.dBm, grads.dCm], gpu.grid(Math.ceil(nbc / WG)), p);
    if (grads.params) {
      const q = grads.params;
      gpu.dispatch(pipeline(gpu, 'ssd_backward_params', N, CB, chunk), [parts, prep, x.x, dy, grads.ddt, q.dtBias, q.aLog, q.D], [H], p);
    }
  }
}
