// Kernel family: matmul, f16 tier (shaders/matmul-f16.wgsl, src/kernels/matmul-f16.ts). Runs on a
// device with shader-f16: the machine's GPU, else Mesa's lavapipe (scripts/lavapipe.sh), where
// pipelines compile slowly: few variants, small shapes.
import { describe, expect, it } from 'vitest';
import { F16_TILE_CASES, GEMM_F16_CASES } from '../src/bench/cases/matmul-f16';
import { GEMM_TILES } from '../src/kernels/gemm-tiles';
import { gemmF16 } from '../src/kernels/matmul-f16';
import { toScaledF16 } from '../src/kernels/f16';
import { linear, linearBackwardInput } from '../src/kernels/matmul';
import type { Gpu } from '../src/gpu/runtime';
import { floatToHalf } from '../src/model/safetensors';
import { expectClose, makeRng } from './helpers/check';
import { poisoned, testGpu } from './helpers/gpu';
import { randomHalf } from './helpers/half';
import { f16Gpu } from './helpers/tier-gpu';
import { refGemm } from './reference/matmul';

const gpu = await f16Gpu();
const skip = typeof gpu === 'string' ? gpu : '';
if (skip) console.warn(`f16 tier GEMM tests skipped: ${skip}`);
// inputs are exact in f16 and sums run in f32: f32 results are as close as the f32 tier's;
// f16 results carry one f16 rounding (2^-11 relative)
const TOL = { f32: 1e-5, f16: 1e-3 };
const layoutName = (tA: boolean, tB: boolean) => `${tA ? 'T' : 'N'}${tB ? 'T' : 'N'}`;

