// Mixing several datasets (LLaMA-Factory's mix_strategy).

import { rng } from './random.ts';

/**
 * HF datasets' interleave_datasets, as LLaMA-Factory's mix strategies use it: interleave_under stops
 * when one dataset is exhausted, interleave_over when all are (restarting the exhausted ones),
 * interleave_once when all are (without repeats). Without probabilities: round robin.
 * (Seeded, but not numpy's generator: the order differs from HF's.)
 */
export function interleave<T>(lists: T[][], mix: string, probs: number[] | undefined, seed: number): T[] {
  const n = lists.length;
  const pos = new Array<number>(n).fill(0);
  const done = new Array<boolean>(n).fill(false);
  const r = rng(seed);
  const out: T[] = [];
  const total = lists.reduce((s, l) => s + l.length, 0);
  if (lists.some((l) => l.length === 0)) {
    if (mix === 'interleave_under') return [];
  }
  let turn = 0;
  for (let guard = 0; guard < total * n * 4 + 16; guard++) {
    let i: number;
    if (probs) {
      const live = probs.map((p, k) => (mix === 'interleave_once' && done[k] ? 0 : p));
      const sum = live.reduce((a, b) => a + b, 0);
      if (sum <= 0) break;
      let x = r() * sum;
      i = 0;
      while (i < n - 1 && x >= live[i]) x -= live[i++];
    } else {
      i = turn++ % n;
      if (mix === 'interleave_once' && done[i]) {
        if (done.every(Boolean)) break;
        continue;
      }
    }
    const l = lists[i];
    if (!l.length) {
      done[i] = true;
      if (done.every(Boolean)) break;
      continue;
    }
    out.push(l[pos[i] % l.length]);
    pos[i]++;
    if (pos[i] >= l.length) {
      done[i] = true;
      if (mix === 'interleave_under' || done.every(Boolean)) break;
    }
  }
  return out;
}
