// The gated delta rule of Gated DeltaNet (shaders/delta-rule.wgsl; the math is in its header),
// as transformers' torch_chunk_gated_delta_rule / torch_recurrent_gated_delta_rule compute it after
// the l2norm of q and k (src/kernels/norm.ts) and the gates (g <= 0, beta in (0, 1)).
//
//   q, k: [B, T, Hk, Dk]   v, out: [B, T, Hv, Dv]   g, beta: [B, T, Hv]   state: [B, Hv, Dk, Dv]
//
// deltaRuleForward is the chunked form (training and prefill); with `saved` it keeps what the
// backward needs (the state at each chunk start, every delta and where segments start:
// deltaRuleSavedElements floats). Packed sequences (segments i32 [B, T]) each start from a zero
// state, as if they ran alone.
// deltaRuleRecurrent steps token by token (decode) with the state updated in place. Both accept
// any tensor shapes with the right element counts.

import source from '../../shaders/delta-rule.wgsl';
import { f32, type Gpu, type Param } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';
import { distinctBuffers, requireF32 } from './checks';
import { scratch } from './scratch';

export interface DeltaRuleShape {
  batch: number;
  len: number;
  keyHeads: number;
  valueHeads: number;
  keyDim: number;
  valueDim: number;
  /** Applied to q (transformers: keyDim^-0.5). */
  scale: number;
}

export interface DeltaRuleInputs {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  g: Tensor;
  beta: Tensor;
}

export interface DeltaRuleGrads {
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
  dg: Tensor;
  dbeta: Tensor;
}

export interface DeltaRuleForwardOptions {
  /** Tokens per chunk. */
  chunk: number;
  /** Read as the initial state and overwritten with the final one (prefill); zeros when absent. */
  state?: Tensor | null;
  /** Where the backward's inputs go (deltaRuleSavedElements floats); not kept when absent. */
  saved?: Tensor | null;
  /** Segment ids i32 [B, T] of packed sequences (training). */
  segments?: Tensor | null;
}

const WG = 256;
const FLAG_READ_STATE = 1, FLAG_WRITE_STATE = 2, FLAG_SAVE = 4, FLAG_SEGMENTS = 8;

type Entry = 'delta_rule_chunk_prepare' | 'delta_rule_chunk_scan' | 'delta_rule_recurrent' | 'delta_rule_backward' | 'delta_rule_backward_reduce';

const chunks = (s: DeltaRuleShape, chunk: number) => Math.ceil(s.len / chunk);

/** Floats of the forward's record for the backward: chunk-start states, the deltas, segment starts. */
export function deltaRuleSavedElements(s: DeltaRuleShape, chunk: number): number {
  return s.batch * s.valueHeads * (chunks(s, chunk) * s.keyDim * s.valueDim + s.len * s.valueDim) + s.batch * s.len;
}

function checkShape(fn: string, s: DeltaRuleShape, chunk: number | null): void {
  const ints: [string, number][] = [
    ['batch', s.batch], ['len', s.len], ['keyHeads', s.keyHeads], ['valueHeads', s.valueHeads], ['keyDim', s.keyDim], ['valueDim', s.valueDim],
  ];
  if (chunk !== null) ints.push(['chunk', chunk]);
  for (const [name, v] of ints) if (!Number.isInteger(v) || v < 1) throw new Error(`${fn}: ${name} = ${v} must be a positive integer`);
  if (s.valueHeads % s.keyHeads !== 0) throw new Error(`${fn}: valueHeads ${s.valueHeads} is not a multiple of keyHeads ${s.keyHeads}`);
  if (s.keyDim > WG) throw new Error(`${fn}: keyDim ${s.keyDim} is over ${WG}`);
  if (chunk !== null && chunk > WG) throw new Error(`${fn}: chunk ${chunk} is over ${WG}`);
  if (!Number.isFinite(s.scale)) throw new Error(`${fn}: scale ${s.scale} is not finite`);
}

function checkTensors(fn: string, named: [string, Tensor, number, string][]): void {
  for (const [name, t, n, layout] of named) {
    requireF32(fn, [name, t]);
    if (numel(t.shape) !== n) throw new Error(`${fn}: ${name} ${shapeStr(t.shape)} must have ${n} elements (${layout})`);
  }
}

function inputTensors(s: DeltaRuleShape, x: DeltaRuleInputs): [string, Tensor, number, string][] {
  const { batch: B, len: T, keyHeads: Hk, valueHeads: Hv, keyDim: Dk, valueDim: Dv } = s;
  return [
    ['q', x.q, B * T * Hk * Dk, `[B, T, Hk, Dk] = [${B}, ${T}, ${Hk}, ${Dk}]`],
    ['k', x.k, B * T * Hk * Dk, `[B, T, Hk, Dk] = [${B}, ${T}, ${Hk}, ${Dk}]`],
    ['v', x.v, B * T * Hv * Dv, `[B, T, Hv, Dv] = [${B}, ${T}, ${Hv}, ${Dv}]`],
    ['g', x.g, B * T * Hv, `[B, T, Hv] = [${B}, ${T}, ${Hv}]`],
    ['beta', x.beta, B * T * Hv, `[B, T, Hv] = [${B}, ${T}, ${Hv}]`],
  ];
}

