// Kernel family: norm (shaders/norm.wgsl, src/kernels/norm.ts)
import { describe, expect, it } from 'vitest';
import { RMS_NORM_CASES } from '../src/bench/cases/norm';
import { addRmsNormBackward, addRmsNormForward, layerNormForward, l2NormBackward, l2NormForward, rmsNormBackward, rmsNormForward, rmsNormGatedBackward, rmsNormGatedForward } from '../src/kernels/norm';
import { Gpu } from '../src/gpu/runtime';
import { testGpu, poisoned } from './helpers/gpu';
import { expectClose, makeRng } from './helpers/check';
import { finiteDiff } from './helpers/finite-diff';
import { l2NormBackwardRef, l2NormRef, rmsNormGatedBackwardRef, rmsNormGatedRef } from './reference/delta-rule';
import { addRmsNormBackwardRef, addRmsNormRef, layerNormRef, rmsNormBackwardRef, rmsNormRef } from './reference/norm';

describe('norm', () => {
  for (const [R, D] of [[1, 1], [5, 48], [3, 1031]] as const)
    it(`layerNorm forward on [${R}, ${D}] (offset mean, so the centring matters)`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      const x = Float32Array.from(rng.randn(R * D), (v) => 3 + v), w = rng.randn(D), b = rng.randn(D);
      const tx = gpu.upload(x, [R, D]), tw = gpu.upload(w, [D]), tb = gpu.upload(b, [D]), y = poisoned(gpu, [R, D]);
      layerNormForward(gpu, tx, tw, tb, y, { eps: 1e-6 });
      expectClose(await gpu.readF32(y), layerNormRef(x, w, b, R, D, 1e-6), 1e-5, 'layerNorm y', rng.seed);
      expect(() => layerNormForward(gpu, tx, tw, gpu.tensor([D + 1]), y, { eps: 1e-6 })).toThrow(/bias/);
      gpu.release(tx, tw, tb, y);
    });

  it('the reference gradient matches finite differences of the reference forward', () => {
    const rng = makeRng();
    const [R, D, eps] = [3, 7, 1e-6];
    for (const offset of [0, 1]) {
      const x = Float64Array.from(rng.randn(R * D)), w = Float64Array.from(rng.randn(D)), dy = rng.randn(R * D);
      const { dx, dw } = rmsNormBackwardRef(dy, x, w, R, D, eps, offset);
      const loss = () => rmsNormRef(x, w, R, D, eps, offset).y.reduce((s, v, i) => s + v * dy[i]!, 0);
      const fd = (arr: Float64Array, i: number) => finiteDiff(arr, i, loss);
      for (const i of [0, 5, 11, 20]) expect(Math.abs(fd(x, i) - dx[i]!), `dx[${i}] offset ${offset} (SEED=${rng.seed})`).toBeLessThan(1e-7);
      for (const j of [0, 3, 6]) expect(Math.abs(fd(w, j) - dw[j]!), `dw[${j}] offset ${offset} (SEED=${rng.seed})`).toBeLessThan(1e-7);
    }
  });

  for (const { shape, offset } of RMS_NORM_CASES.filter((c) => !c.bench))
    it(`rmsNorm forward and backward on ${JSON.stringify(shape)}, offset ${offset}`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      const D = shape[shape.length - 1]!;
      const R = shape.reduce((a, b) => a * b, 1) / D;
      // one element: dx = r g dy eps / (x^2 + eps) cancels catastrophically unless eps is large
      const eps = D === 1 ? 0.5 : 1e-6;
      const x = rng.randn(R * D, 2), w = rng.randn(D, 0.5), dy = rng.randn(R * D);
      const tx = gpu.upload(x, shape), tw = gpu.upload(w, [D]), tdy = gpu.upload(dy, shape);
      const y = poisoned(gpu, shape), rstd = poisoned(gpu, [R]);
      rmsNormForward(gpu, tx, tw, y, rstd, { eps, offset });
      const ref = rmsNormRef(x, w, R, D, eps, offset);
      expectClose(await gpu.readF32(y), ref.y, 1e-5, 'y', rng.seed);
      expectClose(await gpu.readF32(rstd), ref.rstd, 1e-6, 'rstd', rng.seed);

      const g = rmsNormBackwardRef(dy, x, w, R, D, eps, offset);
      const dx = poisoned(gpu, shape), dw = poisoned(gpu, [D]);
      rmsNormBackward(gpu, tdy, tx, tw, rstd, dx, dw, { offset });
      expectClose(await gpu.readF32(dx), g.dx, 1e-5, 'dx', rng.seed);
      const dw1 = await gpu.readF32(dw);
      expectClose(dw1, g.dw, 1e-5, 'dw', rng.seed);

      // accumulation into both, and bitwise-deterministic dw
      const dx0 = rng.randn(R * D), dw0 = rng.randn(D);
      const tdx = gpu.upload(dx0, shape), tdw = gpu.upload(dw0, [D]);
      rmsNormBackward(gpu, tdy, tx, tw, rstd, tdx, tdw, { offset, accumulateDx: true, accumulateDw: true });
      expectClose(await gpu.readF32(tdx), g.dx.map((v, i) => v + dx0[i]!), 1e-5, 'dx accumulated', rng.seed);
      expectClose(await gpu.readF32(tdw), g.dw.map((v, i) => v + dw0[i]!), 1e-5, 'dw accumulated', rng.seed);
      rmsNormBackward(gpu, tdy, tx, tw, rstd, tdx, dw, { offset });
      expect(Array.from(await gpu.readF32(dw)), 'dw is deterministic').toEqual(Array.from(dw1));

      // a frozen norm (no dw) leaves nothing else written
      const dxOnly = poisoned(gpu, shape);
      rmsNormBackward(gpu, tdy, tx, tw, rstd, dxOnly, null, { offset });
      expectClose(await gpu.readF32(dxOnly), g.dx, 1e-5, 'dx without dw', rng.seed);
      gpu.release(tx, tw, tdy, y, rstd, dx, dw, tdx, tdw, dxOnly);
    });

  it('the fused residual add + RMSNorm reference gradient matches finite differences', () => {
    const rng = makeRng();
    const [R, D, eps, offset] = [2, 6, 1e-6, 1];
    const a = Float64Array.from(rng.randn(R * D)), b = Float64Array.from(rng.randn(R * D)), w = Float64Array.from(rng.randn(D));
    const dy = rng.randn(R * D), dS = rng.randn(R * D);
    const { da, dw } = addRmsNormBackwardRef(dy, dS, a, b, w, R, D, eps, offset);
    const loss = () => {
      const { s, y } = addRmsNormRef(a, b, w, R, D, eps, offset);
      return y.reduce((t, v, i) => t + v * dy[i]!, 0) + s.reduce((t, v, i) => t + v * dS[i]!, 0);
    };
    const fd = (arr: Float64Array, i: number) => finiteDiff(arr, i, loss);
    for (const i of [0, 4, 7, 11]) {
      expect(Math.abs(fd(a, i) - da[i]!), `da[${i}] (SEED=${rng.seed})`).toBeLessThan(1e-7);
      expect(Math.abs(fd(b, i) - da[i]!), `db[${i}] (SEED=${rng.seed})`).toBeLessThan(1e-7);
    }
    for (const j of [0, 5]) expect(Math.abs(fd(w, j) - dw[j]!), `dw[${j}] (SEED=${rng.seed})`).toBeLessThan(1e-7);
  });

  for (const { shape, offset } of RMS_NORM_CASES.filter((c) => !c.bench))
    it(`fused residual add + RMSNorm forward and backward on ${JSON.stringify(shape)}, offset ${offset}`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      const D = shape[shape.length - 1]!;
      const R = shape.reduce((x, y) => x * y, 1) / D;
      const eps = D === 1 ? 0.5 : 1e-6;
      const a = rng.randn(R * D, 2), b = rng.randn(R * D), w = rng.randn(D, 0.5), dy = rng.randn(R * D), dS = rng.randn(R * D);
      const ta = gpu.upload(a, shape), tb = gpu.upload(b, shape), tw = gpu.upload(w, [D]), tdy = gpu.upload(dy, shape);
      const s = poisoned(gpu, shape), y = poisoned(gpu, shape), rstd = poisoned(gpu, [R]);
      addRmsNormForward(gpu, ta, tb, tw, s, y, rstd, { eps, offset });
      const ref = addRmsNormRef(a, b, w, R, D, eps, offset);
      expectClose(await gpu.readF32(s), ref.s, 1e-6, 's', rng.seed);
      expectClose(await gpu.readF32(y), ref.y, 1e-5, 'y', rng.seed);
      expectClose(await gpu.readF32(rstd), ref.rstd, 1e-6, 'rstd', rng.seed);

      const g = addRmsNormBackwardRef(dy, dS, a, b, w, R, D, eps, offset);
      const tdS = gpu.upload(dS, shape), dw = poisoned(gpu, [D]);
      addRmsNormBackward(gpu, tdy, s, tw, rstd, tdS, dw, { offset });
      expectClose(await gpu.readF32(tdS), g.da, 1e-5, 'da = db', rng.seed);
      expectClose(await gpu.readF32(dw), g.dw, 1e-5, 'dw', rng.seed);
      gpu.release(ta, tb, tw, tdy, s, y, rstd, tdS, dw);
    });

  it('rows beyond one grid dimension fold into y', async () => {
    const gpu = foldingGpu(await testGpu());
    const rng = makeRng();
    const R = 2501, D = 5, eps = 1e-5;
    const x = rng.randn(R * D), w = rng.randn(D), dy = rng.randn(R * D);
    const tx = gpu.upload(x, [R, D]), tw = gpu.upload(w, [D]), tdy = gpu.upload(dy, [R, D]);
    const y = poisoned(gpu, [R, D]), rstd = poisoned(gpu, [R]), dx = poisoned(gpu, [R, D]);
    rmsNormForward(gpu, tx, tw, y, rstd, { eps });
    rmsNormBackward(gpu, tdy, tx, tw, rstd, dx, null);
    expect(gpu.grid(R)[1]).toBeGreaterThan(1);
    expectClose(await gpu.readF32(y), rmsNormRef(x, w, R, D, eps).y, 1e-5, 'y', rng.seed);
    expectClose(await gpu.readF32(dx), rmsNormBackwardRef(dy, x, w, R, D, eps).dx, 1e-5, 'dx', rng.seed);
    gpu.release(tx, tw, tdy, y, rstd, dx);
  });

  it('dw over many rows: multi-chunk partial sums', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [R, D] = [3000, 70];
    const x = rng.randn(R * D), w = rng.randn(D), dy = rng.randn(R * D);
    const tx = gpu.upload(x, [R, D]), tw = gpu.upload(w, [D]), tdy = gpu.upload(dy, [R, D]);
    const y = poisoned(gpu, [R, D]), rstd = poisoned(gpu, [R]), dx = poisoned(gpu, [R, D]), dw = poisoned(gpu, [D]);
    rmsNormForward(gpu, tx, tw, y, rstd, { eps: 1e-6, offset: 1 });
    rmsNormBackward(gpu, tdy, tx, tw, rstd, dx, dw, { offset: 1 });
    expectClose(await gpu.readF32(dw), rmsNormBackwardRef(dy, x, w, R, D, 1e-6, 1).dw, 1e-5, 'dw', rng.seed);
    gpu.release(tx, tw, tdy, y, rstd, dx, dw);
  });

  for (const [R, D] of [[1, 1], [7, 128], [40, 33], [3, 700]] as const)
    it(`gated RMSNorm (Qwen3.5's RMSNormGated) and the L2 norm on [${R}, ${D}]`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      // one element: the L2 norm's dx = r dy eps / (x^2 + eps) cancels unless eps is large
      const eps = D === 1 ? 0.5 : 1e-6;
      const x = rng.randn(R * D, 2), z = rng.randn(R * D, 2), w = rng.randn(D, 0.5), dy = rng.randn(R * D);
      const up = (a: Float32Array) => gpu.upload(a, [a.length]);
      const [tx, tz, tw, tdy] = [gpu.upload(x, [R, D]), up(z), up(w), up(dy)];
      const y = poisoned(gpu, [R * D]), rstd = poisoned(gpu, [R]);
      rmsNormGatedForward(gpu, tx, tz, tw, y, rstd, { eps });
      expectClose(await gpu.readF32(y), rmsNormGatedRef(x, z, w, R, D, eps), 1e-5, 'gated y', rng.seed);
      const g = rmsNormGatedBackwardRef(dy, x, z, w, R, D, eps);
      const dx = poisoned(gpu, [R * D]), dz = poisoned(gpu, [R * D]), dw = poisoned(gpu, [D]);
      rmsNormGatedBackward(gpu, tdy, tx, tz, tw, rstd, dx, dz, dw);
      expectClose(await gpu.readF32(dx), g.dx, 1e-5, 'gated dx', rng.seed);
      expectClose(await gpu.readF32(dz), g.dz, 1e-5, 'gated dz', rng.seed);
      expectClose(await gpu.readF32(dw), g.dw, 1e-5, 'gated dw', rng.seed);
      rmsNormGatedBackward(gpu, tdy, tx, tz, tw, rstd, dx, dz, dw, { accumulateDx: true, accumulateDw: true });
      expectClose(await gpu.readF32(dx), g.dx.map((v) => 2 * v), 1e-5, 'gated dx accumulated', rng.seed);
      expectClose(await gpu.readF32(dw), g.dw.map((v) => 2 * v), 1e-5, 'gated dw accumulated', rng.seed);

      const l2 = poisoned(gpu, [R * D]), r = poisoned(gpu, [R]), dxL2 = poisoned(gpu, [R * D]);
      l2NormForward(gpu, tx, D, l2, r, { eps });
      expectClose(await gpu.readF32(l2), l2NormRef(x, R, D, eps), 1e-6, 'l2 y', rng.seed);
      l2NormBackward(gpu, tdy, tx, D, r, dxL2);
      expectClose(await gpu.readF32(dxL2), l2NormBackwardRef(dy, x, R, D, eps), 1e-5, 'l2 dx', rng.seed);
      gpu.release(tx, tz, tw, tdy, y, rstd, dx, dz, dw, l2, r, dxL2);
    });

  it('reports mismatched shapes and aliasing', async () => {
    const gpu = await testGpu();
    const x = gpu.tensor([4, 8]), w = gpu.tensor([7]), y = gpu.tensor([4, 8]), rstd = gpu.tensor([4]);
    expect(() => rmsNormForward(gpu, x, w, y, rstd, { eps: 1e-6 })).toThrow(/weight \[7\] does not match the last dimension 8/);
    const w8 = gpu.tensor([8]);
    expect(() => rmsNormForward(gpu, x, w8, y, gpu.tensor([3]), { eps: 1e-6 })).toThrow(/rstd \[3\] must have 4 elements/);
    expect(() => rmsNormForward(gpu, x, w8, x, rstd, { eps: 1e-6 })).toThrow(/y must not share a buffer with x/);
    expect(() => rmsNormBackward(gpu, y, x, w8, rstd, y, null)).toThrow(/dx must not share a buffer with dy/);
    expect(() => rmsNormGatedForward(gpu, x, gpu.tensor([4, 7]), w8, y, rstd, { eps: 1e-6 })).toThrow(/z \[4, 7\] must have 32 elements/);
    expect(() => rmsNormGatedBackward(gpu, y, x, x, w8, rstd, gpu.tensor([32]), y, null)).toThrow(/dz must not share a buffer with dy/);
    expect(() => l2NormForward(gpu, x, 5, y, rstd, { eps: 1e-6 })).toThrow(/x \[4, 8\] is not rows of 5/);
    expect(() => addRmsNormForward(gpu, x, y, w8, x, gpu.tensor([4, 8]), rstd, { eps: 1e-6 })).toThrow(/addRmsNormForward: s must not share a buffer with a/);
    expect(() => addRmsNormForward(gpu, x, gpu.tensor([4, 7]), w8, gpu.tensor([4, 8]), y, rstd, { eps: 1e-6 })).toThrow(/b \[4, 7\] must have 32 elements/);
  });
});

/** The same device with a small per-dimension workgroup limit, so that grid() folds cheaply. */
function foldingGpu(gpu: Gpu, maxPerDim = 1000): Gpu {
  return new Gpu(gpu.device, { ...gpu.caps, limits: { ...gpu.caps.limits, maxComputeWorkgroupsPerDimension: maxPerDim } });
}
