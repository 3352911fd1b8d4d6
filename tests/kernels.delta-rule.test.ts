// Kernel family: delta-rule (shaders/delta-rule.wgsl, src/kernels/delta-rule.ts)
import { describe, expect, it } from 'vitest';
import { DELTA_RULE_CASES } from '../src/bench/cases/delta-rule';
import { Gpu } from '../src/gpu/runtime';
import type { Tensor } from '../src/gpu/tensor';
import { deltaRuleBackward, deltaRuleForward, deltaRuleRecurrent, deltaRuleSavedElements, type DeltaRuleShape } from '../src/kernels/delta-rule';
import { expectClose, makeRng, type Rng } from './helpers/check';
import { poisoned, testGpu } from './helpers/gpu';
import { segmentIds } from './helpers/segments';
import { deltaRuleBackwardRef, deltaRuleRecurrentRef, l2NormRef, type DeltaShape } from './reference/delta-rule';

const refShape = (s: DeltaRuleShape): DeltaShape => ({ B: s.batch, T: s.len, Hk: s.keyHeads, Hv: s.valueHeads, Dk: s.keyDim, Dv: s.valueDim, scale: s.scale });

/** Inputs as the layer makes them (l2-normalised q/k, g <= 0, beta in (0, 1)), on the host and the GPU. */
function inputs(gpu: Gpu, rng: Rng, s: DeltaRuleShape, withState: boolean) {
  const { batch: B, len: T, keyHeads: Hk, valueHeads: Hv, keyDim: Dk, valueDim: Dv } = s;
  const unit = (n: number) => Float32Array.from(l2NormRef(rng.randn(n), n / Dk, Dk, 1e-6));
  const host = {
    q: unit(B * T * Hk * Dk), k: unit(B * T * Hk * Dk), v: rng.randn(B * T * Hv * Dv),
    g: rng.uniform(B * T * Hv, -1.5, -0.01), beta: rng.uniform(B * T * Hv, 0.05, 0.95),
    state: withState ? rng.randn(B * Hv * Dk * Dv, 0.5) : new Float32Array(B * Hv * Dk * Dv),
  };
  const up = (a: Float32Array) => gpu.upload(a, [a.length]);
  const dev = { q: up(host.q), k: up(host.k), v: up(host.v), g: up(host.g), beta: up(host.beta) };
  return { host, dev, release: () => gpu.release(...Object.values(dev)) };
}

/** Slices tokens [t0, t1) of a [B, T, ...] array with `per` values per token. */
function tokens(a: Float32Array, B: number, T: number, per: number, t0: number, t1: number): Float32Array {
  const out = new Float32Array(B * (t1 - t0) * per);
  for (let b = 0; b < B; b++) out.set(a.subarray((b * T + t0) * per, (b * T + t1) * per), b * (t1 - t0) * per);
  return out;
}

/** Runs the chunked backward from `saved` and checks every gradient against the f64 reference; returns what to release. */
async function expectBackwardMatches(
  gpu: Gpu, rng: Rng, s: DeltaRuleShape, dev: ReturnType<typeof inputs>['dev'], x: Parameters<typeof deltaRuleBackwardRef>[1],
  saved: Tensor, chunk: number,
) {
  const nv = x.v.length;
  const dout = rng.randn(nv);
  const ref = deltaRuleBackwardRef(refShape(s), x, dout);
  const tdout = gpu.upload(dout, [nv]);
  const grads = {
    dq: poisoned(gpu, [x.q.length]), dk: poisoned(gpu, [x.k.length]), dv: poisoned(gpu, [nv]),
    dg: poisoned(gpu, [x.g.length]), dbeta: poisoned(gpu, [x.beta.length]),
  };
  const run = () => deltaRuleBackward(gpu, s, dev, saved, chunk, tdout, grads);
  run();
  for (const [name, t] of Object.entries(grads)) expectClose(await gpu.readF32(t), ref[name as keyof typeof grads], 1e-4, name, rng.seed);
  return { run, grads, tensors: [tdout, ...Object.values(grads)] };
}

