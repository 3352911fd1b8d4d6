// Causal conv1d cases, one list for both uses: tests/kernels.conv1d.test.ts checks the small ones
// against the f64 reference, the kernel benchmark times the real one (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { conv1dBackward, conv1dForward, type Conv1dShape } from '../../kernels/conv1d';
import { filler, type Scale, type Timed } from './timed';

export interface Conv1dCase extends Conv1dShape {
  bench?: boolean;
}

export const CONV1D_CASES: readonly Conv1dCase[] = [
  { batch: 1, len: 1, channels: 1, kernel: 1 },
  { batch: 2, len: 7, channels: 5, kernel: 4 },
  { batch: 1, len: 2, channels: 300, kernel: 4 }, // fewer tokens than the kernel
  { batch: 3, len: 9, channels: 33, kernel: 3 },
  // Qwen3.5-0.8B-shaped: q, k, v channels of 16 key and 16 value heads of 128, 512 tokens
  { batch: 1, len: 512, channels: 6144, kernel: 4, bench: true },
];

/** The forward, or the backward with the weight gradient. */
export function conv1dTimed(gpu: Gpu, c: Conv1dCase, n: Scale, backward: boolean): Timed {
  const s = { ...c, len: n(c.len) };
  const N = s.batch * s.len * s.channels;
  const x = gpu.upload(filler(N), [s.batch, s.len, s.channels]), w = gpu.upload(filler(s.channels * s.kernel), [s.channels, s.kernel]);
  const y = gpu.tensor([N]), dx = gpu.tensor([N]), dw = gpu.tensor([s.channels * s.kernel]);
  return {
    kernel: `conv1d ${backward ? 'backward (dx, dw)' : 'forward'}`,
    shape: `${s.batch}x${s.len}x${s.channels} k${s.kernel}`,
    flops: (backward ? 6 * s.kernel + 6 : 2 * s.kernel + 4) * N,
    bytes: (backward ? 6 : 2) * 4 * N,
    run: backward ? () => conv1dBackward(gpu, s, y, x, w, dx, dw) : () => conv1dForward(gpu, s, x, w, y),
    release: () => gpu.release(x, w, y, dx, dw),
  };
}
