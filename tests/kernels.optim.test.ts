// Kernel family: optim (shaders/optim.wgsl, src/kernels/optim.ts)
import { describe, expect, it } from 'vitest';
import { optimCase } from '../src/bench/cases/optim';
import { adamDirection, adamMini, adamw, apolloFactor, apolloLimit, apolloScaleGrad, clipScale, gradNormSquared, maskedAdam, maskedGather, muonApply, muonMomentum, newtonSchulz, scaledStep } from '../src/kernels/optim';
import { testGpu } from './helpers/gpu';
import { expectClose, makeRng } from './helpers/check';
import { refAdamDirection, refAdamMini, refAdamW, refClipScale, refNewtonSchulz, refSumSq } from './reference/optim';

describe('optim', () => {
  for (const [beta1, wd] of [[0.9, 0.1], [0.3, 0]] as const)
    it(`AdamW follows torch's formula over several steps (beta1 ${beta1}, weight decay ${wd})`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      for (const n of optimCase('adamw').sizes) {
        const opts = { lr: 1e-2, beta1, beta2: 0.999, eps: 1e-8, weightDecay: wd };
        const p0 = rng.randn(n);
        const p = gpu.upload(p0, [n]), m = gpu.tensor([n]), v = gpu.tensor([n]);
        gpu.zero(m);
        gpu.zero(v);
        const rp = Float64Array.from(p0), rm = new Float64Array(n), rv = new Float64Array(n);
        for (let step = 1; step <= 5; step++) {
          const g = rng.randn(n, step === 3 ? 1e-3 : 1); // one step with tiny gradients
          adamw(gpu, p, gpu.upload(g, [n]), m, v, { ...opts, step });
          refAdamW(rp, g, rm, rv, { ...opts, step });
        }
        const pOut = await gpu.readF32(p);
        expectClose(pOut, rp, 1e-6, `p (n ${n})`, rng.seed);
        // each step moves p by about lr: the moves' error is measured against lr, since the net move
        // of one element can cancel to far less (a relative check there only measures p's rounding)
        for (let i = 0; i < n; i++) {
          const err = Math.abs(pOut[i]! - p0[i]! - (rp[i]! - p0[i]!));
          if (err > 1e-4 * opts.lr) expect.fail(`p - p0 (n ${n}) element ${i}: error ${err} > ${1e-4 * opts.lr} (SEED=${rng.seed})`);
        }
        expectClose(await gpu.readF32(m), rm, 1e-5, `m (n ${n})`, rng.seed);
        expectClose(await gpu.readF32(v), rv, 1e-5, `v (n ${n})`, rng.seed);
      }
    });

  it('gradient clipping: norm over several tensors, clip factor and the scaled AdamW step, with no readback in between', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const { sizes } = optimCase('adamw clipped');
    for (const clipRatio of [0.3, 2]) {
      const gs = sizes.map((n) => rng.randn(n));
      const ps = sizes.map((n) => rng.randn(n));
      const maxNorm = Math.sqrt(refSumSq(gs)) * clipRatio;
      const opts = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-6, weightDecay: 0.01, step: 1 };
      const tp = ps.map((p) => gpu.upload(p, [p.length]));
      const tg = gs.map((g) => gpu.upload(g, [g.length]));
      const tm = sizes.map((n) => gpu.tensor([n])), tv = sizes.map((n) => gpu.tensor([n]));
      for (const t of [...tm, ...tv]) gpu.zero(t);
      const sumSq = gpu.tensor([1]), scale = gpu.tensor([1]);
      gradNormSquared(gpu, tg, sumSq);
      clipScale(gpu, sumSq, maxNorm, scale);
      tp.forEach((p, i) => adamw(gpu, p, tg[i]!, tm[i]!, tv[i]!, { ...opts, gradScale: scale }));
      const refScale = refClipScale(refSumSq(gs), maxNorm);
      const s = (await gpu.readF32(scale))[0]!;
      if (clipRatio > 1) expect(s).toBe(1);
      else expect(Math.abs(s - refScale) / refScale).toBeLessThan(1e-6);
      for (let i = 0; i < sizes.length; i++) {
        const rp = Float64Array.from(ps[i]!), rm = new Float64Array(sizes[i]!), rv = new Float64Array(sizes[i]!);
        refAdamW(rp, gs[i]!, rm, rv, { ...opts, gradScale: refScale });
        const out = await gpu.readF32(tp[i]!);
        expectClose(out.map((x, j) => x - ps[i]![j]!), rp.map((x, j) => x - ps[i]![j]!), 1e-4, `update ${i} clip ${clipRatio}`, rng.seed);
        expectClose(await gpu.readF32(tm[i]!), rm, 1e-5, `m ${i} clip ${clipRatio}`, rng.seed);
      }
    }
  });

  it('gradNormSquared over tensors of odd lengths is accurate and bitwise reproducible', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const { sizes } = optimCase('gradNormSquared'); // the last one hits the workgroup cap
    const gs = sizes.map((n) => rng.randn(n));
    const tg = gs.map((g) => gpu.upload(g, [g.length]));
    const a = gpu.tensor([1]), b = gpu.tensor([1]);
    gradNormSquared(gpu, tg, a);
    gradNormSquared(gpu, [...tg], b);
    const [ra, rb] = [(await gpu.readF32(a))[0]!, (await gpu.readF32(b))[0]!];
    expect(ra).toBe(rb);
    const ref = refSumSq(gs);
    expect(Math.abs(ra - ref) / ref, `sum of squares ${ra} vs ${ref} (SEED=${rng.seed})`).toBeLessThan(1e-5);

    const empty = gpu.upload(Float32Array.of(NaN), [1]);
    gradNormSquared(gpu, [], empty);
    expect((await gpu.readF32(empty))[0]).toBe(0);
  });

  it('clipScale edge values', async () => {
    const gpu = await testGpu();
    const out = gpu.tensor([1]);
    for (const [sumSq, maxNorm] of [[0, 1], [16, 1], [16, 4], [1e-20, 1e-12]] as const) {
      clipScale(gpu, gpu.upload(Float32Array.of(sumSq), [1]), maxNorm, out);
      const got = (await gpu.readF32(out))[0]!;
      expect(Math.abs(got - refClipScale(sumSq, maxNorm)), `${sumSq} ${maxNorm}`).toBeLessThan(1e-6);
    }
    clipScale(gpu, gpu.upload(Float32Array.of(NaN), [1]), 1, out);
    expect((await gpu.readF32(out))[0]).toBeNaN();
  });

  it('reports mismatched shapes', async () => {
    const gpu = await testGpu();
    const t = (n: number) => gpu.tensor([n]);
    expect(() => adamw(gpu, t(4), t(5), t(4), t(4), { lr: 1, beta1: 0.9, beta2: 0.9, eps: 1e-8, weightDecay: 0, step: 1 })).toThrow(/g \[5\] does not match p \[4\]/);
    expect(() => adamw(gpu, t(4), t(4), t(4), t(4), { lr: 1, beta1: 0.9, beta2: 0.9, eps: 1e-8, weightDecay: 0, step: 0 })).toThrow(/step/);
  });

  it('Adam-mini: one second moment per block (blocks of 1, of a row, not dividing the tensor, the whole tensor), clipped', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const n = 1000;
    for (const block of [1, 40, 333, n]) {
      const opts = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
      const p0 = rng.randn(n);
      const blocks = Math.ceil(n / block);
      const p = gpu.upload(p0, [n]), m = gpu.tensor([n]), vmean = gpu.tensor([blocks]), scale = gpu.upload(new Float32Array([0.5]), [1]);
      gpu.zero(m);
      gpu.zero(vmean);
      const rp = Float64Array.from(p0), rm = new Float64Array(n), rv = new Float64Array(blocks);
      for (let step = 1; step <= 4; step++) {
        const g = rng.randn(n);
        adamMini(gpu, p, gpu.upload(g, [n]), m, vmean, { ...opts, step, blockSize: block, gradScale: scale });
        refAdamMini(rp, g, rm, rv, block, { ...opts, step, gradScale: 0.5 });
      }
      const pOut = await gpu.readF32(p);
      expectClose(pOut.map((x, i) => x - p0[i]!), rp.map((x, i) => x - p0[i]!), 1e-4, `p - p0 (block ${block})`, rng.seed);
      expectClose(await gpu.readF32(vmean), rv, 1e-5, `vmean (block ${block})`, rng.seed);
      expectClose(await gpu.readF32(m), rm, 1e-5, `m (block ${block})`, rng.seed);
    }
  });

  it('Muon: Newton-Schulz orthogonalisation of wide and tall matrices matches the f64 reference and flattens the spectrum', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    for (const [R, C] of [[16, 40], [70, 24], [33, 33]] as const) {
      const s = Math.min(R, C);
      const g = rng.randn(R * C);
      const X = gpu.upload(g, [R, C]);
      const work = { A: gpu.tensor([s, s]), B: gpu.tensor([s, s]), Y: gpu.tensor([R, C]), sumSq: gpu.tensor([1]) };
      const out = newtonSchulz(gpu, X, 5, work);
      const got = await gpu.readF32(out);
      const ref = refNewtonSchulz(g, R, C, 5);
      expectClose(got, ref, 1e-4, `newtonSchulz [${R}, ${C}]`, rng.seed);
      // the result is near-orthogonal: the Gram matrix of its short side has diagonal in about [0.5, 1.5]
      for (let i = 0; i < s; i++) {
        let d = 0;
        for (let k = 0; k < (R <= C ? C : R); k++) d += R <= C ? ref[i * C + k]! ** 2 : ref[k * C + i]! ** 2;
        expect(d, `[${R}, ${C}] diagonal ${i}`).toBeGreaterThan(0.25);
        expect(d, `[${R}, ${C}] diagonal ${i}`).toBeLessThan(2.25);
      }
      gpu.release(X, work.A, work.B, work.Y, work.sumSq);
    }
  });

  it('Muon: Nesterov momentum and the update with decoupled weight decay', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const n = 517;
    for (const nesterov of [true, false]) {
      const buf0 = rng.randn(n), g = rng.randn(n), p0 = rng.randn(n);
      const buf = gpu.upload(buf0, [n]), u = gpu.tensor([n]), p = gpu.upload(p0, [n]);
      muonMomentum(gpu, gpu.upload(g, [n]), buf, u, { momentum: 0.95, nesterov, gradScale: gpu.upload(new Float32Array([0.25]), [1]) });
      const rb = buf0.map((b, i) => 0.95 * b + 0.25 * g[i]!);
      const ru = nesterov ? rb.map((b, i) => 0.25 * g[i]! + 0.95 * b) : rb;
      expectClose(await gpu.readF32(buf), rb, 1e-6, 'momentum buffer', rng.seed);
      expectClose(await gpu.readF32(u), ru, 1e-6, `update direction (nesterov ${nesterov})`, rng.seed);
      muonApply(gpu, p, u, { decay: 1 - 0.02 * 0.1, stepSize: 0.3 });
      expectClose(await gpu.readF32(p), p0.map((x, i) => x * (1 - 0.002) - 0.3 * ru[i]!), 1e-6, 'p', rng.seed);
    }
  });

  it("transformers' AdamW direction, APOLLO's factors, scaled gradient, limiter and step into poisoned outputs", async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const poisoned = (n: number) => gpu.upload(new Float32Array(n).fill(NaN), [n]);
    const [R, C] = [300, 7]; // more rows than a workgroup, channels both ways
    const n = R * C, s = 0.7;
    const scale = gpu.upload(Float32Array.of(s), [1]);
    const g = rng.randn(n), m0 = rng.randn(n, 0.1), v0 = Float32Array.from(rng.randn(n), (x) => x * x * 0.01);
    const m = gpu.upload(m0, [R, C]), v = gpu.upload(v0, [R, C]), u = { ...poisoned(n), shape: [R, C] };
    const G = gpu.upload(g, [R, C]);
    adamDirection(gpu, G, m, v, u, { beta1: 0.9, beta2: 0.95, eps: 1e-8, gradScale: scale });
    const rm = Float64Array.from(m0), rv = Float64Array.from(v0);
    const ru = refAdamDirection(Float64Array.from(g, (x) => x * s), rm, rv, { beta1: 0.9, beta2: 0.95, eps: 1e-8 });
    expectClose(await gpu.readF32(u), ru, 1e-5, 'u', rng.seed);
    expectClose(await gpu.readF32(m), rm, 1e-6, 'm', rng.seed);
    const uOut = Float64Array.from(await gpu.readF32(u));
    const norm = (xs: number[]) => Math.sqrt(xs.reduce((a, x) => a + x * x, 0));
    for (const axis of ['row', 'column', 'tensor'] as const) {
      const channels = axis === 'row' ? R : axis === 'column' ? C : 1;
      const factor = poisoned(channels);
      apolloFactor(gpu, G, u, factor, axis, scale);
      const pick = (x: ArrayLike<number>, c: number) => axis === 'row' ? Array.from({ length: C }, (_, j) => x[c * C + j]!)
        : axis === 'column' ? Array.from({ length: R }, (_, i) => x[i * C + c]!) : Array.from(x);
      const ref = Float64Array.from({ length: channels }, (_, c) => norm(pick(uOut, c)) / (s * norm(pick(g, c)) + 1e-8));
      const fOut = await gpu.readF32(factor);
      expectClose(fOut, ref, 1e-5, `factor (${axis})`, rng.seed);
      const y = { ...poisoned(n), shape: [R, C] };
      apolloScaleGrad(gpu, G, factor, y, axis, scale, 2);
      const ch = (i: number) => (axis === 'row' ? Math.floor(i / C) : axis === 'column' ? i % C : 0);
      expectClose(await gpu.readF32(y), Float64Array.from(g, (x, i) => x * s * fOut[ch(i)]! * 2), 1e-6, `y (${axis})`, rng.seed);
    }
    // the limiter: the first call keeps the norm, a later one limits growth to 1.01x
    const sumSq = gpu.tensor([1]), prev = gpu.upload(Float32Array.of(-1), [1]), limiter = poisoned(1);
    gpu.write(sumSq, Float32Array.of(4));
    apolloLimit(gpu, sumSq, prev, limiter);
    expect([...(await gpu.readF32(limiter)), ...(await gpu.readF32(prev))]).toEqual([1, 2]);
    gpu.write(sumSq, Float32Array.of(9));
    apolloLimit(gpu, sumSq, prev, limiter);
    const lim = 3 / (2 + 1e-8) / 1.01;
    expect(Math.abs((await gpu.readF32(limiter))[0]! - lim)).toBeLessThan(1e-6);
    expect(Math.abs((await gpu.readF32(prev))[0]! - 3 / lim)).toBeLessThan(1e-5);
    const p0 = rng.randn(n), p = gpu.upload(p0, [n]);
    scaledStep(gpu, p, G, limiter, { stepSize: 0.1, decay: 0.99 });
    expectClose(await gpu.readF32(p), Float64Array.from(p0, (x, i) => (x - (0.1 * g[i]!) / lim) * 0.99), 1e-6, 'p', rng.seed);
  });

  it("BAdam's masked gather and sparse Adam touch the masked entries only", async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const n = 2000, k = 700;
    const idx = Uint32Array.from(Array.from({ length: n }, (_, i) => i).sort(() => rng.randn(1)[0]!).slice(0, k)).sort();
    const g = rng.randn(n), p0 = rng.randn(n);
    const gm = gpu.upload(new Float32Array(k).fill(NaN), [k]);
    const tIdx = gpu.upload(idx, [k], 'u32');
    maskedGather(gpu, gpu.upload(g, [n]), tIdx, gm);
    expectClose(await gpu.readF32(gm), Float64Array.from(idx, (i) => g[i]!), 0, 'gm', rng.seed);
    const p = gpu.upload(p0, [n]), m = gpu.tensor([k]), v = gpu.tensor([k]);
    gpu.zero(m);
    gpu.zero(v);
    const s = 0.5, stepSize = 0.01;
    maskedAdam(gpu, p, gm, tIdx, m, v, { beta1: 0.9, beta2: 0.99, eps: 1e-8, stepSize, gradScale: gpu.upload(Float32Array.of(s), [1]) });
    const ref = Float64Array.from(p0);
    idx.forEach((i) => {
      const gi = g[i]! * s, mi = gi * 0.1, vi = gi * gi * 0.01;
      ref[i] = ref[i]! - stepSize * (mi / (Math.sqrt(vi) + 1e-8));
    });
    expectClose(await gpu.readF32(p), ref, 1e-6, 'p', rng.seed);
  });
});
