// Kernel family: ssd (shaders/ssd.wgsl, src/kernels/ssd.ts)
import { describe, expect, it } from 'vitest';
import { SSD_CASES } from '../src/bench/cases/ssd';
import { Gpu } from '../src/gpu/runtime';
import type { Tensor } from '../src/gpu/tensor';
import { ssdBackward, ssdForward, ssdRecurrent, ssdSavedElements, type SsdShape } from '../src/kernels/ssd';
import { expectClose, makeRng, type Rng } from './helpers/check';
import { poisoned, testGpu } from './helpers/gpu';
import { segmentIds } from './helpers/segments';
import { ssdBackwardRef, ssdRecurrentRef, type SsdShape as RefShape } from './reference/ssd';

const refShape = (s: SsdShape): RefShape => ({
  B: s.batch, T: s.len, H: s.heads, G: s.groups, N: s.stateDim, P: s.headDim,
  ...(s.dtMin !== undefined ? { dtMin: s.dtMin } : {}), ...(s.dtMax !== undefined ? { dtMax: s.dtMax } : {}),
});

/** Inputs in a checkpoint's ranges, on the host and the GPU. */
function inputs(gpu: Gpu, rng: Rng, s: SsdShape, withState: boolean) {
  const { batch: B, len: T, heads: H, groups: G, stateDim: N, headDim: P } = s;
  const host = {
    x: rng.randn(B * T * H * P), dt: rng.randn(B * T * H), Bm: rng.randn(B * T * G * N, 0.5), Cm: rng.randn(B * T * G * N, 0.5),
    dtBias: rng.uniform(H, -0.5, 0.5), aLog: rng.uniform(H, -1, 1.5), D: rng.uniform(H, 0.5, 1.5),
    state: withState ? rng.randn(B * H * N * P, 0.5) : new Float32Array(B * H * N * P),
  };
  const up = (a: Float32Array) => gpu.upload(a, [a.length]);
  const x = { x: up(host.x), dt: up(host.dt), Bm: up(host.Bm), Cm: up(host.Cm) };
  const w = { dtBias: up(host.dtBias), aLog: up(host.aLog), D: up(host.D) };
  return { host, x, w, release: () => gpu.release(...Object.values(x), ...Object.values(w)) };
}

/** Slices tokens [t0, t1) of a [B, T, ...] array with `per` values per token. */
function tokens(a: Float32Array, B: number, T: number, per: number, t0: number, t1: number): Float32Array {
  const out = new Float32Array(B * (t1 - t0) * per);
  for (let b = 0; b < B; b++) out.set(a.subarray((b * T + t0) * per, (b * T + t1) * per), b * (t1 - t0) * per);
  return out;
}

function gradTensors(gpu: Gpu, s: SsdShape, withParams: boolean) {
  const { batch: B, len: T, heads: H, groups: G, stateDim: N, headDim: P } = s;
  return {
    dx: poisoned(gpu, [B * T * H * P]), ddt: poisoned(gpu, [B * T * H]), dBm: poisoned(gpu, [B * T * G * N]), dCm: poisoned(gpu, [B * T * G * N]),
    params: withParams ? { dtBias: poisoned(gpu, [H]), aLog: poisoned(gpu, [H]), D: poisoned(gpu, [H]) } : null,
  };
}

async function expectGrads(gpu: Gpu, grads: ReturnType<typeof gradTensors>, ref: ReturnType<typeof ssdBackwardRef>, seed: number, tol = 1e-4) {
  expectClose(await gpu.readF32(grads.dx), ref.dx, tol, 'dx', seed);
  expectClose(await gpu.readF32(grads.ddt), ref.ddt, tol, 'ddt', seed);
  expectClose(await gpu.readF32(grads.dBm), ref.dBm, tol, 'dBm', seed);
  expectClose(await gpu.readF32(grads.dCm), ref.dCm, tol, 'dCm', seed);
  if (grads.params) {
    expectClose(await gpu.readF32(grads.params.dtBias), ref.ddtBias, tol, 'ddtBias', seed);
    expectClose(await gpu.readF32(grads.params.aLog), ref.daLog, tol, 'daLog', seed);
    expectClose(await gpu.readF32(grads.params.D), ref.dD, tol, 'dD', seed);
  }
}

const releaseGrads = (gpu: Gpu, g: ReturnType<typeof gradTensors>) =>
  gpu.release(g.dx, g.ddt, g.dBm, g.dCm, ...(g.params ? Object.values(g.params) : []));

