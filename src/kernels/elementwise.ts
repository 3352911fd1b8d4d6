// f32 elementwise helpers the engine needs: add, axpy, scale and strided block copies (slicing
// fused projections, adding gradients back into them).

import source from '../../shaders/elementwise.wgsl';
import { f32, type Gpu, type Param } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';
import { distinctBuffers, requireF32 } from './checks';

const WG = 256;

type Entry = 'add' | 'axpy' | 'scale' | 'scale_in_place' | 'copy_into' | 'copy_into_same_buffer';

const sameView = (a: Tensor, b: Tensor): boolean => a.buffer === b.buffer && a.offset === b.offset;

/** One invocation per element over n elements (grid-folded). */
function launch(gpu: Gpu, entry: Entry, bindings: Tensor[], n: number, params: Param[]): void {
  if (n === 0) return;
  gpu.dispatch(gpu.pipeline(entry, () => shaderVariant(source, entry)), bindings, gpu.grid(Math.ceil(n / WG)), params);
}

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
  if (sameView(out, a) && sameView(out, b)) launch(gpu, 'scale_in_place', [out], n, [n, f32(2)]);
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
  if (sameView(x, y)) return launch(gpu, 'scale_in_place', [y], n, [n, f32(1 + alpha)]);
  distinctBuffers(fn, [['y', y]], [['x', x]]);
  launch(gpu, 'axpy', [x, y], n, [n, f32(alpha)]);
}

/** out = alpha * x; out may be x (in place). */
export function scale(gpu: Gpu, x: Tensor, alpha: number, out: Tensor): void {
  const fn = 'scale';
  requireF32(fn, ['x', x], ['out', out]);
  const n = sameCount(fn, ['x', x], ['out', out]);
  if (sameView(x, out)) return launch(gpu, 'scale_in_place', [out], n, [n, f32(alpha)]);
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
    launch(gpu, 'copy_into_same_buffer', [whole], rows * cols, [rows, cols, s0, srcStride, d0, dstStride, opts.accumulate ? 1 : 0]);
    return;
  }
  const contiguous = srcStride === cols && dstStride === cols;
  if (contiguous && !opts.accumulate) {
    gpu.copy(src, dst, rows * cols * 4, srcOffset * 4, dstOffset * 4);
    return;
  }
  const n = rows * cols;
  launch(gpu, 'copy_into', [src, dst], n,
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
