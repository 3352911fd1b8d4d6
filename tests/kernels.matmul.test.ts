// Kernel family: matmul (shaders/matmul.wgsl, src/kernels/matmul.ts)
import { describe, expect, it } from 'vitest';
import { GEMM_CASES, TILE_CASES, gemmLayout } from '../src/bench/cases/matmul';
import { GEMM_TILES } from '../src/kernels/gemm-tiles';
import { gemm, gemmSplit, gemmWorkgroups, linear, linearBackwardInput, linearBackwardWeight } from '../src/kernels/matmul';
import { halfToFloat } from '../src/gpu/runtime';
import { floatToHalf } from '../src/model/safetensors';
import { testGpu, poisoned } from './helpers/gpu';
import { expectClose, makeRng } from './helpers/check';

/** CPU reference: C = alpha op(A) op(B) + beta C, dense layouts. */
function refGemm(a: Float32Array, b: Float32Array, M: number, N: number, K: number, tA: boolean, tB: boolean, alpha = 1, beta = 0, c?: Float32Array) {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (tA ? a[k * M + m]! : a[m * K + k]!) * (tB ? b[n * K + k]! : b[k * N + n]!);
      out[m * N + n] = alpha * s + (beta ? beta * c![m * N + n]! : 0);
    }
  return out;
}