// pipelines compile for many seconds each on lavapipe, more on a busy machine
describe.skipIf(skip !== '')(`matmul f16 tier${skip ? ` (skipped: ${skip})` : ''}`, { timeout: 300_000 }, () => {
  const g = gpu as Gpu;
  const checked = GEMM_F16_CASES.filter((c) => !c.bench);

  for (const [tA, tB] of [[false, true], [false, false], [true, false]] as const)
    it(`gemmF16 ${layoutName(tA, tB)} matches the CPU reference${tB ? ' (odd shapes, f16 out too)' : ''}`, async () => {
      const rng = makeRng();
      for (const { M, N, K, out } of checked.filter((c) => c.transA === tA && c.transB === tB)) {
        const a = randomHalf(rng, M * K), b = randomHalf(rng, K * N);
        const ta = g.upload(a.bits, tA ? [K, M] : [M, K], 'f16'), tb = g.upload(b.bits, tB ? [N, K] : [K, N], 'f16');
        const tc = poisoned(g, [M, N], out);
        gemmF16(g, { a: ta, b: tb, c: tc, M, N, K, transA: tA, transB: tB, alpha: 0.5 });
        const ref = refGemm(a.values, b.values, M, N, K, tA, tB, { alpha: 0.5 });
        expectClose(await g.readF32(tc), ref, TOL[out], `gemmF16 ${layoutName(tA, tB)} ${M}x${N}x${K} -> ${out}`, rng.seed);
        g.release(ta, tb, tc);
      }
    });

  // the default tile runs every case above
  for (const tile of GEMM_TILES.f16.slice(1))
    it(`tile ${tile.name}: the three layouts match the CPU reference (vec4 and element loads)`, async () => {
      const rng = makeRng();
      for (const { M, N, K, transA: tA, transB: tB, out } of F16_TILE_CASES) {
        const a = randomHalf(rng, M * K), b = randomHalf(rng, K * N);
        const ta = g.upload(a.bits, tA ? [K, M] : [M, K], 'f16'), tb = g.upload(b.bits, tB ? [N, K] : [K, N], 'f16');
        const tc = poisoned(g, [M, N], out);
        gemmF16(g, { a: ta, b: tb, c: tc, M, N, K, transA: tA, transB: tB, alpha: 0.5, tile: tile.name });
        expectClose(await g.readF32(tc), refGemm(a.values, b.values, M, N, K, tA, tB, { alpha: 0.5 }), TOL[out],
          `${tile.name} ${layoutName(tA, tB)} ${M}x${N}x${K} -> ${out}`, rng.seed);
        g.release(ta, tb, tc);
      }
    });

  it('accumulates with beta, folds a power-of-two gradient scale back through alpha, honours offsets, leading dims and batches', async () => {
    const rng = makeRng();
    const [B, M, N, K, lda, offA] = [2, 9, 20, 12, 16, 4];
    // f32 out: weight gradients from a dY of ~1e-6 (below f16's normal range), stored scaled by
    // 2^12 and scaled back through alpha; f16 out: activations of ordinary size
    const cases = [
      { out: 'f32' as const, size: 1e-6, scale: 2 ** 12 },
      { out: 'f16' as const, size: 1, scale: 4 },
    ];
    for (const { out, size, scale } of cases) {
      const a = randomHalf(rng, offA + B * M * lda, size * scale);
      const b = randomHalf(rng, B * N * K);
      const c = out === 'f32' ? rng.randn(B * M * N, size) : randomHalf(rng, B * M * N).values;
      const tc = g.upload(out === 'f32' ? c : Uint16Array.from(c, floatToHalf), [B, M, N], out);
      gemmF16(g, {
        a: g.upload(a.bits, [a.bits.length], 'f16'), b: g.upload(b.bits, [B, N, K], 'f16'), c: tc, M, N, K, transB: true,
        lda, offA, batch: B, strideA: M * lda, strideB: N * K, strideC: M * N, alpha: 1 / scale, beta: 1,
      });
      const got = await g.readF32(tc);
      for (let i = 0; i < B; i++) {
        const ref = refGemm(a.values.subarray(offA + i * M * lda), b.values.subarray(i * N * K), M, N, K, false, true,
          { lda, alpha: 1 / scale, beta: 1, c: c.subarray(i * M * N) });
        expectClose(got.subarray(i * M * N, (i + 1) * M * N), ref, TOL[out], `batch ${i} -> ${out}`, rng.seed);
      }
    }
  });

  it('toScaledF16: f16(x·2^e) with max |x|·2^e in [2^14, 2^15), 2^-e left on the GPU; zeros stay unscaled', async () => {
    const rng = makeRng();
    for (const size of [3e-7, 1, 2e5]) {
      const n = 1001; // odd: the last pair is half padding
      const x = rng.randn(n, size);
      const t = toScaledF16(g, g.upload(x, [n]), 'test');
      const [descale] = await g.readF32(t.descale);
      const got = await g.readF32(t.value);
      const max = Math.max(...got.map(Math.abs));
      expect(Number.isInteger(Math.log2(descale!)), `descale ${descale} is a power of two`).toBe(true);
      expect(max, `size ${size}`).toBeGreaterThanOrEqual(2 ** 14);
      expect(max, `size ${size}`).toBeLessThan(2 ** 15);
      expectClose(got.map((v) => v * descale!), x, 1e-3, `toScaledF16 of size ${size}`, rng.seed);
    }
    const zeros = toScaledF16(g, g.upload(new Float32Array(7), [7]), 'test');
    expect([...await g.readF32(zeros.descale)]).toEqual([1]);
    expect([...await g.readF32(zeros.value)]).toEqual(new Array(7).fill(0));
  });

  it('linear and linearBackwardInput with f16 weights (split in parts) run the f16 tier at any operand size', async () => {
    const rng = makeRng();
    const [T, K, parts] = [9, 12, [8, 6]];
    const N = parts[0]! + parts[1]!;
    const w = parts.map((n) => randomHalf(rng, n * K));
    const W = Float32Array.from(w.flatMap((p) => [...p.values]));
    const weight = parts.map((n, i) => g.upload(w[i]!.bits, [n, K], 'f16'));
    // activations of ordinary size and large ones; gradients far below f16's normal range (6e-5)
    for (const size of [1, 3e4, 1e-7]) {
      const x = rng.randn(T * K, size), dy = rng.randn(T * N, size);
      const y = poisoned(g, [T, N]), dx = poisoned(g, [T, K]);
      linear(g, g.upload(x, [T, K]), weight, y);
      linearBackwardInput(g, g.upload(dy, [T, N]), weight, dx);
      // operands rounded to f16 once (2^-11 relative), sums in f32
      expectClose(await g.readF32(y), refGemm(x, W, T, N, K, false, true), 2e-3, `y = x Wᵀ, size ${size}`, rng.seed);
      expectClose(await g.readF32(dx), refGemm(dy, W, T, K, N, false, false), 2e-3, `dx = dY W, size ${size}`, rng.seed);
    }
  });

  it('refuses f32 operands with a clear message', async () => {
    const x = g.tensor([4, 8]), w = g.tensor([6, 8], 'f16'), y = g.tensor([4, 6]);
    expect(() => gemmF16(g, { a: x, b: w, c: y, M: 4, N: 6, K: 8, transB: true })).toThrow(/A and B must be f16, not f32 and f16/);
  });
});

it('every f16 tile fits WebGPU\'s default limits (16 x 16 threads, 16 KiB of workgroup memory)', () => {
  for (const { name, constants: { BM, BN, BK } } of GEMM_TILES.f16) {
    expect(BM! % 64 === 0 && BN! % 64 === 0 && BK! % 4 === 0, name).toBe(true);
    expect((BM! + BN!) * BK! * 4, name).toBeLessThanOrEqual(16384);
  }
});

it('gemmF16 on a device without shader-f16 says which tier to use', async () => {
  const sw = await testGpu();
  if (sw.caps.f16) return; // a real GPU: nothing to refuse
  const t = sw.tensor([4, 4], 'f16');
  expect(() => gemmF16(sw, { a: t, b: t, c: sw.tensor([4, 4]), M: 4, N: 4, K: 4 })).toThrow(/no shader-f16; use gemm\(\)/);
});