const stateLayout = (s: DeltaRuleShape): [number, string] => [
  s.batch * s.valueHeads * s.keyDim * s.valueDim,
  `[B, Hv, Dk, Dv] = [${s.batch}, ${s.valueHeads}, ${s.keyDim}, ${s.valueDim}]`,
];

/**
 * Value columns per workgroup: the most (up to 32) whose state block, chunk deltas and reduction
 * buffers fit the device's workgroup storage.
 */
function columnBlock(gpu: Gpu, s: DeltaRuleShape, chunk: number): number {
  const floats = Math.floor(gpu.caps.limits.maxComputeWorkgroupStorageSize / 4);
  const fits = (cb: number) => s.keyDim * cb + chunk * cb + 2 * chunk <= floats && s.keyDim * cb + cb + 3 * WG <= floats;
  let cb = Math.min(32, 2 ** Math.ceil(Math.log2(s.valueDim)));
  while (cb > 1 && !fits(cb)) cb /= 2;
  if (!fits(cb)) throw new Error(`deltaRule: keyDim ${s.keyDim} with chunk ${chunk} does not fit ${floats * 4} bytes of workgroup storage`);
  return cb;
}

function pipeline(gpu: Gpu, entry: Entry, DK: number, CB: number, CHUNK: number): GPUComputePipeline {
  return gpu.pipeline(`${entry}:dk${DK}:cb${CB}:c${CHUNK}`, () => shaderVariant(source, entry, { DK, CB, CHUNK }));
}

function params(s: DeltaRuleShape, chunk: number, CB: number, flags: number, b0 = 0, SB = s.batch): Param[] {
  return [s.batch, s.len, s.keyHeads, s.valueHeads, s.keyDim, s.valueDim, chunk, chunks(s, chunk), Math.ceil(s.valueDim / CB), flags, f32(s.scale), b0, SB];
}

/**
 * Batch rows per dispatch so that each scratch region (floats per row) fits one storage binding:
 * large batches run in slices that reuse the same scratch.
 */
function rowsPerSlice(gpu: Gpu, fn: string, s: DeltaRuleShape, perRow: number[]): number {
  const limit = Math.floor(Math.min(gpu.caps.limits.maxStorageBufferBindingSize, gpu.caps.limits.maxBufferSize) / 4);
  const worst = Math.max(...perRow);
  if (worst > limit) {
    throw new Error(`${fn}: one batch row needs ${worst * 4} bytes of scratch, over this GPU's ${limit * 4}-byte binding limit; use a shorter sequence or a smaller chunk`);
  }
  return Math.min(s.batch, Math.floor(limit / worst));
}