describe('matmul', () => {
  const checked = GEMM_CASES.filter((c) => !c.bench);
  for (const layout of ['NN', 'NT', 'TN', 'TT'])
    it(`gemm ${layout} matches the CPU reference on odd shapes`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      for (const { M, N, K, transA: tA, transB: tB, splits } of checked.filter((c) => !c.f16 && gemmLayout(c) === layout)) {
        const a = rng.randn(M * K), b = rng.randn(K * N);
        const ta = gpu.upload(a, tA ? [K, M] : [M, K]);
        const tb = gpu.upload(b, tB ? [N, K] : [K, N]);
        const tc = poisoned(gpu, [M, N]);
        const split = gemmSplit({ M, N, K, transA: tA, transB: tB, ...(splits ? { splits } : {}) }).splits;
        gemm(gpu, { a: ta, b: tb, c: tc, M, N, K, transA: tA, transB: tB, alpha: 0.5, ...(splits ? { splits } : {}) });
        expectClose(await gpu.readF32(tc), refGemm(a, b, M, N, K, tA, tB, 0.5), 1e-5, `gemm ${M}x${N}x${K} in ${split} partials`, rng.seed);
        gpu.release(ta, tb, tc);
      }
    });

  for (const tile of GEMM_TILES.f32)
    it(`tile ${tile.name}: the three layouts and split-K match the CPU reference at edge shapes`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      for (const { M, N, K, transA: tA, transB: tB } of TILE_CASES) {
        const a = rng.randn(M * K), b = rng.randn(K * N), c0 = rng.randn(M * N);
        const ta = gpu.upload(a, tA ? [K, M] : [M, K]), tb = gpu.upload(b, tB ? [N, K] : [K, N]);
        const tc = gpu.upload(c0, [M, N]);
        gemm(gpu, { a: ta, b: tb, c: tc, M, N, K, transA: tA, transB: tB, alpha: 0.5, beta: -1, tile: tile.name });
        const split = gemmSplit({ M, N, K, transA: tA, transB: tB }).splits;
        expectClose(await gpu.readF32(tc), refGemm(a, b, M, N, K, tA, tB, 0.5, -1, c0), 1e-5,
          `${tile.name} ${gemmLayout({ transA: tA, transB: tB })} ${M}x${N}x${K} in ${split} partials`, rng.seed);
        gpu.release(ta, tb, tc);
      }
    });

  it('every f32 tile fits WebGPU\'s default limits (256 invocations, 16 KiB of workgroup memory)', () => {
    for (const { name, constants: { BM, BN, BK, TM, TN } } of GEMM_TILES.f32) {
      expect(BM! % TM! === 0 && BN! % TN! === 0, name).toBe(true);
      expect((BM! / TM!) * (BN! / TN!), name).toBeLessThanOrEqual(256);
      expect((BM! + BN!) * BK! * 4, name).toBeLessThanOrEqual(16384);
    }
  });

  it('an f16 B (packed pairs, any device) gives the product with the f16-rounded values, at odd sizes and odd offsets', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    for (const { M, N, K, transB: tB, offB: off = 0 } of checked.filter((c) => c.f16)) {
      const a = rng.randn(M * K), b = rng.randn(off + K * N);
      const bits = Uint16Array.from(b, floatToHalf);
      const rounded = Float32Array.from(bits, halfToFloat).subarray(off);
      const tc = poisoned(gpu, [M, N]);
      gemm(gpu, { a: gpu.upload(a, [M, K]), b: gpu.upload(bits, [off + K * N], 'f16'), c: tc, M, N, K, transB: tB, offB: off });
      expectClose(await gpu.readF32(tc), refGemm(a, rounded, M, N, K, false, tB), 1e-5, `f16 gemm ${M}x${N}x${K}${tB ? ' Bᵀ' : ''} offset ${off}`, rng.seed);
    }
  });

  it('gemm accumulates with beta and honours offsets, leading dims and batches', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [B, M, N, K] = [3, 9, 20, 13];
    const a = rng.randn(B * M * K), b = rng.randn(B * K * N), c = rng.randn(B * M * N);
    const tc = gpu.upload(c, [B, M, N]);
    gemm(gpu, {
      a: gpu.upload(a, [B, M, K]), b: gpu.upload(b, [B, K, N]), c: tc, M, N, K,
      batch: B, strideA: M * K, strideB: K * N, strideC: M * N, beta: 1,
    });
    const out = await gpu.readF32(tc);
    for (let i = 0; i < B; i++) {
      const ref = refGemm(a.subarray(i * M * K), b.subarray(i * K * N), M, N, K, false, false, 1, 1, c.subarray(i * M * N));
      expectClose(out.subarray(i * M * N, (i + 1) * M * N), ref, 1e-5, `batch ${i}`, rng.seed);
    }
  });

  it('split-K: the dYᵀ·X layout splits a long K (last chunk shorter), accumulates with alpha / beta into a strided C', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    // C is a column block of a wider matrix: the reduction honours ldc and offC
    for (const [M, N, K] of [[16, 70, 1000], [45, 3, 700]] as const) {
      const { splits, chunk } = gemmSplit({ M, N, K, transA: true, transB: false });
      expect(splits, `${M}x${N}x${K} splits`).toBeGreaterThan(1);
      expect(K % chunk, `${M}x${N}x${K}: K is no multiple of the chunk`).not.toBe(0);
      const ldc = N + 5, off = 2;
      const a = rng.randn(K * M), b = rng.randn(K * N), c0 = rng.randn(M * ldc);
      const tc = gpu.upload(c0, [M, ldc]);
      gemm(gpu, { a: gpu.upload(a, [K, M]), b: gpu.upload(b, [K, N]), c: tc, M, N, K, transA: true, ldc, offC: off, alpha: -1.5, beta: 1 });
      const out = await gpu.readF32(tc);
      const ref = refGemm(a, b, M, N, K, true, false, -1.5);
      const expected = Float64Array.from(c0);
      for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) expected[m * ldc + off + n] += ref[m * N + n]!;
      expectClose(out, expected, 1e-5, `split-K ${M}x${N}x${K} (${splits} partials of ${chunk}) accumulate`, rng.seed);
    }
  });

  it('split-K gives the same bits on every run', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [M, N, K] = [16, 70, 1000];
    const ta = gpu.upload(rng.randn(K * M), [K, M]), tb = gpu.upload(rng.randn(K * N), [K, N]);
    const runs: Uint32Array[] = [];
    for (let i = 0; i < 2; i++) {
      const tc = poisoned(gpu, [M, N]);
      gemm(gpu, { a: ta, b: tb, c: tc, M, N, K, transA: true });
      runs.push(new Uint32Array((await gpu.readF32(tc)).buffer));
      gpu.release(tc);
    }
    expect(gemmSplit({ M, N, K, transA: true }).splits).toBeGreaterThan(1);
    expect(runs[1]).toEqual(runs[0]);
  });

  it('split-K is chosen for small outputs over many tokens, not where the tiles fill the GPU already', () => {
    const T = 4096;
    for (const [M, N] of [[16, 896], [896, 16], [4864, 16], [16, 4864], [1, 896]]) {
      const { splits, chunk } = gemmSplit({ M, N, K: T, transA: true, transB: false });
      const onePass = gemmWorkgroups({ M, N, K: T, transA: true, splits: 1 });
      expect(splits, `${M}x${N}`).toBeGreaterThan(1);
      expect((splits - 1) * chunk < T && splits * chunk >= T, `${M}x${N}: ${splits} chunks of ${chunk} cover ${T}`).toBe(true);
      expect(gemmWorkgroups({ M, N, K: T, transA: true }), `${M}x${N}`).toBeGreaterThanOrEqual(Math.min(256, 8 * onePass));
    }
    // a full weight gradient has tiles enough; other layouts and batches split only when asked
    expect(gemmSplit({ M: 4864, N: 896, K: T, transA: true }).splits).toBe(1);
    expect(gemmSplit({ M: T, N: 16, K: 896 }).splits).toBe(1);
    expect(gemmSplit({ M: 16, N: 16, K: T, transA: true, batch: 2 }).splits).toBe(1);
    expect(gemmSplit({ M: 16, N: 16, K: 64, transA: true }).splits).toBe(1);
    expect(() => gemmSplit({ M: 16, N: 16, K: T, batch: 2, splits: 4 })).toThrow(/one product, not a batch of 2/);
  });

  it('linear, its input gradient and weight gradient; a weight split in row parts gives the same result', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [T, K, N] = [23, 48, 70];
    const x = rng.randn(T * K), w = rng.randn(N * K), dy = rng.randn(T * N);
    const tx = gpu.upload(x, [T, K]), tw = gpu.upload(w, [N, K]), tdy = gpu.upload(dy, [T, N]);
    const parts = [gpu.upload(w.subarray(0, 30 * K), [30, K]), gpu.upload(w.subarray(30 * K), [N - 30, K])];

    const y = poisoned(gpu, [T, N]), ySplit = poisoned(gpu, [T, N]);
    linear(gpu, tx, tw, y);
    linear(gpu, tx, parts, ySplit);
    const yRef = refGemm(x, w, T, N, K, false, true);
    expectClose(await gpu.readF32(y), yRef, 1e-5, 'y = x W^T', rng.seed);
    expectClose(await gpu.readF32(ySplit), yRef, 1e-5, 'y with split weight', rng.seed);

    const dx = poisoned(gpu, [T, K]), dxSplit = poisoned(gpu, [T, K]);
    linearBackwardInput(gpu, tdy, tw, dx);
    linearBackwardInput(gpu, tdy, parts, dxSplit);
    const dxRef = refGemm(dy, w, T, K, N, false, false);
    expectClose(await gpu.readF32(dx), dxRef, 1e-5, 'dX = dY W', rng.seed);
    expectClose(await gpu.readF32(dxSplit), dxRef, 1e-5, 'dX with split weight', rng.seed);

    const dw = poisoned(gpu, [N, K]);
    linearBackwardWeight(gpu, tdy, tx, dw);
    expectClose(await gpu.readF32(dw), refGemm(dy, x, N, K, T, true, false), 1e-5, 'dW = dY^T X', rng.seed);
  });

  it('decode rows (T <= 4) take the gemv path: f32 and f16 weights, split parts, odd K, scale and accumulate', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    for (const [T, K, N] of [[1, 48, 70], [2, 37, 9], [3, 130, 5], [4, 17, 66]] as const) {
      for (const dtype of ['f32', 'f16'] as const) {
        const what = `decode ${dtype} T=${T} K=${K} N=${N}`;
        const x = rng.randn(T * K), w = rng.randn(N * K), y0 = rng.randn(T * N);
        const bits = Uint16Array.from(w, floatToHalf);
        const wv = dtype === 'f16' ? Float32Array.from(bits, halfToFloat) : w;
        const upload = (from: number, to: number) => dtype === 'f16'
          ? gpu.upload(bits.slice(from * K, to * K), [to - from, K], 'f16')
          : gpu.upload(w.slice(from * K, to * K), [to - from, K]);
        const cut = Math.max(1, N - 3); // a second part of a few rows
        const whole = upload(0, N), parts = [upload(0, cut), upload(cut, N)];
        const tx = gpu.upload(x, [T, K]);
        const y = poisoned(gpu, [T, N]), yAcc = gpu.upload(y0, [T, N]);
        linear(gpu, tx, whole, y, false, 0.5);
        linear(gpu, tx, parts, yAcc, true, -2);
        expectClose(await gpu.readF32(y), refGemm(x, wv, T, N, K, false, true, 0.5), 1e-5, what, rng.seed);
        expectClose(await gpu.readF32(yAcc), refGemm(x, wv, T, N, K, false, true, -2, 1, y0), 1e-5, `${what} accumulate, split`, rng.seed);
        gpu.release(whole, ...parts, tx, y, yAcc);
      }
    }
  });

  it('reports a shape mismatch instead of computing garbage', async () => {
    const gpu = await testGpu();
    const x = gpu.tensor([4, 8]), w = gpu.tensor([6, 7]), y = gpu.tensor([4, 6]);
    expect(() => linear(gpu, x, w, y)).toThrow(/7 columns, input has 8/);
  });
});
