// Rotary embedding cases, one list for both uses: tests/kernels.rope.test.ts checks the small ones
// (forward, in place, backward) against the f64 reference, the kernel benchmark times the real one
// (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { ropeForward, ropeInvFreq } from '../../kernels/rope';
import { filler, type Scale, type Timed } from './timed';

export interface RopeCase {
  /** x is [T, H, Dh]. */
  T: number;
  H: number;
  Dh: number;
  theta: number;
  /** Rotated fraction of the head dim. */
  partial: number;
  /** transformers' attention_scaling. */
  scaling: number;
  bench?: boolean;
}

export const ROPE_CASES: readonly RopeCase[] = [
  { T: 1, H: 1, Dh: 2, theta: 10000, partial: 1, scaling: 1 },
  { T: 5, H: 3, Dh: 64, theta: 10000, partial: 1, scaling: 1 },
  { T: 7, H: 2, Dh: 80, theta: 10000, partial: 0.4, scaling: 1 }, // Phi-2 style: 32 of 80 dims rotate
  { T: 3, H: 4, Dh: 128, theta: 500000, partial: 0.75, scaling: 1 }, // rotary 96 of 128
  { T: 11, H: 1, Dh: 96, theta: 1000000, partial: 1, scaling: 1.25 },
  { T: 4096, H: 14, Dh: 64, theta: 1000000, partial: 1, scaling: 1, bench: true }, // Qwen2.5-0.5B queries at 8 x 512
];

export function ropeTimed(gpu: Gpu, c: RopeCase, n: Scale): Timed {
  const T = n(c.T), { H, Dh } = c;
  const inv = ropeInvFreq({ headDim: Dh, theta: c.theta, partialRotaryFactor: c.partial });
  const x = gpu.upload(filler(T * H * Dh), [T, H, Dh]), y = gpu.tensor([T, H, Dh]);
  const positions = gpu.upload(Int32Array.from({ length: T }, (_, t) => t % 512), [T], 'i32');
  const invFreq = gpu.upload(inv, [inv.length]);
  return {
    kernel: 'rope forward',
    shape: `${T}x${H}x${Dh}`,
    flops: 6 * T * H * inv.length,
    bytes: 2 * 4 * T * H * Dh,
    run: () => ropeForward(gpu, x, y, positions, invFreq, { attentionScaling: c.scaling }),
    release: () => gpu.release(x, y, positions, invFreq),
  };
}
