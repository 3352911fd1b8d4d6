// Kernel family: rope (shaders/rope.wgsl, src/kernels/rope.ts)
import { describe, expect, it } from 'vitest';
import { ROPE_CASES } from '../src/bench/cases/rope';
import { ropeForward, ropeBackward, ropeInvFreq } from '../src/kernels/rope';
import { Gpu } from '../src/gpu/runtime';
import { testGpu, poisoned } from './helpers/gpu';
import { expectClose, makeRng } from './helpers/check';
import { llama3InvFreqF64, multimodalRopeRef, ropeRef } from './reference/rope';

describe('rope', () => {
  it('ropeInvFreq: default frequencies are torch f32 values, partial rotary shortens them', () => {
    const inv = ropeInvFreq({ headDim: 128, theta: 10000 });
    expect(inv.length).toBe(64);
    expect(inv[0]).toBe(1);
    expect(inv[1]).toBe(0.8659643530845642); // 1 / 10000 ** (2 / 128) in float32 steps (numpy/glibc powf)
    for (let k = 0; k < 64; k++) {
      expect(Math.abs(inv[k]! - 10000 ** (-(2 * k) / 128)) / inv[k]!, `inv[${k}]`).toBeLessThan(3e-7);
    }
    expect(ropeInvFreq({ headDim: 80, theta: 10000, partialRotaryFactor: 0.4 }).length).toBe(16); // int(80 * 0.4) = 32
    const p = ropeInvFreq({ headDim: 128, theta: 10000, partialRotaryFactor: 0.75 }); // rotary dim 96
    expect(p.length).toBe(48);
    expect(p[1]).toBe(Math.fround(1 / Math.fround(10000 ** Math.fround(2 / 96))));
    const lin = ropeInvFreq({ headDim: 64, theta: 10000, scaling: { rope_type: 'linear', factor: 4 } });
    const def = ropeInvFreq({ headDim: 64, theta: 10000 });
    for (let k = 0; k < 32; k++) expect(lin[k]).toBe(def[k]! / 4);
    expect(() => ropeInvFreq({ headDim: 64, theta: 10000, scaling: { rope_type: 'llama3', factor: 8 } })).toThrow(/needs a numeric low_freq_factor/);
    expect(() => ropeInvFreq({ headDim: 10, theta: 10000, partialRotaryFactor: 0.5 })).toThrow(/must be even/);
  });

  it('ropeInvFreq: longrope divides by short_factor in f32 (Phi-4-mini: rotary dim 96, 48 factors)', () => {
    const short = Array.from({ length: 48 }, (_, k) => 1 + k / 7);
    const inv = ropeInvFreq({ headDim: 128, theta: 10000, partialRotaryFactor: 0.75, scaling: { rope_type: 'longrope', short_factor: short } });
    const def = ropeInvFreq({ headDim: 128, theta: 10000, partialRotaryFactor: 0.75 });
    for (let k = 0; k < 48; k++) {
      expect(inv[k]).toBe(Math.fround(1 / Math.fround(Math.fround(short[k]!) * Math.fround(10000 ** Math.fround((2 * k) / 96)))));
      expect(Math.abs(inv[k]! - def[k]! / short[k]!) / inv[k]!, `inv[${k}]`).toBeLessThan(3e-7);
    }
    expect(() => ropeInvFreq({ headDim: 128, theta: 10000, scaling: { rope_type: 'longrope', short_factor: short } })).toThrow(/longrope needs short_factor of 64 values/);
  });

  it('ropeInvFreq: llama3 scaling matches hand-computed values of the transformers formula', () => {
    const scaling = { rope_type: 'llama3' as const, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    const inv = ropeInvFreq({ headDim: 128, theta: 500000, scaling });
    // Llama 3.1: inv_k = 500000^(-k/64); wavelen = 2 pi / inv_k; < 2048 kept, > 8192 divided by 8,
    // between: smooth = (8192 / wavelen - 1) / 3, inv = (1 - smooth) inv / 8 + smooth inv.
    const hand: [number, number][] = [
      [0, 1], // wavelen 6.28: kept
      [20, 0.016560440080994446], // wavelen 379: kept
      [29, 0.00216657076350336], // wavelen 2402: smooth 0.8036
      [30, 0.0013718935677611381], // wavelen 2948: smooth 0.5928
      [33, 0.00031269375038406517], // wavelen 5454: smooth 0.1673
      [34, 0.00017850781276799638], // wavelen 6695: smooth 0.0745
      [35, 0.00009556212353964683], // wavelen 8219 > 8192: divided by 8
      [63, 3.068925988914511e-7], // divided by 8
    ];
    for (const [k, v] of hand) expect(Math.abs(inv[k]! - v) / v, `llama3 inv_freq[${k}] = ${inv[k]}, expected ${v}`).toBeLessThan(1e-6);
    const f64 = llama3InvFreqF64(128, 500000, 8, 1, 4, 8192);
    for (let k = 0; k < 64; k++) expect(Math.abs(inv[k]! - f64[k]!) / f64[k]!, `inv_freq[${k}]`).toBeLessThan(1e-6);
    // Llama 3.2 style factor 32
    const inv32 = ropeInvFreq({ headDim: 64, theta: 500000, scaling: { ...scaling, factor: 32 } });
    const ref32 = llama3InvFreqF64(64, 500000, 32, 1, 4, 8192);
    for (let k = 0; k < 32; k++) expect(Math.abs(inv32[k]! - ref32[k]!) / ref32[k]!, `factor 32 inv_freq[${k}]`).toBeLessThan(1e-6);
  });

  it('the reference backward (inverse rotation) matches finite differences of the reference forward', () => {
    const rng = makeRng();
    const [T, H, Dh] = [2, 2, 10];
    const inv = ropeInvFreq({ headDim: Dh, theta: 100, partialRotaryFactor: 0.8 });
    const pos = [3, 17];
    const x = Float64Array.from(rng.randn(T * H * Dh)), dy = rng.randn(T * H * Dh);
    const dx = ropeRef(dy, T, H, Dh, pos, inv, 1.3, true);
    const loss = () => ropeRef(x, T, H, Dh, pos, inv, 1.3).reduce((s, v, i) => s + v * dy[i]!, 0);
    const h = 1e-6;
    for (const i of [0, 3, 7, 9, 14, 31, 39]) {
      const v = x[i]!;
      x[i] = v + h;
      const lp = loss();
      x[i] = v - h;
      const lm = loss();
      x[i] = v;
      expect(Math.abs((lp - lm) / (2 * h) - dx[i]!), `dx[${i}] (SEED=${rng.seed})`).toBeLessThan(1e-7);
    }
  });

  for (const { T, H, Dh, theta, partial, scaling } of ROPE_CASES.filter((c) => !c.bench))
    it(`rope forward, in place and backward on [${T}, ${H}, ${Dh}], partial ${partial}, scaling ${scaling}`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      const inv = ropeInvFreq({ headDim: Dh, theta, partialRotaryFactor: partial });
      const pos = Int32Array.from({ length: T }, (_, t) => (t === 0 ? 0 : Math.floor(rng.next() * 40000)));
      const x = rng.randn(T * H * Dh), dy = rng.randn(T * H * Dh);
      const tInv = gpu.upload(inv, [inv.length]), tPos = gpu.upload(pos, [T], 'i32');
      const tx = gpu.upload(x, [T, H, Dh]), y = poisoned(gpu, [T, H, Dh]);
      const opts = { attentionScaling: scaling };
      ropeForward(gpu, tx, y, tPos, tInv, opts);
      const yRef = ropeRef(x, T, H, Dh, pos, inv, scaling);
      expectClose(await gpu.readF32(y), yRef, 1e-5, 'y', rng.seed);

      ropeForward(gpu, tx, tx, tPos, tInv, opts); // in place
      expectClose(await gpu.readF32(tx), yRef, 1e-5, 'y in place', rng.seed);

      const tdy = gpu.upload(dy, [T, H, Dh]), dx = poisoned(gpu, [T, H, Dh]);
      ropeBackward(gpu, tdy, dx, tPos, tInv, opts);
      const dxRef = ropeRef(dy, T, H, Dh, pos, inv, scaling, true);
      expectClose(await gpu.readF32(dx), dxRef, 1e-5, 'dx', rng.seed);
      ropeBackward(gpu, tdy, tdy, tPos, tInv, opts);
      expectClose(await gpu.readF32(tdy), dxRef, 1e-5, 'dx in place', rng.seed);
      // pass-through dims are copied exactly
      const out = await gpu.readF32(dx);
      for (let e = 0; e < T * H; e++)
        for (let d = 2 * inv.length; d < Dh; d++) expect(out[e * Dh + d]).toBe(dy[e * Dh + d]);
      gpu.release(tInv, tPos, tx, y, tdy, dx);
    });

  for (const { T, H, Dh, theta, partial, scaling } of [...ROPE_CASES.filter((c) => !c.bench), { T: 3, H: 2, Dh: 8, theta: 10000, partial: 0, scaling: 1 }])
    it(`rope forward with the projection's bias on [${T}, ${H}, ${Dh}], partial ${partial}`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      const inv = ropeInvFreq({ headDim: Dh, theta, partialRotaryFactor: partial });
      const pos = Int32Array.from({ length: T }, () => Math.floor(rng.next() * 40000));
      const x = rng.randn(T * H * Dh), bias = rng.randn(H * Dh);
      const tInv = gpu.upload(inv, [inv.length]), tPos = gpu.upload(pos, [T], 'i32');
      const tx = gpu.upload(x, [T, H, Dh]), tb = gpu.upload(bias, [H * Dh]), y = poisoned(gpu, [T, H, Dh]);
      ropeForward(gpu, tx, y, tPos, tInv, { attentionScaling: scaling, bias: tb });
      const biased = Float64Array.from(x, (v, i) => v + bias[i % (H * Dh)]!);
      expectClose(await gpu.readF32(y), ropeRef(biased, T, H, Dh, pos, inv, scaling), 1e-5, 'y', rng.seed);
      expect(() => ropeForward(gpu, tx, tx, tPos, tInv, { bias: tb })).toThrow(/with a bias, y must not be x/);
      expect(() => ropeForward(gpu, tx, y, tPos, tInv, { bias: gpu.upload(bias.subarray(1), [H * Dh - 1]) })).toThrow(/bias f32 \[\d+\] must be f32 with/);
      gpu.release(tInv, tPos, tx, tb, y);
    });

  for (const { T, H, Dh, sections } of [
    { T: 6, H: 2, Dh: 16, sections: [2, 3, 3] }, // M-RoPE, mrope_section of a tiny Qwen2-VL
    { T: 5, H: 3, Dh: 128, sections: [16, 24, 24] }, // Qwen2-VL-2B's
    { T: 9, H: 2, Dh: 16, sections: [4, 4] }, // the vision tower's (row, column)
  ])
    it(`sectioned rope (M-RoPE) forward, in place and backward on [${T}, ${H}, ${Dh}], sections [${sections.join(', ')}]`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      const C = sections.length;
      const inv = ropeInvFreq({ headDim: C === 2 ? Dh / 2 : Dh, theta: 10000 });
      const invTable = C === 2 ? Float32Array.from([...inv, ...inv]) : inv;
      const pos = Int32Array.from({ length: C * T }, () => Math.floor(rng.next() * 500));
      const x = rng.randn(T * H * Dh), dy = rng.randn(T * H * Dh);
      const tInv = gpu.upload(invTable, [invTable.length]), tPos = gpu.upload(pos, [C, T], 'i32');
      const tx = gpu.upload(x, [T, H, Dh]), y = poisoned(gpu, [T, H, Dh]);
      ropeForward(gpu, tx, y, tPos, tInv, { sections });
      const yRef = multimodalRopeRef(x, T, H, Dh, pos, invTable, sections);
      expectClose(await gpu.readF32(y), yRef, 1e-5, 'y', rng.seed);
      ropeForward(gpu, tx, tx, tPos, tInv, { sections });
      expectClose(await gpu.readF32(tx), yRef, 1e-5, 'y in place', rng.seed);
      const tdy = gpu.upload(dy, [T, H, Dh]), dx = poisoned(gpu, [T, H, Dh]);
      ropeBackward(gpu, tdy, dx, tPos, tInv, { sections });
      expectClose(await gpu.readF32(dx), multimodalRopeRef(dy, T, H, Dh, pos, invTable, sections, true), 1e-5, 'dx', rng.seed);
      // equal components reduce it to plain rope
      const same = Int32Array.from({ length: C * T }, (_, i) => i % T);
      const tSame = gpu.upload(same, [C, T], 'i32'), tx2 = gpu.upload(x, [T, H, Dh]);
      ropeForward(gpu, tx2, y, tSame, tInv, { sections });
      expectClose(await gpu.readF32(y), ropeRef(x, T, H, Dh, same.subarray(0, T), invTable), 1e-5, 'equal components', rng.seed);
      // with the q/k projection's bias fused (Qwen2-VL's q/k have biases)
      const bias = rng.randn(H * Dh);
      const tb = gpu.upload(bias, [H * Dh]);
      ropeForward(gpu, tx2, y, tPos, tInv, { sections, bias: tb });
      const biased = Float64Array.from(x, (v, i) => v + bias[i % (H * Dh)]!);
      expectClose(await gpu.readF32(y), multimodalRopeRef(biased, T, H, Dh, pos, invTable, sections), 1e-5, 'y with bias', rng.seed);
      expect(() => ropeForward(gpu, tx, y, tPos, tInv, { sections: [1, ...sections] })).toThrow(/sections .* summing to/);
      gpu.release(tInv, tPos, tx, y, tdy, dx, tSame, tb, tx2);
    });

  it('cos/sin of large angles (positions up to 2e5) stay accurate element by element', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const inv = ropeInvFreq({ headDim: 128, theta: 10000 });
    const T = 64, Dh = 128;
    const pos = Int32Array.from({ length: T }, (_, t) => (t < 4 ? [0, 1, 131071, 200000][t]! : Math.floor(rng.next() * 200000)));
    const x = new Float32Array(T * Dh);
    for (let t = 0; t < T; t++) for (let i = 0; i < 64; i++) x[t * Dh + i] = 1; // y = (cos, sin)
    const tx = gpu.upload(x, [T, 1, Dh]), y = poisoned(gpu, [T, 1, Dh]);
    ropeForward(gpu, tx, y, gpu.upload(pos, [T], 'i32'), gpu.upload(inv, [64]));
    const out = await gpu.readF32(y);
    let worst = 0, at = '';
    for (let t = 0; t < T; t++)
      for (let i = 0; i < 64; i++) {
        const a = Math.fround(pos[t]! * inv[i]!);
        const e = Math.max(Math.abs(out[t * Dh + i]! - Math.cos(a)), Math.abs(out[t * Dh + 64 + i]! - Math.sin(a)));
        if (e > worst) [worst, at] = [e, `position ${pos[t]}, angle ${a}`];
      }
    expect(worst, `worst cos/sin error ${worst.toExponential(2)} at ${at} (SEED=${rng.seed})`).toBeLessThan(4e-7);
  });

  it('invocation counts beyond one grid dimension fold into y', async () => {
    const gpu = foldingGpu(await testGpu());
    const rng = makeRng();
    const [T, H, Dh] = [301, 8, 224]; // rotary 192 of 224 dims
    const inv = ropeInvFreq({ headDim: Dh, theta: 10000, partialRotaryFactor: 192 / 224 });
    const pos = Int32Array.from({ length: T }, (_, t) => 3 * t);
    const x = rng.randn(T * H * Dh);
    const tx = gpu.upload(x, [T, H, Dh]), tPos = gpu.upload(pos, [T], 'i32'), tInv = gpu.upload(inv, [inv.length]);
    const y = poisoned(gpu, [T, H, Dh]);
    expect(gpu.grid(Math.ceil((T * H * (Dh - 96)) / 256))[1]).toBeGreaterThan(1);
    ropeForward(gpu, tx, y, tPos, tInv);
    const ref = ropeRef(x, T, H, Dh, pos, inv);
    expectClose(await gpu.readF32(y), ref, 1e-5, 'y', rng.seed);
    ropeBackward(gpu, y, y, tPos, tInv);
    expectClose(await gpu.readF32(y), x, 1e-5, 'rope then ropeBackward in place', rng.seed);
    gpu.release(tx, tPos, tInv, y);
  });

  it('rotary dim 0 (SmolLM3 NoPE layers): y = x, and the in-place forms leave x as it is', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [T, H, Dh] = [5, 3, 8];
    const x = rng.randn(T * H * Dh);
    const tx = gpu.upload(x, [T, H, Dh]), pos = gpu.upload(Int32Array.from({ length: T }, (_, i) => 3 * i), [T], 'i32');
    const none = gpu.upload(new Float32Array(0), [0]);
    const y = poisoned(gpu, [T, H, Dh]);
    ropeForward(gpu, tx, y, pos, none);
    expect(Array.from(await gpu.readF32(y))).toEqual(Array.from(x));
    ropeForward(gpu, tx, tx, pos, none);
    ropeBackward(gpu, tx, tx, pos, none);
    expect(Array.from(await gpu.readF32(tx))).toEqual(Array.from(x));
    gpu.release(tx, pos, none, y);
  });

  it('reports bad shapes', async () => {
    const gpu = await testGpu();
    const x = gpu.tensor([4, 2, 8]), pos = gpu.tensor([4], 'i32');
    expect(() => ropeForward(gpu, x, x, gpu.tensor([3], 'i32'), gpu.tensor([4]))).toThrow(/one entry per token \(4\)/);
    expect(() => ropeForward(gpu, x, x, pos, gpu.tensor([5]))).toThrow(/rotary dim 10 > head dim 8/);
    expect(() => ropeForward(gpu, x, gpu.tensor([4, 2, 8]), gpu.tensor([4]), gpu.tensor([4]))).toThrow(/positions must be i32/);
  });
});

/** The same device with a small per-dimension workgroup limit, so that grid() folds cheaply. */
function foldingGpu(gpu: Gpu, maxPerDim = 1000): Gpu {
  return new Gpu(gpu.device, { ...gpu.caps, limits: { ...gpu.caps.limits, maxComputeWorkgroupsPerDimension: maxPerDim } });
}
