// Elementwise cases, one list for both uses: tests/kernels.elementwise.test.ts checks the small
// ones, the kernel benchmark times the real ones (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { add, copyInto } from '../../kernels/elementwise';
import { filler, type Scale, type Timed } from './timed';

export interface ElementwiseCase {
  /** add / axpy / scale over n elements. */
  kind: 'arithmetic';
  n: number;
  bench?: boolean;
}

export interface CopyCase {
  /** copyInto: the k block out of a fused [T, Q + 2 KV] projection, and gradients back into it. */
  kind: 'copy';
  T: number;
  Q: number;
  KV: number;
  bench?: boolean;
}

export const ELEMENTWISE_CASES: readonly (ElementwiseCase | CopyCase)[] = [
  { kind: 'arithmetic', n: 1000 },
  { kind: 'copy', T: 7, Q: 12, KV: 5 },
  { kind: 'arithmetic', n: 4096 * 896, bench: true }, // a residual add at 8 x 512 tokens of Qwen2.5-0.5B
  { kind: 'copy', T: 4096, Q: 896, KV: 128, bench: true },
];

export function elementwiseTimed(gpu: Gpu, c: ElementwiseCase | CopyCase, n: Scale): Timed {
  if (c.kind === 'arithmetic') {
    const N = n(c.n);
    const a = gpu.upload(filler(N), [N]), b = gpu.upload(filler(N), [N]), out = gpu.tensor([N]);
    return { kernel: 'add', shape: `${N}`, flops: N, bytes: 3 * 4 * N, run: () => add(gpu, a, b, out), release: () => gpu.release(a, b, out) };
  }
  const T = n(c.T), W = c.Q + 2 * c.KV;
  const qkv = gpu.upload(filler(T * W), [T, W]), k = gpu.tensor([T, c.KV]);
  return {
    kernel: 'copyInto (strided, accumulate)',
    shape: `${T}x${c.KV} of ${T}x${W}`,
    flops: T * c.KV,
    bytes: 3 * 4 * T * c.KV,
    run: () => copyInto(gpu, qkv, k, { rows: T, cols: c.KV, srcOffset: c.Q, srcStride: W, accumulate: true }),
    release: () => gpu.release(qkv, k),
  };
}
