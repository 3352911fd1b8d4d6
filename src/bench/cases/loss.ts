// lm_head + cross-entropy cases, one list for both uses: tests/kernels.loss.test.ts checks the
// small ones against the f64 reference, the kernel benchmark times the real one (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { lmHeadCrossEntropy } from '../../kernels/loss';
import { filler, type Scale, type Timed } from './timed';

export interface LossCase {
  name: string;
  /** Rows of h [T, D]; the weight is [V, D]. */
  T: number;
  D: number;
  V: number;
  /** Vocabulary columns per chunk (or per caller workspace). */
  chunk?: number;
  softcap?: number;
  /** Rows of the weight's first part, for a weight in two parts. */
  split?: number;
  bench?: boolean;
}

export const LOSS_CASES: readonly LossCase[] = [
  { name: 'chunks that do not divide V', T: 7, D: 24, V: 1000, chunk: 384 },
  { name: 'one row, one chunk, soft-capped', T: 1, D: 40, V: 130, softcap: 2 },
  { name: 'split weight, soft-capped, caller workspace', T: 9, D: 30, V: 700, split: 450, chunk: 150, softcap: 3 },
  { name: 'forward only', T: 5, D: 16, V: 300, chunk: 100 },
  { name: 'Qwen2.5-0.5B, 2048 tokens', T: 2048, D: 896, V: 151936, bench: true },
];

export const lossCase = (name: string): LossCase => {
  const c = LOSS_CASES.find((x) => x.name === name);
  if (!c) throw new Error(`no loss case "${name}"`);
  return c;
};

/** Forward and the dH backward (the LoRA path: no lm_head weight gradient). */
export function lossTimed(gpu: Gpu, c: LossCase, n: Scale): Timed {
  const [T, D, V] = [n(c.T), n(c.D), n(c.V)];
  const h = gpu.upload(filler(T * D), [T, D]), w = gpu.upload(filler(V * D), [V, D]);
  const labels = gpu.upload(Int32Array.from({ length: T }, (_, i) => (i * 31) % V), [T], 'i32');
  const loss = gpu.tensor([T]), dH = gpu.tensor([T, D]);
  return {
    kernel: 'lm_head + cross-entropy fwd+bwd',
    shape: `T=${T} D=${D} V=${V}`,
    flops: 3 * 2 * T * D * V,
    run: () => lmHeadCrossEntropy(gpu, h, w, labels, { loss, dH }, { gradScale: 1 / T, ...(c.softcap ? { softcap: c.softcap } : {}) }),
    release: () => gpu.release(h, w, labels, loss, dH),
  };
}
