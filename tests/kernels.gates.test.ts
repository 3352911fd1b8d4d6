// Kernel family: gates (shaders/gates.wgsl, src/kernels/gates.ts)
import { describe, expect, it } from 'vitest';
import { deltaGatesBackward, deltaGatesForward } from '../src/kernels/gates';
import { expectClose, makeRng } from './helpers/check';
import { poisoned, testGpu } from './helpers/gpu';
import { gatesBackwardRef, gatesRef } from './reference/delta-rule';

describe('delta gates', () => {
  for (const [N, H] of [[1, 1], [37, 16], [300, 3]] as const)
    it(`forward and backward on N ${N}, Hv ${H}`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      const a = rng.randn(N * H, 3), b = rng.randn(N * H, 3), aLog = rng.uniform(H, -4, 2.7), dt = rng.randn(H);
      a[0] = 30; // softplus's linear branch
      if (N * H > 1) a[1] = -40; // and its far negative tail
      const up = (x: Float32Array) => gpu.upload(x, [x.length]);
      const [ta, tb, tl, tdt] = [up(a), up(b), up(aLog), up(dt)];
      const g = poisoned(gpu, [N * H]), beta = poisoned(gpu, [N * H]);
      deltaGatesForward(gpu, H, ta, tb, tl, tdt, g, beta);
      const ref = gatesRef(a, b, aLog, dt, N, H);
      expectClose(await gpu.readF32(g), ref.g, 1e-5, 'g', rng.seed);
      expectClose(await gpu.readF32(beta), ref.beta, 1e-6, 'beta', rng.seed);

      const dg = rng.randn(N * H), dbeta = rng.randn(N * H);
      const gr = gatesBackwardRef(dg, dbeta, a, b, aLog, dt, N, H);
      const [tdg, tdb] = [up(dg), up(dbeta)];
      const da = poisoned(gpu, [N * H]), db = poisoned(gpu, [N * H]), dALog = poisoned(gpu, [H]), dDt = poisoned(gpu, [H]);
      deltaGatesBackward(gpu, H, tdg, tdb, ta, tb, tl, tdt, da, db, { dALog, dDtBias: dDt });
      expectClose(await gpu.readF32(da), gr.da, 1e-5, 'da', rng.seed);
      expectClose(await gpu.readF32(db), gr.db, 1e-5, 'db', rng.seed);
      expectClose(await gpu.readF32(dALog), gr.daLog, 1e-5, 'dA_log', rng.seed);
      expectClose(await gpu.readF32(dDt), gr.ddtBias, 1e-5, 'ddt_bias', rng.seed);
      deltaGatesBackward(gpu, H, tdg, tdb, ta, tb, tl, tdt, da, db, { dALog, dDtBias: dDt, accumulate: true });
      expectClose(await gpu.readF32(dALog), gr.daLog.map((v) => 2 * v), 1e-5, 'dA_log accumulated', rng.seed);
      gpu.release(ta, tb, tl, tdt, g, beta, tdg, tdb, da, db, dALog, dDt);
    });

  it('reports mismatched shapes and aliasing', async () => {
    const gpu = await testGpu();
    const t = (n: number) => gpu.tensor([n]);
    const a = t(6);
    expect(() => deltaGatesForward(gpu, 4, a, t(6), t(4), t(4), t(6), t(6))).toThrow(/a \[6\] is not \[N, 4\]/);
    expect(() => deltaGatesForward(gpu, 3, a, t(6), t(2), t(3), t(6), t(6))).toThrow(/A_log \[2\] must have 3 elements/);
    expect(() => deltaGatesForward(gpu, 3, a, t(6), t(3), t(3), a, t(6))).toThrow(/g must not share a buffer with a/);
  });
});
