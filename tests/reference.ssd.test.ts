// The f64 reference of Mamba-2's SSD scan (tests/reference/ssd.ts) checked against itself (chunked
// vs recurrent, prefill + steps vs one pass) and against finite differences, before the GPU kernels
// are checked against it.
import { describe, expect, it } from 'vitest';
import { makeRng, type Rng } from './helpers/check';
import { dotAll, finiteDiff } from './helpers/finite-diff';
import { conv1dBackwardRef, conv1dRef } from './reference/conv1d';
import { ssdBackwardRef, ssdChunkedRef, ssdRecurrentRef, type SsdShape } from './reference/ssd';

const f64 = (a: ArrayLike<number>) => Float64Array.from(a);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Inputs in the ranges a checkpoint gives: dt around zero, A_log of log(1..H), D near 1. */
function ssdInputs(rng: Rng, s: SsdShape, withState: boolean) {
  return {
    x: f64(rng.randn(s.B * s.T * s.H * s.P)),
    dt: f64(rng.randn(s.B * s.T * s.H)),
    Bm: f64(rng.randn(s.B * s.T * s.G * s.N, 0.5)),
    Cm: f64(rng.randn(s.B * s.T * s.G * s.N, 0.5)),
    dtBias: f64(rng.uniform(s.H, -0.5, 0.5)),
    aLog: f64(rng.uniform(s.H, -1, 1.5)),
    D: f64(rng.uniform(s.H, 0.5, 1.5)),
    state: withState ? f64(rng.randn(s.B * s.H * s.N * s.P, 0.5)) : new Float64Array(s.B * s.H * s.N * s.P),
  };
}

