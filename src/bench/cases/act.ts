// Gated activation cases, one list for both uses: tests/kernels.act.test.ts checks the small ones
// (every activation) against the f64 reference, the kernel benchmark times the real one (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { gatedActBackward, gatedActForward } from '../../kernels/act';
import { filler, type Scale, type Timed } from './timed';

export interface GatedActCase {
  /** gate, up and out are [T, F]; fused: gate and up side by side in one [T, 2F] tensor. */
  T: number;
  F: number;
  fused?: boolean;
  bench?: boolean;
}

export const GATED_ACT_CASES: readonly GatedActCase[] = [
  { T: 1, F: 1 },
  { T: 3, F: 37 },
  { T: 19, F: 70 },
  { T: 5, F: 43, fused: true },
  { T: 4096, F: 4864, bench: true }, // Qwen2.5-0.5B's MLP at 8 x 512
];

/** SwiGLU forward, or its backward. */
export function gatedActTimed(gpu: Gpu, c: GatedActCase, n: Scale, backward: boolean): Timed {
  const T = n(c.T), F = c.F, shape = [T, F];
  const gate = gpu.upload(filler(T * F), shape), up = gpu.upload(filler(T * F), shape);
  const out = gpu.tensor(shape), dGate = gpu.tensor(shape), dUp = gpu.tensor(shape);
  return {
    kernel: `gatedAct silu ${backward ? 'backward' : 'forward'}`,
    shape: `${T}x${F}`,
    flops: (backward ? 12 : 6) * T * F,
    bytes: (backward ? 5 : 3) * 4 * T * F,
    run: backward ? () => gatedActBackward(gpu, out, gate, up, dGate, dUp, 'silu') : () => gatedActForward(gpu, gate, up, out, 'silu'),
    release: () => gpu.release(gate, up, out, dGate, dUp),
  };
}
