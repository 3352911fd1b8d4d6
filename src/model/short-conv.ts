// LFM2's gated short convolution (transformers' Lfm2ShortConv) as a token mixer, forward and
// backward: in_proj splits the normed hidden state into B | C | x (hidden channels each), then
//   y = out_proj(C * conv(B * x))
// with a causal depthwise conv1d of conv_L_cache taps, no bias and no activation. For generation
// the conv carries its last K - 1 inputs (B * x) as a state, in place of a KV cache; packed
// sequences restart it at each segment.

import type { Gpu } from '../gpu/runtime';
import type { Tensor } from '../gpu/tensor';
import { gatedActBackward, gatedActForward } from '../kernels/act';
import { conv1dBackward, conv1dForward, type Conv1dShape } from '../kernels/conv1d';
import { axpy, copyInto } from '../kernels/elementwise';
import type { ShortConvParams, SiteKind } from './model';

/** The mixer's activations (activations.ts's shortConvActivationShapes). */
export interface ShortConvActs {
  bcx: Tensor;
  b: Tensor;
  c: Tensor;
  x: Tensor;
  bx: Tensor;
  conv: Tensor;
  y: Tensor;
}

/** The backward's working set for the mixer (gradientShapes' dSc*). */
export interface ShortConvGrads {
  dScY: Tensor;
  dScConv: Tensor;
  dScBx: Tensor;
  dScB: Tensor;
  dScC: Tensor;
  dScX: Tensor;
  dScBcx: Tensor;
  dScW: Tensor;
}

export type SiteForward = (kind: SiteKind, x: Tensor, y: Tensor) => void;
export type SiteBackward = (kind: SiteKind, x: Tensor, dy: Tensor, dx: Tensor, accumulateDx: boolean) => void;

export interface ShortConvShape {
  B: number;
  S: number;
  hidden: number;
  kernel: number;
  /** Segment ids of packed sequences (training), or null. */
  segments: Tensor | null;
}

const convShape = (s: ShortConvShape, segments: Tensor | null): Conv1dShape => ({
  batch: s.B, len: s.S, channels: s.hidden, kernel: s.kernel, segments, silu: false,
});

const taps = (p: ShortConvParams, s: ShortConvShape): Tensor => ({ ...p.conv.value, shape: [s.hidden, s.kernel] });

/** h [T, D] -> out [T, D]; with a state [K - 1, D] the conv continues from it and updates it (generation). */
export function shortConvForward(
  gpu: Gpu, s: ShortConvShape, p: ShortConvParams, h: Tensor, a: ShortConvActs, out: Tensor, site: SiteForward, state: Tensor | null,
): void {
  const T = s.B * s.S, D = s.hidden;
  site('in_proj', h, a.bcx);
  copyInto(gpu, a.bcx, a.b, { rows: T, cols: D, srcStride: 3 * D });
  copyInto(gpu, a.bcx, a.c, { rows: T, cols: D, srcOffset: D, srcStride: 3 * D });
  copyInto(gpu, a.bcx, a.x, { rows: T, cols: D, srcOffset: 2 * D, srcStride: 3 * D });
  gatedActForward(gpu, a.b, a.x, a.bx, 'identity');
  conv1dForward(gpu, convShape(s, state ? null : s.segments), a.bx, taps(p, s), a.conv, state);
  gatedActForward(gpu, a.c, a.conv, a.y, 'identity');
  site('out_proj', a.y, out);
}

/** dOut [T, D] -> dH [T, D] (overwritten); the taps' gradient is added into p.conv.grad when it has one. */
export function shortConvBackward(
  gpu: Gpu, s: ShortConvShape, p: ShortConvParams, h: Tensor, a: ShortConvActs, dOut: Tensor, g: ShortConvGrads, dH: Tensor, back: SiteBackward,
): void {
  const T = s.B * s.S, D = s.hidden;
  back('out_proj', a.y, dOut, g.dScY, false);
  gatedActBackward(gpu, g.dScY, a.c, a.conv, g.dScC, g.dScConv, 'identity');
  conv1dBackward(gpu, convShape(s, s.segments), g.dScConv, a.bx, taps(p, s), g.dScBx, p.conv.grad ? g.dScW : null);
  if (p.conv.grad) axpy(gpu, g.dScW, { ...p.conv.grad, shape: [D, s.kernel] }, 1);
  gatedActBackward(gpu, g.dScBx, a.b, a.x, g.dScB, g.dScX, 'identity');
  copyInto(gpu, g.dScB, g.dScBcx, { rows: T, cols: D, dstStride: 3 * D });
  copyInto(gpu, g.dScC, g.dScBcx, { rows: T, cols: D, dstOffset: D, dstStride: 3 * D });
  copyInto(gpu, g.dScX, g.dScBcx, { rows: T, cols: D, dstOffset: 2 * D, dstStride: 3 * D });
  back('in_proj', h, g.dScBcx, dH, false);
}
