// Gated activations of the MLP (SwiGLU: silu(gate) * up; GeGLU: gelu(gate) * up with the tanh
// approximation or exact erf) with their backward, for separate gate/up tensors and for the fused
// [T, 2F] gate_up_proj layout (Phi-3), and the f32 elementwise helpers the engine needs.

import source from '../../shaders/act.wgsl';
import { f32, type Gpu, type Param } from '../gpu/runtime';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';

export type GatedActKind = 'silu' | 'gelu_tanh' | 'gelu';

const WG = 256;
const ACT: Record<GatedActKind, number> = { silu: 0, gelu_tanh: 1, gelu: 2 };

function actId(kind: GatedActKind, fn: string): number {
  const id = ACT[kind];
  if (id === undefined) throw new Error(`${fn}: unknown activation "${String(kind)}" (silu, gelu_tanh, gelu)`);
  return id;
}

function requireF32(fn: string, ...named: [string, Tensor][]): void {
  for (const [name, t] of named) {
    if (t.dtype !== 'f32') throw new Error(`${fn}: ${name} must be f32, not ${t.dtype}`);
  }
}

function sameShape(fn: string, a: [string, Tensor], b: [string, Tensor]): void {
  const [na, ta] = a, [nb, tb] = b;
  if (ta.shape.length !== tb.shape.length || ta.shape.some((d, i) => d !== tb.shape[i])) {
    throw new Error(`${fn}: ${na} ${shapeStr(ta.shape)} and ${nb} ${shapeStr(tb.shape)} differ in shape`);
  }
}

/** WebGPU forbids a buffer bound both read-only and writable in one dispatch. */
function distinctBuffers(fn: string, written: [string, Tensor][], read: [string, Tensor][]): void {
  for (const [wn, w] of written)
    for (const [rn, r] of read) {
      if (w.buffer === r.buffer) throw new Error(`${fn}: ${wn} must not share a buffer with ${rn}`);
    }
}

const sameView = (a: Tensor, b: Tensor): boolean => a.buffer === b.buffer && a.offset === b.offset;

/** One invocation per element over n elements (grid-folded). */
function launch(gpu: Gpu, entry: string, bindings: Tensor[], n: number, params: Param[], act = 0): void {
  if (n === 0) return;
  const pipeline = gpu.pipeline(source, entry, { WG, ACT: act });
  gpu.dispatch(pipeline, bindings, gpu.grid(Math.ceil(n / WG)), params);
}

const lastDim = (t: Tensor): number => t.shape[t.shape.length - 1] ?? 1;

// ---- gated activations -------------------------------------------------------------------------

/** out = act(gate) * up, all of the same shape. */
export function gatedAct(gpu: Gpu, gate: Tensor, up: Tensor, out: Tensor, kind: GatedActKind): void {
  const fn = 'gatedAct';
  requireF32(fn, ['gate', gate], ['up', up], ['out', out]);
  sameShape(fn, ['gate', gate], ['up', up]);
  sameShape(fn, ['gate', gate], ['out', out]);
  distinctBuffers(fn, [['out', out]], [['gate', gate], ['up', up]]);
  const n = numel(out.shape);
  launch(gpu, 'gated_fwd', [gate, up, out], n, [n, Math.max(n, 1), 0, 0, 0, 0], actId(kind, fn));
}

/** dGate = dOut * up * act'(gate), dUp = dOut * act(gate) (both overwritten). */
export function gatedActBackward(
  gpu: Gpu, dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor, kind: GatedActKind,
): void {
  const fn = 'gatedActBackward';
  requireF32(fn, ['dOut', dOut], ['gate', gate], ['up', up], ['dGate', dGate], ['dUp', dUp]);
  for (const t of [['gate', gate], ['up', up], ['dGate', dGate], ['dUp', dUp]] as [string, Tensor][]) sameShape(fn, ['dOut', dOut], t);
  distinctBuffers(fn, [['dGate', dGate], ['dUp', dUp]], [['dOut', dOut], ['gate', gate], ['up', up]]);
  if (dGate.buffer === dUp.buffer) throw new Error(`${fn}: dGate and dUp must not share a buffer (use gatedActFusedBackward)`);
  const n = numel(dOut.shape);
  launch(gpu, 'gated_bwd', [dOut, gate, up, dGate, dUp], n, [n, Math.max(n, 1), 0, 0, 0, 0], actId(kind, fn));
}

