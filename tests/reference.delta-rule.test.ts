// The f64 references of Gated DeltaNet (tests/reference/delta-rule.ts, conv1d.ts) checked against
// each other and against finite differences, before the GPU kernels are checked against them.
import { describe, expect, it } from 'vitest';
import { makeRng, type Rng } from './helpers/check';
import { dotAll, finiteDiff } from './helpers/finite-diff';
import { segmentIds } from './helpers/segments';
import { conv1dBackwardRef, conv1dRef, type ConvShape } from './reference/conv1d';
import {
  deltaRuleBackwardRef, deltaRuleChunkedRef, deltaRuleRecurrentRef, gatesBackwardRef, gatesRef, l2NormBackwardRef, l2NormRef,
  rmsNormGatedBackwardRef, rmsNormGatedRef, type DeltaInputs, type DeltaShape,
} from './reference/delta-rule';

const f64 = (a: ArrayLike<number>) => Float64Array.from(a);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Inputs as the layer makes them: l2-normalised q/k, g <= 0, beta in (0, 1). */
type Inputs = { [K in keyof Required<Omit<DeltaInputs, 'segments'>>]: Float64Array };

function deltaInputs(rng: Rng, s: DeltaShape, withState: boolean): Inputs {
  const qk = (n: number) => f64(l2NormRef(rng.randn(n), n / s.Dk, s.Dk, 1e-6));
  const N = s.B * s.T * s.Hv;
  return {
    q: qk(s.B * s.T * s.Hk * s.Dk),
    k: qk(s.B * s.T * s.Hk * s.Dk),
    v: f64(rng.randn(N * s.Dv)),
    g: f64(rng.uniform(N, -1.5, -0.01)),
    beta: f64(rng.uniform(N, 0.05, 0.95)),
    state: withState ? f64(rng.randn(s.B * s.Hv * s.Dk * s.Dv, 0.5)) : new Float64Array(s.B * s.Hv * s.Dk * s.Dv),
  };
}

/** Tokens [t0, t1) of row b of a [B, T, per] array, as a [1, t1 - t0, per] array. */
function rowSlice(a: ArrayLike<number>, T: number, per: number, b: number, t0: number, t1: number): Float64Array {
  return Float64Array.from({ length: (t1 - t0) * per }, (_, i) => a[(b * T + t0) * per + i]!);
}

/** The [t0, t1) runs of equal ids in row b. */
function runs(seg: Int32Array, T: number, b: number): [number, number][] {
  const out: [number, number][] = [];
  for (let t = 0, start = 0; t < T; t++) if (t === T - 1 || seg[b * T + t + 1] !== seg[b * T + t]) out.push([start, (start = t + 1)]);
  return out;
}

const shape = (B: number, T: number, Hk: number, Hv: number, Dk: number, Dv: number): DeltaShape => ({ B, T, Hk, Hv, Dk, Dv, scale: 1 / Math.sqrt(Dk) });

