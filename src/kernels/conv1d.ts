// Causal depthwise conv1d + SiLU over time (shaders/conv1d.wgsl): Gated DeltaNet's short
// convolution of its q/k/v channels and Mamba-2's of x, B and C (with a bias), transformers'
// causal_conv1d_fn / causal_conv1d_update; with `silu: false`, LFM2's short convolution (no
// activation).
//
//   x, y: [B, T, C]   w: [C, K] (conv1d.weight squeezed)   state: [B, K - 1, C]
//
// With a state the forward reads it as the K - 1 inputs before x and then replaces it with the last
// K - 1 inputs (prefill and decode steps); without one the left context is zeros (training). The
// backward is for training: zero left context, dx overwritten, dw (when given) overwritten with the
// sum over batch and time in a fixed order. Packed sequences (segments: i32 [B, T], training, no
// state): an input of another segment counts as zero.

import source from '../../shaders/conv1d.wgsl';
import type { Gpu, Param } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';
import { distinctBuffers, requireF32 } from './checks';
import { scratch } from './scratch';

export interface Conv1dShape {
  batch: number;
  len: number;
  channels: number;
  kernel: number;
  /** Segment ids i32 [B, T] of packed sequences. */
  segments?: Tensor | null;
  /** conv1d.bias [C], added before the SiLU (Mamba-2). */
  bias?: Tensor | null;
  /** SiLU on the output (default true); false for LFM2's plain convolution. */
  silu?: boolean;
}

const WG = 256;

type Entry = 'conv1d_forward' | 'conv1d_state_update' | 'conv1d_backward_preact' | 'conv1d_backward_input' | 'conv1d_backward_weight' | 'conv1d_backward_bias';

function launch(gpu: Gpu, entry: Entry, silu: boolean, bindings: Tensor[], n: number, params: Param[]): void {
  if (n === 0) return;
  gpu.dispatch(gpu.pipeline(`${entry}:${silu ? 'silu' : 'linear'}`, () => shaderVariant(source, entry, { SILU: silu })), bindings, gpu.grid(Math.ceil(n / WG)), params);
}

function check(fn: string, s: Conv1dShape, named: [string, Tensor, number][]): Param[] {
  for (const [name, v] of [['batch', s.batch], ['len', s.len], ['channels', s.channels], ['kernel', s.kernel]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${fn}: ${name} = ${v} must be a positive integer`);
  }
  for (const [name, t, n] of named) {
    requireF32(fn, [name, t]);
    if (numel(t.shape) !== n) throw new Error(`${fn}: ${name} ${shapeStr(t.shape)} must have ${n} elements for batch ${s.batch}, len ${s.len}, channels ${s.channels}, kernel ${s.kernel}`);
  }
  if (s.segments) {
    if (s.segments.dtype !== 'i32') throw new Error(`${fn}: segments must be i32, not ${s.segments.dtype}`);
    if (numel(s.segments.shape) !== s.batch * s.len) throw new Error(`${fn}: segments ${shapeStr(s.segments.shape)} must have ${s.batch * s.len} elements ([B, T])`);
  }
  if (s.bias) {
    requireF32(fn, ['bias', s.bias]);
    if (numel(s.bias.shape) !== s.channels) throw new Error(`${fn}: bias ${shapeStr(s.bias.shape)} must have ${s.channels} elements (one per channel)`);
  }
  return [s.batch, s.len, s.channels, s.kernel];
}

/** y = silu(causal depthwise conv of x) (or the conv itself with silu: false); with a state, it is the left context and is updated in place. */
export function conv1dForward(gpu: Gpu, s: Conv1dShape, x: Tensor, w: Tensor, y: Tensor, state: Tensor | null = null): void {
  const fn = 'conv1dForward';
  const N = s.batch * s.len * s.channels;
  const named: [string, Tensor, number][] = [['x', x, N], ['w', w, s.channels * s.kernel], ['y', y, N]];
  if (state) named.push(['state', state, s.batch * (s.kernel - 1) * s.channels]);
  const dims = check(fn, s, named);
  distinctBuffers(fn, [['y', y]], [['x', x], ['w', w], ...(state ? [['state', state] as [string, Tensor]] : [])]);
  if (state) distinctBuffers(fn, [['state', state]], [['x', x]]);
  if (state && s.segments) throw new Error(`${fn}: a conv state and packed segments do not go together (segments are for training)`);
  if (s.segments) distinctBuffers(fn, [['y', y]], [['segments', s.segments]]);
  if (s.bias) distinctBuffers(fn, [['y', y], ...(state ? [['state', state] as [string, Tensor]] : [])], [['bias', s.bias]]);
  const silu = s.silu ?? true;
  launch(gpu, 'conv1d_forward', silu, [s.segments ?? x, x, w, state ?? x, y, s.bias ?? x], N, [...dims, state ? 1 : 0, s.segments ? 1 : 0, s.bias ? 1 : 0]);
  if (state && s.kernel > 1) launch(gpu, 'conv1d_state_update', silu, [x, state], s.batch * s.channels, [...dims, 1, 0, 0]);
}

/**
 * dx (overwritten) and, when dw / dbias are given, the weight and bias gradients (overwritten);
 * zero left context.
 */
export function conv1dBackward(gpu: Gpu, s: Conv1dShape, dy: Tensor, x: Tensor, w: Tensor, dx: Tensor, dw: Tensor | null, dbias: Tensor | null = null): void {
  const fn = 'conv1dBackward';
  const N = s.batch * s.len * s.channels;
  const named: [string, Tensor, number][] = [['dy', dy, N], ['x', x, N], ['w', w, s.channels * s.kernel], ['dx', dx, N]];
  if (dw) named.push(['dw', dw, s.channels * s.kernel]);
  const dims = check(fn, s, named);
  distinctBuffers(fn, [['dx', dx], ...(dw ? [['dw', dw] as [string, Tensor]] : [])], [['dy', dy], ['x', x], ['w', w]]);
  if (dw && dw.buffer === dx.buffer) throw new Error(`${fn}: dw must not share a buffer with dx`);
  if (s.segments) distinctBuffers(fn, [['dx', dx], ...(dw ? [['dw', dw] as [string, Tensor]] : [])], [['segments', s.segments]]);
  if (dbias) {
    if (!s.bias) throw new Error(`${fn}: dbias is given but the convolution has no bias`);
    requireF32(fn, ['dbias', dbias]);
    if (numel(dbias.shape) !== s.channels) throw new Error(`${fn}: dbias ${shapeStr(dbias.shape)} must have ${s.channels} elements (one per channel)`);
    distinctBuffers(fn, [['dbias', dbias]], [['dy', dy], ['x', x], ['w', w], ['dx', dx], ['bias', s.bias], ...(dw ? [['dw', dw] as [string, Tensor]] : [])]);
  }
  const da = scratch(gpu, 'conv1d.da', N);
  const seg = s.segments ?? x;
  const p = [...dims, 0, s.segments ? 1 : 0, s.bias ? 1 : 0];
  const silu = s.silu ?? true;
  launch(gpu, 'conv1d_backward_preact', silu, [seg, dy, x, w, da, s.bias ?? x], N, p);
  launch(gpu, 'conv1d_backward_input', silu, [seg, da, w, dx], N, p);
  if (dw) launch(gpu, 'conv1d_backward_weight', silu, [seg, da, x, dw], s.channels * s.kernel, p);
  if (dbias) launch(gpu, 'conv1d_backward_bias', silu, [da, dbias], s.channels, p);
}
