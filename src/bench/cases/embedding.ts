// Embedding cases, one list for both uses: tests/kernels.embedding.test.ts checks the small ones
// against the f64 reference, the kernel benchmark times the real ones (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { embeddingBackward, embeddingForward } from '../../kernels/embedding';
import { filler, type Scale, type Timed } from './timed';

export interface EmbeddingCase {
  /** Tokens; the table is [V, D]. */
  T: number;
  V: number;
  D: number;
  direction: 'forward' | 'backward';
  bench?: boolean;
}

export const EMBEDDING_CASES: readonly EmbeddingCase[] = [
  { T: 1, V: 1, D: 1, direction: 'forward' },
  { T: 1, V: 7, D: 70, direction: 'forward' },
  { T: 37, V: 50, D: 70, direction: 'forward' },
  { T: 6, V: 9, D: 1500, direction: 'forward' },
  { T: 1, V: 4, D: 3, direction: 'backward' },
  { T: 45, V: 30, D: 70, direction: 'backward' },
  { T: 20, V: 5, D: 1300, direction: 'backward' },
  // Qwen2.5-0.5B at 8 x 512 tokens
  { T: 4096, V: 151936, D: 896, direction: 'forward', bench: true },
  { T: 4096, V: 151936, D: 896, direction: 'backward', bench: true },
];

export function embeddingTimed(gpu: Gpu, c: EmbeddingCase, n: Scale): Timed {
  const [T, V, D] = [n(c.T), n(c.V), n(c.D)];
  const idList = Int32Array.from({ length: T }, (_, i) => (i * 7919) % V);
  const table = gpu.upload(filler(V * D), [V, D]), rows = gpu.upload(filler(T * D), [T, D]);
  const ids = gpu.upload(idList, [T], 'i32');
  const forward = c.direction === 'forward';
  return {
    kernel: `embedding ${c.direction}`,
    shape: `T=${T} V=${V} D=${D}`,
    flops: T * D,
    // the backward zeroes the whole table gradient first
    bytes: forward ? 2 * 4 * T * D : 4 * (2 * T * D + V * D),
    run: forward ? () => embeddingForward(gpu, ids, table, rows) : () => embeddingBackward(gpu, idList, rows, table),
    release: () => gpu.release(table, rows, ids),
  };
}