describe('delta rule', () => {
  for (const c of DELTA_RULE_CASES.filter((c) => !c.bench))
    it(`chunked forward, recurrent and backward on ${JSON.stringify(c)}`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      const s: DeltaRuleShape = { ...c, scale: 1 / Math.sqrt(c.keyDim) };
      const { host, dev, release } = inputs(gpu, rng, s, true);
      const nv = s.batch * s.len * s.valueHeads * s.valueDim;
      const withState = deltaRuleRecurrentRef(refShape(s), host);

      // chunked, from an initial state, writing the final one
      const out = poisoned(gpu, [nv]), state = gpu.upload(host.state, [host.state.length]);
      const saved = poisoned(gpu, [deltaRuleSavedElements(s, c.chunk)]);
      deltaRuleForward(gpu, s, dev, out, { chunk: c.chunk, state, saved });
      expectClose(await gpu.readF32(out), withState.out, 1e-5, 'chunked out', rng.seed);
      expectClose(await gpu.readF32(state), withState.state, 1e-5, 'chunked final state', rng.seed);

      // recurrent over the same tokens
      const outR = poisoned(gpu, [nv]), stateR = gpu.upload(host.state, [host.state.length]);
      deltaRuleRecurrent(gpu, s, dev, outR, stateR);
      expectClose(await gpu.readF32(outR), withState.out, 1e-5, 'recurrent out', rng.seed);
      expectClose(await gpu.readF32(stateR), withState.state, 1e-5, 'recurrent state', rng.seed);

      // backward of the chunked forward (whose record starts from the initial state)
      const back = await expectBackwardMatches(gpu, rng, s, dev, host, saved, c.chunk);
      const first = await gpu.readF32(back.grads.dk);
      back.run();
      expect(Array.from(await gpu.readF32(back.grads.dk)), 'the backward is deterministic').toEqual(Array.from(first));
      release();
      gpu.release(out, state, saved, outR, stateR, ...back.tensors);
    });

  it('packed segments: chunked forward and backward', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const s: DeltaRuleShape = { batch: 2, len: 30, keyHeads: 1, valueHeads: 2, keyDim: 8, valueDim: 20, scale: 1 / Math.sqrt(8) };
    const chunk = 8;
    const { host, dev, release } = inputs(gpu, rng, s, false);
    const seg = segmentIds(rng, s.batch, s.len, 0.15);
    const tseg = gpu.upload(seg, [s.batch, s.len], 'i32');
    const x = { ...host, segments: seg };
    const nv = host.v.length;
    const out = poisoned(gpu, [nv]), saved = poisoned(gpu, [deltaRuleSavedElements(s, chunk)]);
    deltaRuleForward(gpu, s, dev, out, { chunk, saved, segments: tseg });
    expectClose(await gpu.readF32(out), deltaRuleRecurrentRef(refShape(s), x).out, 1e-5, 'out', rng.seed);
    const back = await expectBackwardMatches(gpu, rng, s, dev, x, saved, chunk);
    release();
    gpu.release(tseg, out, saved, ...back.tensors);
  });

  it('batches beyond the scratch binding limit run in slices of rows', async () => {
    const full = await testGpu();
    const rng = makeRng();
    const s: DeltaRuleShape = { batch: 3, len: 9, keyHeads: 1, valueHeads: 2, keyDim: 4, valueDim: 5, scale: 0.5 };
    const chunk = 4;
    // room for two rows of the largest scratch (the backward's partial sums, 270 floats a row) and
    // for the record (657 floats): slices of 2 and 1 rows
    const gpu = new Gpu(full.device, { ...full.caps, limits: { ...full.caps.limits, maxStorageBufferBindingSize: 4 * 700 } });
    const { host, dev, release } = inputs(gpu, rng, s, false);
    const nv = host.v.length;
    const out = poisoned(gpu, [nv]), saved = poisoned(gpu, [deltaRuleSavedElements(s, chunk)]);
    deltaRuleForward(gpu, s, dev, out, { chunk, saved });
    expectClose(await gpu.readF32(out), deltaRuleRecurrentRef(refShape(s), host).out, 1e-5, 'out', rng.seed);
    const back = await expectBackwardMatches(gpu, rng, s, dev, host, saved, chunk);
    const tiny = new Gpu(full.device, { ...full.caps, limits: { ...full.caps.limits, maxStorageBufferBindingSize: 4 * 200 } });
    expect(() => deltaRuleForward(tiny, s, dev, out, { chunk })).toThrow(/one batch row needs 972 bytes of scratch, over this GPU's 800-byte binding limit/);
    release();
    gpu.release(out, saved, ...back.tensors);
  });

  it('a chunked prefill without a state, then decode steps with the carried state, equal one pass', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const s: DeltaRuleShape = { batch: 2, len: 11, keyHeads: 1, valueHeads: 2, keyDim: 8, valueDim: 6, scale: 1 / Math.sqrt(8) };
    const { host, release } = inputs(gpu, rng, s, false);
    const whole = deltaRuleRecurrentRef(refShape(s), host);
    const { batch: B, len: T, keyHeads: Hk, valueHeads: Hv, keyDim: Dk, valueDim: Dv } = s;
    const state = gpu.tensor([B * Hv * Dk * Dv]);
    gpu.zero(state);
    const P = 7;
    const run = (t0: number, t1: number) => {
      const part = (a: Float32Array, per: number) => gpu.upload(tokens(a, B, T, per, t0, t1), [B * (t1 - t0) * per]);
      const x = { q: part(host.q, Hk * Dk), k: part(host.k, Hk * Dk), v: part(host.v, Hv * Dv), g: part(host.g, Hv), beta: part(host.beta, Hv) };
      const out = poisoned(gpu, [B * (t1 - t0) * Hv * Dv]);
      const shape = { ...s, len: t1 - t0 };
      if (t1 - t0 > 1) deltaRuleForward(gpu, shape, x, out, { chunk: 3, state });
      else deltaRuleRecurrent(gpu, shape, x, out, state);
      return { out, release: () => gpu.release(...Object.values(x), out) };
    };
    const wholeOut = Float32Array.from(whole.out);
    const pre = run(0, P);
    expectClose(await gpu.readF32(pre.out), tokens(wholeOut, B, T, Hv * Dv, 0, P), 1e-5, 'prefill', rng.seed);
    pre.release();
    for (let t = P; t < T; t++) {
      const step = run(t, t + 1);
      expectClose(await gpu.readF32(step.out), tokens(wholeOut, B, T, Hv * Dv, t, t + 1), 1e-5, `token ${t}`, rng.seed);
      step.release();
    }
    expectClose(await gpu.readF32(state), whole.state, 1e-5, 'state', rng.seed);
    release();
    gpu.release(state);
  });

  it('reports mismatched shapes and aliasing', async () => {
    const gpu = await testGpu();
    const s: DeltaRuleShape = { batch: 1, len: 4, keyHeads: 2, valueHeads: 3, keyDim: 4, valueDim: 4, scale: 0.5 };
    const t = (n: number): Tensor => gpu.tensor([n]);
    const x = { q: t(32), k: t(32), v: t(48), g: t(12), beta: t(12) };
    expect(() => deltaRuleForward(gpu, s, x, t(48), { chunk: 2 })).toThrow(/valueHeads 3 is not a multiple of keyHeads 2/);
    const s2 = { ...s, valueHeads: 4 };
    const x2 = { ...x, v: t(64), g: t(16), beta: t(16) };
    expect(() => deltaRuleForward(gpu, s2, { ...x2, g: t(15) }, t(64), { chunk: 2 })).toThrow(/g \[15\] must have 16 elements/);
    expect(() => deltaRuleForward(gpu, s2, x2, x2.v, { chunk: 2 })).toThrow(/out must not share a buffer with v/);
    expect(() => deltaRuleRecurrent(gpu, s2, x2, t(64), t(63))).toThrow(/state \[63\] must have 64 elements/);
  });
});