describe('gated delta rule reference', () => {
  it('the chunked form equals the recurrence for several chunk sizes, with and without a state', () => {
    const rng = makeRng();
    for (const s of [shape(1, 10, 1, 1, 4, 3), shape(2, 7, 1, 2, 3, 5), shape(1, 13, 2, 4, 5, 2)])
      for (const withState of [false, true]) {
        const x = deltaInputs(rng, s, withState);
        const ref = deltaRuleRecurrentRef(s, x);
        for (const C of [1, 2, 3, 4, 8, 16]) {
          const got = deltaRuleChunkedRef(s, x, C);
          expect(maxAbsDiff(got.out, ref.out), `out, C ${C}, ${JSON.stringify(s)} (SEED=${rng.seed})`).toBeLessThan(1e-12);
          expect(maxAbsDiff(got.state, ref.state), `state, C ${C} (SEED=${rng.seed})`).toBeLessThan(1e-12);
        }
      }
  });

  it('packed segments: each runs as if alone, chunked equals recurrent, and the backward matches finite differences', () => {
    const rng = makeRng();
    const s = shape(2, 14, 1, 2, 3, 2);
    const x = { ...deltaInputs(rng, s, false), segments: segmentIds(rng, s.B, s.T, 0.3) };
    x.segments[3] = x.segments[2]! + 1; // at least one boundary in row 0
    for (let t = 4; t < s.T; t++) x.segments[t] = Math.max(x.segments[t]!, x.segments[3]!);
    const packed = deltaRuleRecurrentRef(s, x);
    for (let b = 0; b < s.B; b++)
      for (const [t0, t1] of runs(x.segments, s.T, b)) {
        const alone = deltaRuleRecurrentRef({ ...s, B: 1, T: t1 - t0 }, {
          q: rowSlice(x.q, s.T, s.Hk * s.Dk, b, t0, t1), k: rowSlice(x.k, s.T, s.Hk * s.Dk, b, t0, t1), v: rowSlice(x.v, s.T, s.Hv * s.Dv, b, t0, t1),
          g: rowSlice(x.g, s.T, s.Hv, b, t0, t1), beta: rowSlice(x.beta, s.T, s.Hv, b, t0, t1),
        });
        expect(maxAbsDiff(alone.out, rowSlice(packed.out, s.T, s.Hv * s.Dv, b, t0, t1)), `row ${b} tokens ${t0}..${t1} (SEED=${rng.seed})`).toBeLessThan(1e-14);
      }
    for (const C of [1, 3, 4, 16]) expect(maxAbsDiff(deltaRuleChunkedRef(s, x, C).out, packed.out), `C ${C} (SEED=${rng.seed})`).toBeLessThan(1e-12);
    const dout = rng.randn(x.v.length);
    const grads = deltaRuleBackwardRef(s, x, dout);
    const loss = () => dotAll(deltaRuleRecurrentRef(s, x).out, dout);
    for (const [name, arr, grad] of [['k', x.k, grads.dk], ['g', x.g, grads.dg], ['beta', x.beta, grads.dbeta]] as const)
      for (let i = 0; i < arr.length; i++) {
        const fd = finiteDiff(arr, i, loss);
        expect(Math.abs(fd - grad[i]!), `d${name}[${i}] (SEED=${rng.seed})`).toBeLessThan(1e-6 * Math.max(1, Math.abs(fd)));
      }
  });

  it('a prefill then token-by-token steps with the carried state equal one pass', () => {
    const rng = makeRng();
    const s = shape(2, 11, 1, 2, 4, 3);
    const x = deltaInputs(rng, s, true);
    const whole = deltaRuleRecurrentRef(s, x);
    const P = 6;
    const slice = (a: Float64Array, per: number, t0: number, t1: number) => {
      const out = new Float64Array(s.B * (t1 - t0) * per);
      for (let b = 0; b < s.B; b++) out.set(a.subarray((b * s.T + t0) * per, (b * s.T + t1) * per), b * (t1 - t0) * per);
      return out;
    };
    const part = (t0: number, t1: number, state: Float64Array) => ({
      q: slice(x.q, s.Hk * s.Dk, t0, t1), k: slice(x.k, s.Hk * s.Dk, t0, t1), v: slice(x.v, s.Hv * s.Dv, t0, t1),
      g: slice(x.g, s.Hv, t0, t1), beta: slice(x.beta, s.Hv, t0, t1), state,
    });
    const prefill = deltaRuleChunkedRef({ ...s, T: P }, part(0, P, x.state), 4);
    expect(maxAbsDiff(prefill.out, slice(whole.out, s.Hv * s.Dv, 0, P))).toBeLessThan(1e-12);
    let state = prefill.state;
    for (let t = P; t < s.T; t++) {
      const step = deltaRuleRecurrentRef({ ...s, T: 1 }, part(t, t + 1, state));
      expect(maxAbsDiff(step.out, slice(whole.out, s.Hv * s.Dv, t, t + 1)), `token ${t} (SEED=${rng.seed})`).toBeLessThan(1e-12);
      state = step.state;
    }
    expect(maxAbsDiff(state, whole.state)).toBeLessThan(1e-12);
  });

  it('the backward matches finite differences of the recurrence, through the initial and final state', () => {
    const rng = makeRng();
    const s = shape(2, 5, 1, 2, 3, 2);
    const x = deltaInputs(rng, s, true);
    const dout = rng.randn(x.v.length), dFinal = rng.randn(x.state.length);
    const loss = () => {
      const r = deltaRuleRecurrentRef(s, x);
      return dotAll(r.out, dout) + dotAll(r.state, dFinal);
    };
    const grads = deltaRuleBackwardRef(s, x, dout, dFinal);
    const pairs: [string, Float64Array, Float64Array][] = [
      ['q', x.q, grads.dq], ['k', x.k, grads.dk], ['v', x.v, grads.dv], ['g', x.g, grads.dg], ['beta', x.beta, grads.dbeta],
      ['state', x.state, grads.dstate],
    ];
    for (const [name, arr, grad] of pairs)
      for (let i = 0; i < arr.length; i++) {
        const fd = finiteDiff(arr, i, loss);
        expect(Math.abs(fd - grad[i]!), `d${name}[${i}] fd ${fd} vs ${grad[i]} (SEED=${rng.seed})`).toBeLessThan(1e-6 * Math.max(1, Math.abs(fd)));
      }
  });

  it('the gates and their gradients', () => {
    const rng = makeRng();
    const [N, Hv] = [4, 3];
    const a = f64(rng.randn(N * Hv, 2)), b = f64(rng.randn(N * Hv, 2)), aLog = f64(rng.uniform(Hv, -1, 2)), dt = f64(rng.randn(Hv));
    a[0] = 25 - dt[0]!; // softplus's linear branch
    const { g, beta } = gatesRef(a, b, aLog, dt, N, Hv);
    expect(g.every((v) => v < 0) && beta.every((v) => v > 0 && v < 1)).toBe(true);
    const dg = rng.randn(N * Hv), dbeta = rng.randn(N * Hv);
    const loss = () => {
      const r = gatesRef(a, b, aLog, dt, N, Hv);
      return dotAll(r.g, dg) + dotAll(r.beta, dbeta);
    };
    const grads = gatesBackwardRef(dg, dbeta, a, b, aLog, dt, N, Hv);
    const pairs: [string, Float64Array, Float64Array][] = [['a', a, grads.da], ['b', b, grads.db], ['A_log', aLog, grads.daLog], ['dt_bias', dt, grads.ddtBias]];
    for (const [name, arr, grad] of pairs)
      for (let i = 0; i < arr.length; i++) {
        const fd = finiteDiff(arr, i, loss);
        expect(Math.abs(fd - grad[i]!), `d${name}[${i}] (SEED=${rng.seed})`).toBeLessThan(1e-6 * Math.max(1, Math.abs(fd)));
      }
  });

  it('l2norm and RMSNormGated gradients', () => {
    const rng = makeRng();
    const [R, D, eps] = [3, 5, 1e-6];
    const x = f64(rng.randn(R * D)), z = f64(rng.randn(R * D, 2)), w = f64(rng.randn(D)), dy = rng.randn(R * D);
    const l2 = l2NormRef(x, R, D, eps);
    for (let r = 0; r < R; r++) expect(dotAll(l2.subarray(r * D, r * D + D), l2.subarray(r * D, r * D + D))).toBeCloseTo(1, 5);
    const dxL2 = l2NormBackwardRef(dy, x, R, D, eps);
    for (let i = 0; i < R * D; i++) {
      expect(Math.abs(finiteDiff(x, i, () => dotAll(l2NormRef(x, R, D, eps), dy)) - dxL2[i]!), `l2norm dx[${i}] (SEED=${rng.seed})`).toBeLessThan(1e-7);
    }
    const gated = rmsNormGatedBackwardRef(dy, x, z, w, R, D, eps);
    const loss = () => dotAll(rmsNormGatedRef(x, z, w, R, D, eps), dy);
    const pairs: [string, Float64Array, Float64Array][] = [['x', x, gated.dx], ['z', z, gated.dz], ['w', w, gated.dw]];
    for (const [name, arr, grad] of pairs)
      for (let i = 0; i < arr.length; i++) {
        expect(Math.abs(finiteDiff(arr, i, loss) - grad[i]!), `gated norm d${name}[${i}] (SEED=${rng.seed})`).toBeLessThan(1e-7);
      }
  });
});