function fusedShape(fn: string, gateUp: Tensor, out: Tensor): { T: number; F: number } {
  const F = lastDim(out);
  const T = numel(out.shape) / Math.max(F, 1);
  const G = lastDim(gateUp);
  if (G !== 2 * F || numel(gateUp.shape) !== 2 * T * F) {
    throw new Error(`${fn}: gateUp ${shapeStr(gateUp.shape)} must be [T, 2F] for an output ${shapeStr(out.shape)} = [T, F]`);
  }
  return { T, F };
}

/** out[T, F] = act(gateUp[:, :F]) * gateUp[:, F:] (Phi-3's gate_up_proj layout: gate then up). */
export function gatedActFused(gpu: Gpu, gateUp: Tensor, out: Tensor, kind: GatedActKind): void {
  const fn = 'gatedActFused';
  requireF32(fn, ['gateUp', gateUp], ['out', out]);
  const { T, F } = fusedShape(fn, gateUp, out);
  distinctBuffers(fn, [['out', out]], [['gateUp', gateUp]]);
  launch(gpu, 'gated_fwd', [gateUp, gateUp, out], T * F, [T * F, F, 2 * F, 0, 2 * F, F], actId(kind, fn));
}

/** dGateUp[T, 2F] (overwritten): gate half dOut * up * act'(gate), up half dOut * act(gate). */
export function gatedActFusedBackward(gpu: Gpu, dOut: Tensor, gateUp: Tensor, dGateUp: Tensor, kind: GatedActKind): void {
  const fn = 'gatedActFusedBackward';
  requireF32(fn, ['dOut', dOut], ['gateUp', gateUp], ['dGateUp', dGateUp]);
  const { T, F } = fusedShape(fn, gateUp, dOut);
  sameShape(fn, ['gateUp', gateUp], ['dGateUp', dGateUp]);
  distinctBuffers(fn, [['dGateUp', dGateUp]], [['dOut', dOut], ['gateUp', gateUp]]);
  launch(gpu, 'gated_bwd_fused', [dOut, gateUp, dGateUp], T * F, [T * F, F, 2 * F, 0, 2 * F, F], actId(kind, fn));
}

// ---- elementwise -------------------------------------------------------------------------------

function sameCount(fn: string, a: [string, Tensor], b: [string, Tensor]): number {
  const na = numel(a[1].shape), nb = numel(b[1].shape);
  if (na !== nb) throw new Error(`${fn}: ${a[0]} ${shapeStr(a[1].shape)} and ${b[0]} ${shapeStr(b[1].shape)} differ in size`);
  return na;
}

/** out = a + b (same number of elements); out may be a or b (in place). */
export function add(gpu: Gpu, a: Tensor, b: Tensor, out: Tensor): void {
  const fn = 'add';
  requireF32(fn, ['a', a], ['b', b], ['out', out]);
  sameCount(fn, ['a', a], ['b', b]);
  const n = sameCount(fn, ['a', a], ['out', out]);
  if (sameView(out, a) && sameView(out, b)) launch(gpu, 'scale_inplace', [out], n, [n, f32(2)]);
  else if (sameView(out, a)) launch(gpu, 'axpy', [b, out], n, [n, f32(1)]);
  else if (sameView(out, b)) launch(gpu, 'axpy', [a, out], n, [n, f32(1)]);
  else {
    distinctBuffers(fn, [['out', out]], [['a', a], ['b', b]]);
    launch(gpu, 'add', [a, b, out], n, [n, f32(0)]);
  }
}

/** y += alpha * x (x may be y). */
export function axpy(gpu: Gpu, x: Tensor, y: Tensor, alpha: number): void {
  const fn = 'axpy';
  requireF32(fn, ['x', x], ['y', y]);
  const n = sameCount(fn, ['x', x], ['y', y]);
  if (sameView(x, y)) return launch(gpu, 'scale_inplace', [y], n, [n, f32(1 + alpha)]);
  distinctBuffers(fn, [['y', y]], [['x', x]]);
  launch(gpu, 'axpy', [x, y], n, [n, f32(alpha)]);
}

/** out = alpha * x; out may be x (in place). */
export function scale(gpu: Gpu, x: Tensor, alpha: number, out: Tensor): void {
  const fn = 'scale';
  requireF32(fn, ['x', x], ['out', out]);
  const n = sameCount(fn, ['x', x], ['out', out]);
  if (sameView(x, out)) return launch(gpu, 'scale_inplace', [out], n, [n, f32(alpha)]);
  distinctBuffers(fn, [['out', out]], [['x', x]]);
  launch(gpu, 'scale', [x, out], n, [n, f32(alpha)]);
}

