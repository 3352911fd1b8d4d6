// OFT merged into a base weight on the host (src/export/oft-merge.ts) against the f64 reference
// written from PEFT's code: x·W'ᵀ is the adapter's forward (x·R)·Wᵀ.
import { describe, expect, it } from 'vitest';
import { mergeOft } from '../src/export/oft-merge';
import { triangleSize } from '../src/kernels/oft';
import { expectClose, makeRng } from './helpers/check';
import { refOftForward, refOftMerge, refOftRotation } from './reference/oft';

describe('OFT merge', () => {
  for (const terms of [5, 2, null]) {
    it(`W' = W · block_diag(R)ᵀ gives the adapter's outputs (${terms === null ? 'exact Cayley' : `Neumann ${terms} terms`})`, () => {
      const rng = makeRng();
      const [T, N, K, b] = [3, 5, 24, 8];
      const W = rng.randn(N * K, 0.3), x = rng.randn(T * K);
      const skew = rng.randn((K / b) * triangleSize(b), 0.1);
      const merged = mergeOft(W, N, K, skew, b, terms);
      expectClose(merged, refOftMerge(W, N, K, refOftRotation(skew, K / b, b, terms), b), 1e-6, 'merged weight', rng.seed);
      const y = new Float64Array(T * N);
      for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) y[t * N + n]! += x[t * K + k]! * merged[n * K + k]!;
      expectClose(y, refOftForward({ T, K, N, b, x, W, skew, terms }), 1e-6, 'x·W\'ᵀ vs (x·R)·Wᵀ', rng.seed);
      expect(merged).not.toEqual(W);
    });
  }
});