describe('causal conv1d reference', () => {
  it('packed segments: each runs as if alone; gradients match finite differences', () => {
    const rng = makeRng();
    const s: ConvShape = { B: 2, T: 9, C: 2, K: 4 };
    const x = f64(rng.randn(s.B * s.T * s.C)), w = f64(rng.randn(s.C * s.K)), seg = segmentIds(rng, s.B, s.T, 0.35);
    const packed = conv1dRef(s, x, w, undefined, seg).y;
    for (let b = 0; b < s.B; b++)
      for (const [t0, t1] of runs(seg, s.T, b)) {
        const alone = conv1dRef({ ...s, B: 1, T: t1 - t0 }, rowSlice(x, s.T, s.C, b, t0, t1), w).y;
        expect(maxAbsDiff(alone, rowSlice(packed, s.T, s.C, b, t0, t1)), `row ${b} tokens ${t0}..${t1} (SEED=${rng.seed})`).toBe(0);
      }
    const dy = rng.randn(s.B * s.T * s.C);
    const grads = conv1dBackwardRef(s, dy, x, w, undefined, seg);
    const loss = () => dotAll(conv1dRef(s, x, w, undefined, seg).y, dy);
    for (const [name, arr, grad] of [['x', x, grads.dx], ['w', w, grads.dw]] as const)
      for (let i = 0; i < arr.length; i++) expect(Math.abs(finiteDiff(arr, i, loss) - grad[i]!), `conv d${name}[${i}] (SEED=${rng.seed})`).toBeLessThan(1e-7);
  });

  it('is causal, carries its state across calls, and its gradients match finite differences', () => {
    const rng = makeRng();
    const s: ConvShape = { B: 2, T: 6, C: 3, K: 4 };
    const x = f64(rng.randn(s.B * s.T * s.C)), w = f64(rng.randn(s.C * s.K)), state = f64(rng.randn(s.B * (s.K - 1) * s.C));
    const whole = conv1dRef(s, x, w, state);

    // token t's output does not depend on later inputs
    const later = Float64Array.from(x);
    for (let b = 0; b < s.B; b++) for (let c = 0; c < s.C; c++) later[(b * s.T + 4) * s.C + c] = 7;
    const y2 = conv1dRef(s, later, w, state).y;
    for (let b = 0; b < s.B; b++) for (let e = 0; e < 4 * s.C; e++) expect(y2[b * s.T * s.C + e]).toBe(whole.y[b * s.T * s.C + e]);

    // prefill of 2 tokens, then one token at a time (T = 1 < K - 1 exercises the state shift)
    let st: ArrayLike<number> = state;
    const pieces = [[0, 2], [2, 3], [3, 4], [4, 6]];
    for (const [t0, t1] of pieces) {
      const n = t1! - t0!;
      const xp = new Float64Array(s.B * n * s.C);
      for (let b = 0; b < s.B; b++) xp.set(x.subarray((b * s.T + t0!) * s.C, (b * s.T + t1!) * s.C), b * n * s.C);
      const r = conv1dRef({ ...s, T: n }, xp, w, st);
      for (let b = 0; b < s.B; b++)
        for (let e = 0; e < n * s.C; e++) expect(Math.abs(r.y[b * n * s.C + e]! - whole.y[(b * s.T + t0!) * s.C + e]!)).toBeLessThan(1e-14);
      st = r.state;
    }
    expect(maxAbsDiff(st, whole.state)).toBe(0);

    const dy = rng.randn(s.B * s.T * s.C);
    const grads = conv1dBackwardRef(s, dy, x, w, state);
    const loss = () => dotAll(conv1dRef(s, x, w, state).y, dy);
    const pairs: [string, Float64Array, Float64Array][] = [['x', x, grads.dx], ['w', w, grads.dw], ['state', state, grads.dstate]];
    for (const [name, arr, grad] of pairs)
      for (let i = 0; i < arr.length; i++) {
        expect(Math.abs(finiteDiff(arr, i, loss) - grad[i]!), `conv d${name}[${i}] (SEED=${rng.seed})`).toBeLessThan(1e-7);
      }
  });
});