export interface CopyOptions {
  /** Rows and columns (elements) of the block; default: all of src as one row. */
  rows?: number;
  cols?: number;
  /** Element offsets of the block's first element in src and dst. */
  srcOffset?: number;
  dstOffset?: number;
  /** Elements between consecutive rows; default cols. */
  srcStride?: number;
  dstStride?: number;
  /** Add into dst instead of overwriting it. */
  accumulate?: boolean;
}

/**
 * dst[dstOffset + r * dstStride + c] (=|+=) src[srcOffset + r * srcStride + c] for a rows x cols
 * block: slicing fused projections ([T, q | k | v] into q, k, v) and adding gradients back into
 * them. src and dst (f32) may share a buffer when the ranges are disjoint.
 */
export function copyInto(gpu: Gpu, src: Tensor, dst: Tensor, opts: CopyOptions = {}): void {
  const fn = 'copyInto';
  requireF32(fn, ['src', src], ['dst', dst]);
  const nSrc = numel(src.shape), nDst = numel(dst.shape);
  const rows = opts.rows ?? 1;
  const cols = opts.cols ?? (opts.rows === undefined ? nSrc : Math.floor(nSrc / rows));
  const srcStride = opts.srcStride ?? cols, dstStride = opts.dstStride ?? cols;
  const srcOffset = opts.srcOffset ?? 0, dstOffset = opts.dstOffset ?? 0;
  for (const [k, v] of Object.entries({ rows, cols, srcStride, dstStride, srcOffset, dstOffset })) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`${fn}: ${k} = ${v} must be a non-negative integer`);
  }
  if (rows === 0 || cols === 0) return;
  if (rows > 1 && dstStride < cols) throw new Error(`${fn}: dstStride ${dstStride} < cols ${cols} makes destination rows overlap`);
  const lastSrc = srcOffset + (rows - 1) * srcStride + cols, lastDst = dstOffset + (rows - 1) * dstStride + cols;
  if (lastSrc > nSrc) throw new Error(`${fn}: the block reads up to element ${lastSrc} of src ${shapeStr(src.shape)} (${nSrc} elements)`);
  if (lastDst > nDst) throw new Error(`${fn}: the block writes up to element ${lastDst} of dst ${shapeStr(dst.shape)} (${nDst} elements)`);
  const shared = src.buffer === dst.buffer;
  if (shared) {
    // element offsets relative to the earlier of the two views, which is the one bound
    const base = Math.min(src.offset, dst.offset);
    const s0 = (src.offset - base) / 4 + srcOffset, d0 = (dst.offset - base) / 4 + dstOffset;
    if (blocksOverlap(s0, srcStride, d0, dstStride, rows, cols)) throw new Error(`${fn}: src and dst blocks overlap in one buffer`);
    const end = Math.max(s0 + (rows - 1) * srcStride + cols, d0 + (rows - 1) * dstStride + cols);
    const whole: Tensor = { buffer: src.buffer, offset: base, shape: [end], dtype: 'f32' };
    launch(gpu, 'copy2d_same', [whole], rows * cols, [rows, cols, s0, srcStride, d0, dstStride, opts.accumulate ? 1 : 0]);
    return;
  }
  const contiguous = srcStride === cols && dstStride === cols;
  if (contiguous && !opts.accumulate) {
    gpu.copy(src, dst, rows * cols * 4, srcOffset * 4, dstOffset * 4);
    return;
  }
  const n = rows * cols;
  launch(gpu, 'copy2d', [src, dst], n,
    [rows, cols, srcOffset, srcStride, dstOffset, dstStride, opts.accumulate ? 1 : 0]);
}

/** Whether two rows x cols blocks (element offsets and row strides) share an element. */
function blocksOverlap(s0: number, sStride: number, d0: number, dStride: number, rows: number, cols: number): boolean {
  if (sStride === dStride) {
    // s0 + i S + a = d0 + j S + b  <=>  d0 - s0 = (i - j) S + (a - b), |i - j| < rows, |a - b| < cols
    const delta = d0 - s0;
    if (sStride === 0) return Math.abs(delta) < cols;
    const k0 = Math.floor(delta / sStride);
    for (const k of [k0 - 1, k0, k0 + 1]) {
      if (Math.abs(k) < rows && Math.abs(delta - k * sStride) < cols) return true;
    }
    return false;
  }
  throw new Error(`copyInto: blocks in one buffer need equal row strides (got ${sStride} and ${dStride})`);
}
