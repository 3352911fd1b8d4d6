// Kernel family: elementwise (shaders/elementwise.wgsl, src/kernels/elementwise.ts)
import { describe, expect, it } from 'vitest';
import { ELEMENTWISE_CASES, type CopyCase, type ElementwiseCase } from '../src/bench/cases/elementwise';
import { add, axpy, copyInto, scale } from '../src/kernels/elementwise';
import { testGpu, poisoned } from './helpers/gpu';
import { expectClose, makeRng } from './helpers/check';

describe('elementwise', () => {
  it('add (in place on either operand), axpy and scale', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const { n } = ELEMENTWISE_CASES.find((c) => c.kind === 'arithmetic' && !c.bench) as ElementwiseCase;
    const a = rng.randn(n), b = rng.randn(n);
    const ta = gpu.upload(a, [10, 100]), tb = gpu.upload(b, [n]), out = poisoned(gpu, [n]);
    add(gpu, ta, tb, out);
    expectClose(await gpu.readF32(out), a.map((v, i) => v + b[i]!), 1e-6, 'add', rng.seed);
    add(gpu, ta, tb, ta); // a += b
    expectClose(await gpu.readF32(ta), a.map((v, i) => v + b[i]!), 1e-6, 'add in place (out = a)', rng.seed);
    add(gpu, ta, tb, tb); // b = (a + b) + b
    expectClose(await gpu.readF32(tb), a.map((v, i) => v + 2 * b[i]!), 1e-6, 'add in place (out = b)', rng.seed);

    const x = rng.randn(n), y = rng.randn(n);
    const tx = gpu.upload(x, [n]), ty = gpu.upload(y, [n]);
    axpy(gpu, tx, ty, -0.75);
    expectClose(await gpu.readF32(ty), y.map((v, i) => v - 0.75 * x[i]!), 1e-6, 'axpy', rng.seed);
    axpy(gpu, tx, tx, 0.5);
    expectClose(await gpu.readF32(tx), x.map((v) => 1.5 * v), 1e-6, 'axpy with x = y', rng.seed);
    scale(gpu, ty, 3, out);
    expectClose(await gpu.readF32(out), y.map((v, i) => 3 * (v - 0.75 * x[i]!)), 1e-6, 'scale', rng.seed);
    scale(gpu, out, 0.5, out);
    expectClose(await gpu.readF32(out), y.map((v, i) => 1.5 * (v - 0.75 * x[i]!)), 1e-6, 'scale in place', rng.seed);
    expect(() => add(gpu, ta, gpu.tensor([n - 1]), out)).toThrow(/differ in size/);
  });

  it('copyInto: strided blocks, accumulation, one shared buffer, and its checks', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const { T, Q, KV } = ELEMENTWISE_CASES.find((c) => c.kind === 'copy' && !c.bench) as CopyCase;
    const W = Q + 2 * KV;
    const qkv = rng.randn(T * W);
    const tqkv = gpu.upload(qkv, [T, W]);
    const k = poisoned(gpu, [T, KV]);
    copyInto(gpu, tqkv, k, { rows: T, cols: KV, srcOffset: Q, srcStride: W });
    const kRef = Float64Array.from({ length: T * KV }, (_, i) => qkv[Math.floor(i / KV) * W + Q + (i % KV)]!);
    expectClose(await gpu.readF32(k), kRef, 0, 'k slice', rng.seed);

    // add a gradient back into the v block of the fused tensor
    const dv = rng.randn(T * KV);
    copyInto(gpu, gpu.upload(dv, [T, KV]), tqkv, { rows: T, cols: KV, dstOffset: Q + KV, dstStride: W, accumulate: true });
    const fusedRef = Float64Array.from(qkv);
    for (let t = 0; t < T; t++) for (let j = 0; j < KV; j++) fusedRef[t * W + Q + KV + j]! += dv[t * KV + j]!;
    expectClose(await gpu.readF32(tqkv), fusedRef, 1e-7, 'accumulated v block', rng.seed);

    // k block -> v block inside the same buffer
    copyInto(gpu, tqkv, tqkv, { rows: T, cols: KV, srcOffset: Q, srcStride: W, dstOffset: Q + KV, dstStride: W });
    for (let t = 0; t < T; t++) for (let j = 0; j < KV; j++) fusedRef[t * W + Q + KV + j] = fusedRef[t * W + Q + j]!;
    expectClose(await gpu.readF32(tqkv), fusedRef, 0, 'same-buffer copy', rng.seed);

    // whole tensor, contiguous
    const whole = poisoned(gpu, [T, W]);
    copyInto(gpu, tqkv, whole);
    expectClose(await gpu.readF32(whole), fusedRef, 0, 'whole copy', rng.seed);

    expect(() => copyInto(gpu, tqkv, k, { rows: T, cols: KV, srcOffset: Q + 2 * KV, srcStride: W })).toThrow(/reads up to element/);
    expect(() => copyInto(gpu, tqkv, tqkv, { rows: 2, cols: 4, srcOffset: 0, dstOffset: 2 })).toThrow(/overlap/);
  });
});