/** The chunked form: out (overwritten); the state and the backward's record as the options say. */
export function deltaRuleForward(gpu: Gpu, s: DeltaRuleShape, x: DeltaRuleInputs, out: Tensor, opts: DeltaRuleForwardOptions): void {
  const fn = 'deltaRuleForward';
  const { chunk } = opts;
  checkShape(fn, s, chunk);
  const named = inputTensors(s, x);
  const inputs = named.map(([n, t]) => [n, t] as [string, Tensor]);
  named.push(['out', out, s.batch * s.len * s.valueHeads * s.valueDim, `[B, T, Hv, Dv]`]);
  const written: [string, Tensor][] = [['out', out]];
  if (opts.state) {
    named.push(['state', opts.state, ...stateLayout(s)]);
    written.push(['state', opts.state]);
  }
  if (opts.saved) {
    named.push(['saved', opts.saved, deltaRuleSavedElements(s, chunk), 'deltaRuleSavedElements']);
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
  const NC = chunks(s, chunk), NCB = Math.ceil(s.valueDim / CB);
  const prepRow = s.len * (s.valueHeads * (s.valueDim + s.keyDim + chunk) + 1);
  const SB = rowsPerSlice(gpu, fn, s, [prepRow]);
  const prep = scratch(gpu, 'deltaRule.prep', SB * prepRow);
  const flags = (opts.state ? FLAG_READ_STATE | FLAG_WRITE_STATE : 0) | (opts.saved ? FLAG_SAVE : 0) | (segments ? FLAG_SEGMENTS : 0);
  const state = opts.state ?? scratch(gpu, 'deltaRule.noState', 1);
  const saved = opts.saved ?? scratch(gpu, 'deltaRule.noSaved', 1);
  const prepare = pipeline(gpu, 'delta_rule_chunk_prepare', s.keyDim, CB, chunk), scan = pipeline(gpu, 'delta_rule_chunk_scan', s.keyDim, CB, chunk);
  for (let b0 = 0; b0 < s.batch; b0 += SB) {
    const rows = Math.min(SB, s.batch - b0);
    const p = params(s, chunk, CB, flags, b0, rows);
    gpu.dispatch(prepare, [x.q, x.k, x.v, x.g, x.beta, segments ?? x.q, prep], [NC, s.valueHeads, rows], p);
    gpu.dispatch(scan, [x.q, x.k, x.g, prep, state, out, saved], [NCB, s.valueHeads, rows], p);
  }
}

/** The recurrence token by token (decode: len 1), the state [B, Hv, Dk, Dv] read and updated in place. */
export function deltaRuleRecurrent(gpu: Gpu, s: DeltaRuleShape, x: DeltaRuleInputs, out: Tensor, state: Tensor): void {
  const fn = 'deltaRuleRecurrent';
  checkShape(fn, s, null);
  const named = inputTensors(s, x);
  const inputs = named.map(([n, t]) => [n, t] as [string, Tensor]);
  named.push(['out', out, s.batch * s.len * s.valueHeads * s.valueDim, `[B, T, Hv, Dv]`], ['state', state, ...stateLayout(s)]);
  checkTensors(fn, named);
  distinctBuffers(fn, [['out', out], ['state', state]], inputs);
  distinctBuffers(fn, [['out', out]], [['state', state]]);
  const CB = columnBlock(gpu, s, 1);
  gpu.dispatch(
    pipeline(gpu, 'delta_rule_recurrent', s.keyDim, CB, 1), [x.q, x.k, x.v, x.g, x.beta, state, out],
    [Math.ceil(s.valueDim / CB), s.valueHeads, s.batch], params(s, 1, CB, 0),
  );
}

/**
 * Gradients of the chunked forward (all overwritten) from its record `saved` (same chunk) and the
 * output gradient dout. The gradient of an initial state is not produced (training starts from
 * zeros).
 */
export function deltaRuleBackward(
  gpu: Gpu, s: DeltaRuleShape, x: DeltaRuleInputs, saved: Tensor, chunk: number, dout: Tensor, grads: DeltaRuleGrads,
): void {
  const fn = 'deltaRuleBackward';
  checkShape(fn, s, chunk);
  const named = inputTensors(s, x);
  const read: [string, Tensor][] = [...named.map(([n, t]) => [n, t] as [string, Tensor]), ['saved', saved], ['dout', dout]];
  const { batch: B, len: T, keyHeads: Hk, valueHeads: Hv, keyDim: Dk, valueDim: Dv } = s;
  named.push(
    ['saved', saved, deltaRuleSavedElements(s, chunk), 'deltaRuleSavedElements'],
    ['dout', dout, B * T * Hv * Dv, '[B, T, Hv, Dv]'],
    ['dq', grads.dq, B * T * Hk * Dk, '[B, T, Hk, Dk]'],
    ['dk', grads.dk, B * T * Hk * Dk, '[B, T, Hk, Dk]'],
    ['dv', grads.dv, B * T * Hv * Dv, '[B, T, Hv, Dv]'],
    ['dg', grads.dg, B * T * Hv, '[B, T, Hv]'],
    ['dbeta', grads.dbeta, B * T * Hv, '[B, T, Hv]'],
  );
  checkTensors(fn, named);
  const written = Object.entries(grads) as [string, Tensor][];
  distinctBuffers(fn, written, read);
  for (let i = 0; i < written.length; i++) distinctBuffers(fn, written.slice(i + 1), [written[i]!]);

  const CB = columnBlock(gpu, s, chunk);
  const NCB = Math.ceil(Dv / CB);
  const statesRow = Hv * NCB * chunk * Dk * CB, partsRow = NCB * T * Hv * (2 * Dk + 2) + T * Hv * Dv;
  const SB = rowsPerSlice(gpu, fn, s, [statesRow, partsRow]);
  const states = scratch(gpu, 'deltaRule.states', SB * statesRow);
  const parts = scratch(gpu, 'deltaRule.parts', SB * partsRow);
  const backward = pipeline(gpu, 'delta_rule_backward', Dk, CB, chunk), reduce = pipeline(gpu, 'delta_rule_backward_reduce', Dk, CB, chunk);
  for (let b0 = 0; b0 < B; b0 += SB) {
    const rows = Math.min(SB, B - b0);
    const p = params(s, chunk, CB, 0, b0, rows);
    gpu.dispatch(backward, [x.q, x.k, x.g, x.beta, dout, saved, states, parts], [NCB, Hv, rows], p);
    const n = rows * T * (Hk * Dk + Hv + Hv * Dv);
    gpu.dispatch(reduce, [parts, grads.dq, grads.dk, grads.dv, grads.dg, grads.dbeta], gpu.grid(Math.ceil(n / WG)), p);
  }
}
