// RMSNorm cases, one list for both uses: tests/kernels.norm.test.ts checks the small ones against
// the f64 reference, the kernel benchmark times the real one (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { rmsNormBackward, rmsNormForward } from '../../kernels/norm';
import { filler, type Scale, type Timed } from './timed';

export interface RmsNormCase {
  /** Shape of x; the norm runs over the last dimension. */
  shape: number[];
  /** 1: Gemma's (1 + w). */
  offset: 0 | 1;
  bench?: boolean;
}

export const RMS_NORM_CASES: readonly RmsNormCase[] = [
  { shape: [1, 1], offset: 0 }, // one element
  { shape: [1, 300], offset: 1 }, // one row
  { shape: [37, 130], offset: 0 }, // D not a multiple of the workgroup
  { shape: [5, 2051], offset: 1 },
  { shape: [7, 3, 128], offset: 1 }, // q/k norm [T, H, Dh]
  { shape: [9, 2, 80], offset: 0 },
  { shape: [4096, 896], offset: 0, bench: true }, // Qwen2.5-0.5B's hidden states at 8 x 512
];

/** The forward, or the backward with the weight gradient (its rstd from one forward). */
export function rmsNormTimed(gpu: Gpu, c: RmsNormCase, n: Scale, backward: boolean): Timed {
  const D = c.shape[c.shape.length - 1]!, R = n(c.shape.slice(0, -1).reduce((a, b) => a * b, 1));
  const x = gpu.upload(filler(R * D), [R, D]), w = gpu.upload(filler(D), [D]);
  const y = gpu.tensor([R, D]), rstd = gpu.tensor([R]), dx = gpu.tensor([R, D]), dw = gpu.tensor([D]);
  const opts = { eps: 1e-6, offset: c.offset };
  rmsNormForward(gpu, x, w, y, rstd, opts);
  const bytes = 4 * R * D;
  return {
    kernel: `rmsNorm ${backward ? 'backward (dx, dw)' : 'forward'}`,
    shape: `${R}x${D}`,
    flops: (backward ? 9 : 4) * R * D,
    bytes: backward ? 4 * bytes : 2 * bytes,
    run: backward ? () => rmsNormBackward(gpu, y, x, w, rstd, dx, dw, opts) : () => rmsNormForward(gpu, x, w, y, rstd, opts),
    release: () => gpu.release(x, w, y, rstd, dx, dw),
  };
}
