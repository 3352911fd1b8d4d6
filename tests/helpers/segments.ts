// Segment ids of packed sequences for kernel tests.
import type { Rng } from './check';

/** [B, T] ids: a new segment starts with probability pNew at each position after the first. */
export function segmentIds(rng: Rng, B: number, T: number, pNew: number): Int32Array {
  const seg = new Int32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 1, id = 0; t < T; t++) seg[b * T + t] = rng.next() < pNew ? ++id : id;
  return seg;
}
