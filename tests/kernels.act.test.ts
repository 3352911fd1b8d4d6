// Kernel family: act (shaders/act.wgsl, src/kernels/act.ts)
import { describe, expect, it } from 'vitest';
import { actForward, gatedActForward, gatedActBackward, gatedActFusedForward, gatedActFusedBackward, type GatedActKind } from '../src/kernels/act';
import { scale } from '../src/kernels/elementwise';
import { GATED_ACT_CASES } from '../src/bench/cases/act';
import { Gpu } from '../src/gpu/runtime';
import { testGpu, poisoned } from './helpers/gpu';
import { expectClose, makeRng } from './helpers/check';
import { act, erf, gatedActBackwardRef, gatedActRef, quickGelu } from './reference/act';

const KINDS: GatedActKind[] = ['silu', 'gelu_tanh', 'gelu', 'sigmoid', 'identity'];
const checked = GATED_ACT_CASES.filter((c) => !c.bench);

describe('act', () => {
  it('the reference erf and gradients agree with known values and finite differences', () => {
    expect(erf(0.5)).toBeCloseTo(0.5204998778130465, 14);
    expect(erf(-1.5)).toBeCloseTo(-0.9661051464753108, 14);
    expect(erf(3)).toBeCloseTo(0.9999779095030014, 14);
    // the stable forms equal the textbook ones where those do not cancel
    for (const x of [-2.5, -0.7, 0, 0.3, 1.9, 4]) {
      expect(act('gelu_tanh', x)).toBeCloseTo(0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))), 14);
      expect(act('gelu', x)).toBeCloseTo(0.5 * x * (1 + erf(x / Math.SQRT2)), 14);
    }
    expect(act('gelu', -8) / (-8 * 6.22096057427178e-16)).toBeCloseTo(1, 9); // Phi(-8)
    const rng = makeRng();
    for (const kind of KINDS) {
      const g = rng.randn(6, 2), u = rng.randn(6), d = rng.randn(6);
      const { dGate, dUp } = gatedActBackwardRef(kind, d, g, u);
      const h = 1e-6;
      for (let i = 0; i < 6; i++) {
        const fdG = (d[i]! * u[i]! * (act(kind, g[i]! + h) - act(kind, g[i]! - h))) / (2 * h);
        const fdU = d[i]! * act(kind, g[i]!);
        expect(Math.abs(fdG - dGate[i]!), `${kind} dGate[${i}] vs finite differences (SEED=${rng.seed})`).toBeLessThan(1e-7 * (1 + Math.abs(fdG)));
        expect(Math.abs(fdU - dUp[i]!)).toBeLessThan(1e-12);
      }
    }
  });

  for (const kind of KINDS)
    it(`gatedAct and its backward (${kind}) match the reference on odd shapes`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      for (const shape of checked.filter((c) => !c.fused).map((c) => [c.T, c.F])) {
        const n = shape[0]! * shape[1]!;
        const g = rng.randn(n, 3), u = rng.randn(n), d = rng.randn(n);
        const tg = gpu.upload(g, shape), tu = gpu.upload(u, shape), td = gpu.upload(d, shape);
        const out = poisoned(gpu, shape), dG = poisoned(gpu, shape), dU = poisoned(gpu, shape);
        gatedActForward(gpu, tg, tu, out, kind);
        gatedActBackward(gpu, td, tg, tu, dG, dU, kind);
        const ref = gatedActBackwardRef(kind, d, g, u);
        expectClose(await gpu.readF32(out), gatedActRef(kind, g, u), 1e-5, `${kind} out ${shape}`, rng.seed);
        expectClose(await gpu.readF32(dG), ref.dGate, 1e-5, `${kind} dGate ${shape}`, rng.seed);
        expectClose(await gpu.readF32(dU), ref.dUp, 1e-5, `${kind} dUp ${shape}`, rng.seed);
        gpu.release(tg, tu, td, out, dG, dU);
      }
    });

  it('gated activations stay finite and exact in the tails', async () => {
    const gpu = await testGpu();
    const g = Float32Array.from([-200, -90, -30, -12, -6, 0, 6, 12, 30, 90, 200]);
    const u = new Float32Array(g.length).fill(1);
    for (const kind of KINDS) {
      const tg = gpu.upload(g, [g.length]), tu = gpu.upload(u, [g.length]);
      const out = poisoned(gpu, [g.length]), dG = poisoned(gpu, [g.length]), dU = poisoned(gpu, [g.length]);
      gatedActForward(gpu, tg, tu, out, kind);
      gatedActBackward(gpu, tu, tg, tu, dG, dU, kind);
      const o = await gpu.readF32(out), dg = await gpu.readF32(dG);
      const ref = gatedActBackwardRef(kind, u, g, u);
      for (let i = 0; i < g.length; i++) {
        const r = act(kind, g[i]!);
        expect(Math.abs(o[i]! - r), `${kind}(${g[i]}) = ${o[i]}, expected ${r}`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(r)));
        expect(Math.abs(dg[i]! - ref.dGate[i]!), `${kind}'(${g[i]}) = ${dg[i]}, expected ${ref.dGate[i]}`).toBeLessThanOrEqual(2e-6);
      }
      gpu.release(tg, tu, out, dG, dU);
    }
  });

  it('the fused [T, 2F] gate_up layout matches separate gate and up', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const { T, F } = checked.find((c) => c.fused)!;
    const gu = rng.randn(T * 2 * F, 2), d = rng.randn(T * F);
    const g = new Float32Array(T * F), u = new Float32Array(T * F);
    for (let t = 0; t < T; t++) {
      g.set(gu.subarray(t * 2 * F, t * 2 * F + F), t * F);
      u.set(gu.subarray(t * 2 * F + F, (t + 1) * 2 * F), t * F);
    }
    const tgu = gpu.upload(gu, [T, 2 * F]), td = gpu.upload(d, [T, F]);
    for (const kind of KINDS) {
      const out = poisoned(gpu, [T, F]), dGU = poisoned(gpu, [T, 2 * F]);
      gatedActFusedForward(gpu, tgu, out, kind);
      gatedActFusedBackward(gpu, td, tgu, dGU, kind);
      expectClose(await gpu.readF32(out), gatedActRef(kind, g, u), 1e-5, `${kind} fused out`, rng.seed);
      const ref = gatedActBackwardRef(kind, d, g, u);
      const refGU = new Float64Array(T * 2 * F);
      for (let t = 0; t < T; t++) {
        refGU.set(ref.dGate.subarray(t * F, (t + 1) * F), t * 2 * F);
        refGU.set(ref.dUp.subarray(t * F, (t + 1) * F), t * 2 * F + F);
      }
      expectClose(await gpu.readF32(dGU), refGU, 1e-5, `${kind} fused dGateUp`, rng.seed);
      gpu.release(out, dGU);
    }
    expect(() => gatedActFusedForward(gpu, tgu, gpu.tensor([T, F + 1]), 'silu')).toThrow(/must be \[T, 2F\]/);
  });

  it('element counts beyond one grid dimension fold into y', async () => {
    const gpu = foldingGpu(await testGpu());
    const rng = makeRng();
    const n = 1000 * 256 + 300;
    expect(gpu.grid(Math.ceil(n / 256))[1]).toBeGreaterThan(1);
    const x = rng.randn(n), u = rng.randn(n);
    const t = gpu.upload(x, [n]), tu = gpu.upload(u, [n]), out = poisoned(gpu, [n]);
    scale(gpu, t, 2, t);
    gatedActForward(gpu, t, tu, out, 'silu');
    expectClose(await gpu.readF32(t), x.map((v) => 2 * v), 0, 'scale in place', rng.seed);
    expectClose(await gpu.readF32(out), gatedActRef('silu', x.map((v) => 2 * v), u), 1e-5, 'gatedAct', rng.seed);
    gpu.release(t, tu, out);
  });

  for (const kind of ['quick_gelu', 'gelu', 'silu'] as const)
    it(`actForward (${kind}) matches the reference on an odd shape`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      const n = 3 * 257;
      const x = rng.randn(n, 3);
      const tx = gpu.upload(x, [3, 257]), y = poisoned(gpu, [3, 257]);
      actForward(gpu, tx, y, kind);
      const ref = Float64Array.from(x, (v) => (kind === 'quick_gelu' ? quickGelu(v) : act(kind, v)));
      expectClose(await gpu.readF32(y), ref, 1e-5, `act ${kind}`, rng.seed);
      expect(() => actForward(gpu, tx, tx, kind)).toThrow(/must not share/);
      gpu.release(tx, y);
    });
});

/** The same device with a small per-dimension workgroup limit, so that grid() folds cheaply. */
function foldingGpu(gpu: Gpu, maxPerDim = 1000): Gpu {
  return new Gpu(gpu.device, { ...gpu.caps, limits: { ...gpu.caps.limits, maxComputeWorkgroupsPerDimension: maxPerDim } });
}
