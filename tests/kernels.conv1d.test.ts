// Kernel family: conv1d (shaders/conv1d.wgsl, src/kernels/conv1d.ts)
import { describe, expect, it } from 'vitest';
import { CONV1D_CASES } from '../src/bench/cases/conv1d';
import { conv1dBackward, conv1dForward } from '../src/kernels/conv1d';
import { expectClose, makeRng } from './helpers/check';
import { poisoned, testGpu } from './helpers/gpu';
import { segmentIds } from './helpers/segments';
import { conv1dBackwardRef, conv1dRef } from './reference/conv1d';

describe('conv1d', () => {
  for (const s of CONV1D_CASES.filter((c) => !c.bench))
    it(`forward and backward on ${JSON.stringify(s)}`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      const ref = { B: s.batch, T: s.len, C: s.channels, K: s.kernel };
      const N = s.batch * s.len * s.channels;
      const x = rng.randn(N), w = rng.randn(s.channels * s.kernel, 0.7), dy = rng.randn(N);
      const tx = gpu.upload(x, [N]), tw = gpu.upload(w, [s.channels * s.kernel]), tdy = gpu.upload(dy, [N]);
      const y = poisoned(gpu, [N]);
      conv1dForward(gpu, s, tx, tw, y);
      expectClose(await gpu.readF32(y), conv1dRef(ref, x, w).y, 1e-5, 'y', rng.seed);

      const g = conv1dBackwardRef(ref, dy, x, w);
      const dx = poisoned(gpu, [N]), dw = poisoned(gpu, [s.channels * s.kernel]);
      conv1dBackward(gpu, s, tdy, tx, tw, dx, dw);
      expectClose(await gpu.readF32(dx), g.dx, 1e-5, 'dx', rng.seed);
      expectClose(await gpu.readF32(dw), g.dw, 1e-5, 'dw', rng.seed);
      const dxOnly = poisoned(gpu, [N]);
      conv1dBackward(gpu, s, tdy, tx, tw, dxOnly, null);
      expectClose(await gpu.readF32(dxOnly), g.dx, 1e-5, 'dx without dw', rng.seed);
      gpu.release(tx, tw, tdy, y, dx, dw, dxOnly);
    });

  it('with a bias (Mamba-2): forward, decode state and backward with the bias gradient', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [B, T, C, K] = [2, 9, 7, 4];
    const N = B * T * C;
    const x = rng.randn(N), w = rng.randn(C * K, 0.7), bias = rng.randn(C), dy = rng.randn(N), state0 = rng.randn(B * (K - 1) * C);
    const tx = gpu.upload(x, [N]), tw = gpu.upload(w, [C, K]), tb = gpu.upload(bias, [C]), tdy = gpu.upload(dy, [N]);
    const s = { batch: B, len: T, channels: C, kernel: K, bias: tb };
    const ref = { B, T, C, K, bias };
    const y = poisoned(gpu, [N]), state = gpu.upload(state0, [B, K - 1, C]);
    conv1dForward(gpu, s, tx, tw, y, state);
    const whole = conv1dRef(ref, x, w, state0);
    expectClose(await gpu.readF32(y), whole.y, 1e-5, 'y with a state', rng.seed);
    expectClose(await gpu.readF32(state), whole.state, 1e-6, 'state', rng.seed);
    const dx = poisoned(gpu, [N]), dw = poisoned(gpu, [C * K]), db = poisoned(gpu, [C]);
    conv1dBackward(gpu, s, tdy, tx, tw, dx, dw, db);
    const g = conv1dBackwardRef(ref, dy, x, w);
    expectClose(await gpu.readF32(dx), g.dx, 1e-5, 'dx', rng.seed);
    expectClose(await gpu.readF32(dw), g.dw, 1e-5, 'dw', rng.seed);
    expectClose(await gpu.readF32(db), g.dbias, 1e-5, 'dbias', rng.seed);
    expect(() => conv1dBackward(gpu, { ...s, bias: null }, tdy, tx, tw, dx, dw, db)).toThrow(/dbias is given but the convolution has no bias/);
    gpu.release(tx, tw, tb, tdy, y, state, dx, dw, db);
  });

  it('packed segments: no reads across sequences, forward and backward', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [B, T, C, K] = [2, 23, 5, 4];
    const N = B * T * C;
    const seg = segmentIds(rng, B, T, 0.25);
    const x = rng.randn(N), w = rng.randn(C * K), dy = rng.randn(N);
    const tseg = gpu.upload(seg, [B, T], 'i32'), tx = gpu.upload(x, [N]), tw = gpu.upload(w, [C * K]), tdy = gpu.upload(dy, [N]);
    const s = { batch: B, len: T, channels: C, kernel: K, segments: tseg };
    const y = poisoned(gpu, [N]), dx = poisoned(gpu, [N]), dw = poisoned(gpu, [C * K]);
    conv1dForward(gpu, s, tx, tw, y);
    const ref = { B, T, C, K };
    expectClose(await gpu.readF32(y), conv1dRef(ref, x, w, undefined, seg).y, 1e-5, 'y', rng.seed);
    conv1dBackward(gpu, s, tdy, tx, tw, dx, dw);
    const g = conv1dBackwardRef(ref, dy, x, w, undefined, seg);
    expectClose(await gpu.readF32(dx), g.dx, 1e-5, 'dx', rng.seed);
    expectClose(await gpu.readF32(dw), g.dw, 1e-5, 'dw', rng.seed);
    gpu.release(tseg, tx, tw, tdy, y, dx, dw);
  });

  it('a prefill then decode steps with the conv state equal one pass', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [B, T, C, K] = [2, 7, 6, 4];
    const x = rng.randn(B * T * C), w = rng.randn(C * K), state0 = rng.randn(B * (K - 1) * C);
    const whole = conv1dRef({ B, T, C, K }, x, w, state0);
    const tw = gpu.upload(w, [C, K]), state = gpu.upload(state0, [B, K - 1, C]);
    for (const [t0, t1] of [[0, 2], [2, 3], [3, 4], [4, 7]] as const) {
      const n = t1 - t0;
      const xp = new Float32Array(B * n * C), want = new Float64Array(B * n * C);
      for (let b = 0; b < B; b++) {
        xp.set(x.subarray((b * T + t0) * C, (b * T + t1) * C), b * n * C);
        want.set(whole.y.subarray((b * T + t0) * C, (b * T + t1) * C), b * n * C);
      }
      const tx = gpu.upload(xp, [B, n, C]), y = poisoned(gpu, [B, n, C]);
      conv1dForward(gpu, { batch: B, len: n, channels: C, kernel: K }, tx, tw, y, state);
      expectClose(await gpu.readF32(y), want, 1e-5, `y of tokens ${t0}..${t1}`, rng.seed);
      gpu.release(tx, y);
    }
    expectClose(await gpu.readF32(state), whole.state, 1e-6, 'state', rng.seed);
    gpu.release(tw, state);
  });

  it('without the SiLU (LFM2): forward, backward, and decode steps with the state equal one pass', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [B, T, C, K] = [2, 9, 5, 3];
    const N = B * T * C;
    const x = rng.randn(N), w = rng.randn(C * K, 0.7), dy = rng.randn(N);
    const ref = { B, T, C, K, silu: false };
    const s = { batch: B, len: T, channels: C, kernel: K, silu: false };
    const tx = gpu.upload(x, [N]), tw = gpu.upload(w, [C, K]), tdy = gpu.upload(dy, [N]);
    const y = poisoned(gpu, [N]), dx = poisoned(gpu, [N]), dw = poisoned(gpu, [C * K]);
    conv1dForward(gpu, s, tx, tw, y);
    expectClose(await gpu.readF32(y), conv1dRef(ref, x, w).y, 1e-5, 'y', rng.seed);
    conv1dBackward(gpu, s, tdy, tx, tw, dx, dw);
    const g = conv1dBackwardRef(ref, dy, x, w);
    expectClose(await gpu.readF32(dx), g.dx, 1e-5, 'dx', rng.seed);
    expectClose(await gpu.readF32(dw), g.dw, 1e-5, 'dw', rng.seed);
    const whole = conv1dRef(ref, x, w);
    const state = gpu.upload(new Float32Array(B * (K - 1) * C), [B, K - 1, C]);
    for (const [t0, t1] of [[0, 4], [4, 5], [5, 6], [6, 9]] as const) {
      const n = t1 - t0;
      const xp = new Float32Array(B * n * C), want = new Float64Array(B * n * C);
      for (let b = 0; b < B; b++) {
        xp.set(x.subarray((b * T + t0) * C, (b * T + t1) * C), b * n * C);
        want.set(whole.y.subarray((b * T + t0) * C, (b * T + t1) * C), b * n * C);
      }
      const tp = gpu.upload(xp, [B, n, C]), yp = poisoned(gpu, [B, n, C]);
      conv1dForward(gpu, { ...s, len: n }, tp, tw, yp, state);
      expectClose(await gpu.readF32(yp), want, 1e-5, `y of tokens ${t0}..${t1}`, rng.seed);
      gpu.release(tp, yp);
    }
    expectClose(await gpu.readF32(state), whole.state, 1e-6, 'state', rng.seed);
    gpu.release(tx, tw, tdy, y, dx, dw, state);
  });

  it('reports mismatched shapes and aliasing', async () => {
    const gpu = await testGpu();
    const s = { batch: 1, len: 3, channels: 4, kernel: 4 };
    const x = gpu.tensor([3, 4]), w = gpu.tensor([4, 4]), y = gpu.tensor([3, 4]);
    expect(() => conv1dForward(gpu, s, x, gpu.tensor([4, 3]), y)).toThrow(/w \[4, 3\] must have 16 elements/);
    expect(() => conv1dForward(gpu, s, x, w, x)).toThrow(/y must not share a buffer with x/);
    expect(() => conv1dForward(gpu, s, x, w, y, gpu.tensor([2, 4]))).toThrow(/state \[2, 4\] must have 12 elements/);
    expect(() => conv1dBackward(gpu, s, y, x, w, y, null)).toThrow(/dx must not share a buffer with dy/);
  });
});
