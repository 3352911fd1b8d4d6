// Fused dequantize-matmul cases (QLoRA base weights), one list for both uses:
// tests/kernels.quant.test.ts checks the small ones against the f64 product with the dequantized
// weight, the kernel benchmark times the real ones (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { qlinearBackwardInput, qlinearForward, quantize, QGEMV_MAX_T, type QuantDType } from '../../kernels/quant';
import { filler, type Scale, type Timed } from './timed';

export interface QlinearCase {
  /** Tokens; the weight is [N, K]. */
  T: number;
  N: number;
  K: number;
  dtype: QuantDType;
  direction: 'forward' | 'backward';
  bench?: boolean;
}

export const QLINEAR_CASES: readonly QlinearCase[] = [
  { T: 1, N: 37, K: 96, dtype: 'q4', direction: 'forward' }, // decode path
  { T: 3, N: 70, K: 32, dtype: 'q8', direction: 'forward' }, // decode path
  { T: 4, N: 5, K: 64, dtype: 'q4', direction: 'forward' }, // decode path, T at its limit
  { T: 2, N: 9, K: 544, dtype: 'q4', direction: 'forward' }, // decode path: all 64 threads of a row busy, some twice (68 words)
  { T: 1, N: 7, K: 288, dtype: 'q8', direction: 'forward' }, // decode path, 72 words per row
  { T: 5, N: 70, K: 96, dtype: 'q8', direction: 'forward' }, // tiled from here
  { T: 37, N: 65, K: 32, dtype: 'q4', direction: 'forward' },
  { T: 70, N: 33, K: 64, dtype: 'q8', direction: 'forward' },
  { T: 1, N: 37, K: 96, dtype: 'q8', direction: 'backward' },
  { T: 5, N: 70, K: 32, dtype: 'q4', direction: 'backward' },
  { T: 37, N: 33, K: 64, dtype: 'q8', direction: 'backward' },
  { T: 70, N: 5, K: 96, dtype: 'q4', direction: 'backward' },
  // K not a multiple of the 32-value block: rows stored padded with zeros
  { T: 2, N: 11, K: 40, dtype: 'q4', direction: 'forward' }, // decode path
  { T: 9, N: 66, K: 72, dtype: 'q8', direction: 'forward' },
  { T: 3, N: 19, K: 20, dtype: 'q8', direction: 'backward' },
  { T: 67, N: 9, K: 104, dtype: 'q4', direction: 'backward' },
  { T: 1, N: 4096, K: 4096, dtype: 'q4', direction: 'forward', bench: true },
  { T: 512, N: 4096, K: 4096, dtype: 'q4', direction: 'forward', bench: true },
  { T: 512, N: 4096, K: 4096, dtype: 'q4', direction: 'backward', bench: true },
];

export function qlinearTimed(gpu: Gpu, c: QlinearCase, n: Scale): Timed {
  const [T, N, K] = [c.T <= QGEMV_MAX_T ? c.T : n(c.T), n(c.N), n(c.K)];
  const w = gpu.upload(filler(N * K), [N, K]);
  const q = quantize(gpu, w, c.dtype);
  gpu.release(w);
  const [inCols, outCols] = c.direction === 'forward' ? [K, N] : [N, K];
  const x = gpu.upload(filler(T * inCols), [T, inCols]), y = gpu.tensor([T, outCols]);
  const codeBytes = c.dtype === 'q4' ? (N * K) / 2 : N * K;
  return {
    kernel: `qlinear ${c.dtype} ${c.direction}${T <= QGEMV_MAX_T ? ' (decode)' : ''}`,
    shape: `${T}x${N}x${K}`,
    flops: 2 * T * N * K,
    bytes: codeBytes + (N * K) / 16,
    run: c.direction === 'forward' ? () => qlinearForward(gpu, x, q, y) : () => qlinearBackwardInput(gpu, x, q, y),
    release: () => gpu.release(q, x, y),
  };
}