describe('ssd', () => {
  for (const c of SSD_CASES.filter((c) => !c.bench))
    it(`chunked forward, recurrent and backward on ${JSON.stringify(c)}`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      const s: SsdShape = c;
      const { host, x, w, release } = inputs(gpu, rng, s, true);
      const ny = host.x.length;
      const withState = ssdRecurrentRef(refShape(s), host);

      // chunked, from an initial state, writing the final one
      const y = poisoned(gpu, [ny]), state = gpu.upload(host.state, [host.state.length]);
      const saved = poisoned(gpu, [ssdSavedElements(s, c.chunk)]);
      ssdForward(gpu, s, x, w, y, { chunk: c.chunk, state, saved });
      expectClose(await gpu.readF32(y), withState.y, 1e-5, 'chunked y', rng.seed);
      expectClose(await gpu.readF32(state), withState.state, 1e-5, 'chunked final state', rng.seed);

      // recurrent over the same tokens
      const yR = poisoned(gpu, [ny]), stateR = gpu.upload(host.state, [host.state.length]);
      ssdRecurrent(gpu, s, x, w, yR, stateR);
      expectClose(await gpu.readF32(yR), withState.y, 1e-5, 'recurrent y', rng.seed);
      expectClose(await gpu.readF32(stateR), withState.state, 1e-5, 'recurrent state', rng.seed);

      // backward of the chunked forward (whose record starts from the initial state)
      const dy = rng.randn(ny);
      const ref = ssdBackwardRef(refShape(s), host, dy);
      const tdy = gpu.upload(dy, [ny]);
      const grads = gradTensors(gpu, s, true);
      ssdBackward(gpu, s, x, w, saved, c.chunk, tdy, grads);
      await expectGrads(gpu, grads, ref, rng.seed);
      const first = await gpu.readF32(grads.dBm);
      ssdBackward(gpu, s, x, w, saved, c.chunk, tdy, grads);
      expect(Array.from(await gpu.readF32(grads.dBm)), 'the backward is deterministic').toEqual(Array.from(first));
      release();
      gpu.release(y, state, saved, yR, stateR, tdy);
      releaseGrads(gpu, grads);
    });

  it('packed segments: chunked forward and backward', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const s: SsdShape = { batch: 2, len: 30, heads: 4, groups: 2, stateDim: 6, headDim: 20 };
    const chunk = 8;
    const { host, x, w, release } = inputs(gpu, rng, s, false);
    const seg = segmentIds(rng, s.batch, s.len, 0.15);
    const tseg = gpu.upload(seg, [s.batch, s.len], 'i32');
    const ref = { ...host, segments: seg };
    const ny = host.x.length;
    const y = poisoned(gpu, [ny]), saved = poisoned(gpu, [ssdSavedElements(s, chunk)]);
    ssdForward(gpu, s, x, w, y, { chunk, saved, segments: tseg });
    expectClose(await gpu.readF32(y), ssdRecurrentRef(refShape(s), ref).y, 1e-5, 'y', rng.seed);
    const dy = rng.randn(ny);
    const tdy = gpu.upload(dy, [ny]);
    const grads = gradTensors(gpu, s, true);
    ssdBackward(gpu, s, x, w, saved, chunk, tdy, grads);
    await expectGrads(gpu, grads, ssdBackwardRef(refShape(s), ref, dy), rng.seed);
    release();
    gpu.release(tseg, y, saved, tdy);
    releaseGrads(gpu, grads);
  });

  it('batches beyond the scratch binding limit run in slices of rows, the parameter gradients summed over them', async () => {
    const full = await testGpu();
    const rng = makeRng();
    const s: SsdShape = { batch: 3, len: 9, heads: 2, groups: 1, stateDim: 4, headDim: 5 };
    const chunk = 4;
    // room for 400 floats: the record (360 + 27 floats) fits, the forward's steps, scores and
    // segment starts (9 * 2 * (4 + 4) + 9 = 153 floats a row) run in slices of 2 and 1 rows, the
    // backward's decayed states (2 * 4 * 4 * 8 = 256 a row) one row at a time
    const gpu = new Gpu(full.device, { ...full.caps, limits: { ...full.caps.limits, maxStorageBufferBindingSize: 4 * 400 } });
    const { host, x, w, release } = inputs(gpu, rng, s, false);
    const ny = host.x.length;
    const y = poisoned(gpu, [ny]), saved = poisoned(gpu, [ssdSavedElements(s, chunk)]);
    ssdForward(gpu, s, x, w, y, { chunk, saved });
    expectClose(await gpu.readF32(y), ssdRecurrentRef(refShape(s), host).y, 1e-5, 'y', rng.seed);
    const dy = rng.randn(ny);
    const tdy = gpu.upload(dy, [ny]);
    const grads = gradTensors(gpu, s, true);
    ssdBackward(gpu, s, x, w, saved, chunk, tdy, grads);
    await expectGrads(gpu, grads, ssdBackwardRef(refShape(s), host, dy), rng.seed);
    const tiny = new Gpu(full.device, { ...full.caps, limits: { ...full.caps.limits, maxStorageBufferBindingSize: 4 * 100 } });
    expect(() => ssdForward(tiny, s, x, w, y, { chunk })).toThrow(/one batch row needs 612 bytes of scratch, over this GPU's 400-byte binding limit/);
    release();
    gpu.release(y, saved, tdy);
    releaseGrads(gpu, grads);
  });

  it('a chunked prefill without a state, then decode steps with the carried state, equal one pass', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const s: SsdShape = { batch: 2, len: 11, heads: 4, groups: 2, stateDim: 8, headDim: 6 };
    const { host, w, release } = inputs(gpu, rng, s, false);
    const whole = ssdRecurrentRef(refShape(s), host);
    const { batch: B, len: T, heads: H, groups: G, stateDim: N, headDim: P } = s;
    const state = gpu.tensor([B * H * N * P]);
    gpu.zero(state);
    const run = (t0: number, t1: number) => {
      const part = (a: Float32Array, per: number) => gpu.upload(tokens(a, B, T, per, t0, t1), [B * (t1 - t0) * per]);
      const x = { x: part(host.x, H * P), dt: part(host.dt, H), Bm: part(host.Bm, G * N), Cm: part(host.Cm, G * N) };
      const y = poisoned(gpu, [B * (t1 - t0) * H * P]);
      const shape = { ...s, len: t1 - t0 };
      if (t1 - t0 > 1) ssdForward(gpu, shape, x, w, y, { chunk: 3, state });
      else ssdRecurrent(gpu, shape, x, w, y, state);
      return { y, release: () => gpu.release(...Object.values(x), y) };
    };
    const wholeY = Float32Array.from(whole.y);
    const P0 = 7;
    const pre = run(0, P0);
    expectClose(await gpu.readF32(pre.y), tokens(wholeY, B, T, H * P, 0, P0), 1e-5, 'prefill', rng.seed);
    pre.release();
    for (let t = P0; t < T; t++) {
      const step = run(t, t + 1);
      expectClose(await gpu.readF32(step.y), tokens(wholeY, B, T, H * P, t, t + 1), 1e-5, `token ${t}`, rng.seed);
      step.release();
    }
    expectClose(await gpu.readF32(state), whole.state, 1e-5, 'state', rng.seed);
    release();
    gpu.release(state);
  });

  it('reports mismatched shapes and aliasing', async () => {
    const gpu = await testGpu();
    const s: SsdShape = { batch: 1, len: 4, heads: 3, groups: 2, stateDim: 4, headDim: 2 };
    const t = (n: number): Tensor => gpu.tensor([n]);
    const x = { x: t(24), dt: t(12), Bm: t(32), Cm: t(32) };
    const w = { dtBias: t(3), aLog: t(3), D: t(3) };
    expect(() => ssdForward(gpu, s, x, w, t(24), { chunk: 2 })).toThrow(/heads 3 is not a multiple of groups 2/);
    const s2 = { ...s, heads: 4 };
    const x2 = { x: t(32), dt: t(16), Bm: t(32), Cm: t(32) }, w2 = { dtBias: t(4), aLog: t(4), D: t(4) };
    expect(() => ssdForward(gpu, s2, { ...x2, dt: t(15) }, w2, t(32), { chunk: 2 })).toThrow(/dt \[15\] must have 16 elements/);
    expect(() => ssdForward(gpu, s2, x2, w2, x2.x, { chunk: 2 })).toThrow(/y must not share a buffer with x/);
    expect(() => ssdRecurrent(gpu, s2, x2, w2, t(32), t(63))).toThrow(/state \[63\] must have 32 elements/);
    expect(() => ssdForward(gpu, { ...s2, dtMin: 2, dtMax: 1 }, x2, w2, t(32), { chunk: 2 })).toThrow(/dt limits \[2, 1\]/);
  });
});