describe('SSD reference', () => {
  it('the chunked form equals the recurrence for several chunk sizes, with and without a state', () => {
    const rng = makeRng();
    const shapes: SsdShape[] = [
      { B: 1, T: 10, H: 1, G: 1, N: 3, P: 2 }, { B: 2, T: 7, H: 4, G: 2, N: 4, P: 3 }, { B: 1, T: 13, H: 3, G: 1, N: 2, P: 5, dtMax: 0.9 },
    ];
    for (const s of shapes)
      for (const withState of [false, true]) {
        const x = ssdInputs(rng, s, withState);
        const ref = ssdRecurrentRef(s, x);
        for (const C of [1, 2, 3, 4, 8, 16]) {
          const got = ssdChunkedRef(s, x, C);
          expect(maxAbsDiff(got.y, ref.y), `y, C ${C}, ${JSON.stringify(s)} (SEED=${rng.seed})`).toBeLessThan(1e-11);
          expect(maxAbsDiff(got.state, ref.state), `state, C ${C} (SEED=${rng.seed})`).toBeLessThan(1e-11);
        }
      }
  });

  it('a chunked prefill then token-by-token steps with the carried state equal one pass', () => {
    const rng = makeRng();
    const s: SsdShape = { B: 2, T: 11, H: 2, G: 1, N: 3, P: 4 };
    const x = ssdInputs(rng, s, true);
    const whole = ssdRecurrentRef(s, x);
    const slice = (a: Float64Array, per: number, t0: number, t1: number) => {
      const out = new Float64Array(s.B * (t1 - t0) * per);
      for (let b = 0; b < s.B; b++) out.set(a.subarray((b * s.T + t0) * per, (b * s.T + t1) * per), b * (t1 - t0) * per);
      return out;
    };
    const part = (t0: number, t1: number, state: Float64Array) => ({
      ...x, x: slice(x.x, s.H * s.P, t0, t1), dt: slice(x.dt, s.H, t0, t1), Bm: slice(x.Bm, s.G * s.N, t0, t1), Cm: slice(x.Cm, s.G * s.N, t0, t1), state,
    });
    const P = 6;
    const prefill = ssdChunkedRef({ ...s, T: P }, part(0, P, x.state), 4);
    expect(maxAbsDiff(prefill.y, slice(whole.y, s.H * s.P, 0, P))).toBeLessThan(1e-12);
    let state = prefill.state;
    for (let t = P; t < s.T; t++) {
      const step = ssdRecurrentRef({ ...s, T: 1 }, part(t, t + 1, state));
      expect(maxAbsDiff(step.y, slice(whole.y, s.H * s.P, t, t + 1)), `token ${t} (SEED=${rng.seed})`).toBeLessThan(1e-12);
      state = step.state;
    }
    expect(maxAbsDiff(state, whole.state)).toBeLessThan(1e-12);
  });

  it('packed segments: each runs as if alone, and the backward matches finite differences', () => {
    const rng = makeRng();
    const s: SsdShape = { B: 2, T: 9, H: 2, G: 1, N: 3, P: 2 };
    const x = { ...ssdInputs(rng, s, false), segments: Int32Array.from([1, 1, 1, 2, 2, 2, 2, 3, 3, 5, 5, 6, 6, 6, 6, 6, 6, 7]) };
    const packed = ssdRecurrentRef(s, x);
    const slice = (a: ArrayLike<number>, per: number, b: number, t0: number, t1: number) => Float64Array.from({ length: (t1 - t0) * per }, (_, i) => a[(b * s.T + t0) * per + i]!);
    for (const [b, t0, t1] of [[0, 0, 3], [0, 3, 7], [0, 7, 9], [1, 0, 2], [1, 2, 8], [1, 8, 9]] as const) {
      const alone = ssdRecurrentRef({ ...s, B: 1, T: t1 - t0 }, {
        ...x, segments: undefined, x: slice(x.x, s.H * s.P, b, t0, t1), dt: slice(x.dt, s.H, b, t0, t1), Bm: slice(x.Bm, s.G * s.N, b, t0, t1), Cm: slice(x.Cm, s.G * s.N, b, t0, t1),
        state: new Float64Array(s.H * s.N * s.P),
      });
      expect(maxAbsDiff(alone.y, slice(packed.y, s.H * s.P, b, t0, t1)), `row ${b} tokens ${t0}..${t1} (SEED=${rng.seed})`).toBeLessThan(1e-14);
    }
    const dy = rng.randn(x.x.length);
    const grads = ssdBackwardRef(s, x, dy);
    const loss = () => dotAll(ssdRecurrentRef(s, x).y, dy);
    for (const [name, arr, grad] of [['x', x.x, grads.dx], ['dt', x.dt, grads.ddt], ['Bm', x.Bm, grads.dBm], ['aLog', x.aLog, grads.daLog]] as const)
      for (let i = 0; i < arr.length; i++) {
        const fd = finiteDiff(arr, i, loss);
        expect(Math.abs(fd - grad[i]!), `d${name}[${i}] (SEED=${rng.seed})`).toBeLessThan(1e-6 * Math.max(1, Math.abs(fd)));
      }
  });

  it('the backward matches finite differences, through the initial and final state and the dt clamp', () => {
    const rng = makeRng();
    for (const s of [{ B: 2, T: 5, H: 4, G: 2, N: 3, P: 2 }, { B: 1, T: 6, H: 2, G: 1, N: 2, P: 3, dtMin: 0.3, dtMax: 1.2 }] as SsdShape[]) {
      const x = ssdInputs(rng, s, true);
      const dy = rng.randn(x.x.length), dFinal = rng.randn(x.state.length);
      const loss = () => {
        const r = ssdRecurrentRef(s, x);
        return dotAll(r.y, dy) + dotAll(r.state, dFinal);
      };
      const grads = ssdBackwardRef(s, x, dy, dFinal);
      const pairs: [string, Float64Array, Float64Array][] = [
        ['x', x.x, grads.dx], ['dt', x.dt, grads.ddt], ['Bm', x.Bm, grads.dBm], ['Cm', x.Cm, grads.dCm], ['dtBias', x.dtBias, grads.ddtBias],
        ['aLog', x.aLog, grads.daLog], ['D', x.D, grads.dD], ['state', x.state, grads.dstate],
      ];
      for (const [name, arr, grad] of pairs)
        for (let i = 0; i < arr.length; i++) {
          const fd = finiteDiff(arr, i, loss);
          expect(Math.abs(fd - grad[i]!), `d${name}[${i}] fd ${fd} vs ${grad[i]} ${JSON.stringify(s)} (SEED=${rng.seed})`).toBeLessThan(1e-6 * Math.max(1, Math.abs(fd)));
        }
    }
  });

  it("Mamba-2's conv1d with a bias: the gradients match finite differences", () => {
    const rng = makeRng();
    const s = { B: 2, T: 5, C: 3, K: 4, bias: f64(rng.randn(3)) };
    const x = f64(rng.randn(s.B * s.T * s.C)), w = f64(rng.randn(s.C * s.K, 0.7)), dy = rng.randn(x.length);
    const loss = () => dotAll(conv1dRef(s, x, w).y, dy);
    const grads = conv1dBackwardRef(s, dy, x, w);
    for (const [name, arr, grad] of [['x', x, grads.dx], ['w', w, grads.dw], ['bias', s.bias, grads.dbias]] as const)
      for (let i = 0; i < arr.length; i++) {
        const fd = finiteDiff(arr, i, loss);
        expect(Math.abs(fd - grad[i]!), `d${name}[${i}] (SEED=${rng.seed})`).toBeLessThan(1e-6 * Math.max(1, Math.abs(fd)));
      }
  });
});
