// Token sampling cases, one list for both uses: tests/kernels.sample.test.ts checks the small
// vocabularies against the CPU reference, the kernel benchmark times the real one (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { sampleToken } from '../../kernels/sample';
import { filler, type Scale, type Timed } from './timed';

export interface SampleCase {
  /** Vocabulary size. */
  V: number;
  /** Integer logits: many ties at the top-k / top-p cutoffs. */
  ties?: boolean;
  bench?: boolean;
}

export const SAMPLE_CASES: readonly SampleCase[] = [
  { V: 300 },
  { V: 5003 },
  { V: 1000, ties: true },
  { V: 151936, bench: true }, // Qwen2.5's vocabulary
];

/** One token with temperature, top-k, top-p and a repetition penalty. */
export function sampleTimed(gpu: Gpu, c: SampleCase, n: Scale): Timed {
  const V = n(c.V);
  const logits = gpu.upload(filler(V), [V]), out = gpu.tensor([1], 'u32');
  const history = gpu.upload(Uint32Array.from({ length: 64 }, (_, i) => (i * 7919) % V), [64], 'u32');
  return {
    kernel: 'sampleToken (top-k 40, top-p 0.9, penalty)',
    shape: `V=${V}`,
    flops: 0,
    bytes: 4 * V,
    run: () => sampleToken(gpu, logits, out, { temperature: 0.7, topK: 40, topP: 0.9, repetitionPenalty: 1.1, history, random: 0.5 }),
    release: () => gpu.release(logits, out, history),
  };
}
