// Kernel family: matmul, subgroup-matrix tier (shaders/matmul-subgroup.wgsl,
// src/kernels/matmul-subgroup.ts, src/kernels/subgroup-matrix.ts). The kernel needs a GPU with
// subgroup matrices (no CPU driver has them: those tests skip, saying why); the choice of matrix
// configuration and the rewriting to Dawn's older load/store spelling are checked everywhere.
import { describe, expect, it } from 'vitest';
import source from '../shaders/matmul-subgroup.wgsl';
import { SUBGROUP_GEMM_CASES, SUBGROUP_TILE_CASES } from '../src/bench/cases/matmul-subgroup';
import { GEMM_TILES } from '../src/kernels/gemm-tiles';
import type { SubgroupMatrixConfig } from '../src/gpu/capabilities';
import { gemmSubgroupMatrix, subgroupWorkgroupBytes } from '../src/kernels/matmul-subgroup';
import { pickConfig, subgroupMatrixTier, toLegacySyntax, type SubgroupMatrixTier } from '../src/kernels/subgroup-matrix';
import { expectClose, makeRng } from './helpers/check';
import { poisoned, testGpu } from './helpers/gpu';
import { randomHalf } from './helpers/half';
import { refGemm } from './reference/matmul';

const cfg = (componentType: string, resultComponentType: string, M: number, N: number, K: number): SubgroupMatrixConfig =>
  ({ componentType, resultComponentType, M, N, K });

describe('subgroup-matrix tier selection', () => {
  it('picks f16 -> f32 with the most work per multiply, else f32 -> f32, never f16 results', () => {
    const nvidia = [cfg('f16', 'f16', 16, 16, 16), cfg('f16', 'f32', 16, 8, 16), cfg('f16', 'f32', 16, 16, 16), cfg('u8', 'u32', 16, 16, 32)];
    expect(pickConfig(nvidia)).toEqual(cfg('f16', 'f32', 16, 16, 16));
    expect(pickConfig([cfg('f16', 'f32', 8, 16, 16)])).toEqual(cfg('f16', 'f32', 8, 16, 16));
    const apple = [cfg('f16', 'f16', 8, 8, 8), cfg('f32', 'f32', 8, 8, 8)];
    expect(pickConfig(apple)).toEqual(cfg('f32', 'f32', 8, 8, 8));
    expect(pickConfig([cfg('f16', 'f16', 8, 8, 8)])).toBeNull();
    expect(pickConfig([])).toBeNull();
  });

  it("rewrites the template load/store spelling into Dawn's older boolean one", () => {
    expect(toLegacySyntax('let l = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&As, (sg * 4u + i) * 640u, LD);'))
      .toBe('let l = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&As, (sg * 4u + i) * 640u, false, LD);');
    expect(toLegacySyntax('let r = subgroupMatrixLoad<Right, col_major>(&Bs, o, LD);'))
      .toBe('let r = subgroupMatrixLoad<Right>(&Bs, o, true, LD);');
    expect(toLegacySyntax('subgroupMatrixStore<row_major>(&Cs, scratch, acc[i * TN + j], CN);'))
      .toBe('subgroupMatrixStore(&Cs, scratch, acc[i * TN + j], false, CN);');
    expect(toLegacySyntax('subgroupMatrixStore<col_major>(&out, 0u, acc, 16u);')).toBe('subgroupMatrixStore(&out, 0u, acc, true, 16u);');
  });

  it('the GEMM shader has no template-form call left after the rewrite', () => {
    const calls = source.match(/subgroupMatrix(Load|Store)</g) ?? [];
    expect(calls.length).toBeGreaterThanOrEqual(3);
    expect(toLegacySyntax(source)).not.toMatch(/(row|col)_major>/);
  });
});

const gpu = await testGpu();
const found = await subgroupMatrixTier(gpu);
const skip = typeof found === 'string' ? found : '';
if (skip) console.warn(`subgroup-matrix tier GEMM tests skipped: ${skip}`);
// inputs exact in the matrix component type, sums in f32: f32 results as close as f32 sums get
// (looser than a plain f32 loop: tensor cores may round partial sums); f16 results one rounding more
const TOL = { f32: 1e-4, f16: 2e-3 };

describe.skipIf(skip !== '')(`matmul subgroup-matrix tier${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const tier = found as SubgroupMatrixTier;
  const checked = SUBGROUP_GEMM_CASES.filter((c) => !c.bench);
  const layoutName = (tA: boolean, tB: boolean) => `${tA ? 'T' : 'N'}${tB ? 'T' : 'N'}`;

  for (const [tA, tB] of [[false, true], [false, false], [true, false]] as const)
    it(`gemmSubgroupMatrix ${layoutName(tA, tB)} matches the CPU reference (f32 and f16 storage)`, async () => {
      const rng = makeRng();
      for (const { M, N, K, operands, out } of checked.filter((c) => c.transA === tA && c.transB === tB)) {
        const a = randomHalf(rng, M * K), b = randomHalf(rng, K * N);
        const up = (x: { bits: Uint16Array; values: Float32Array }, shape: number[]) =>
          operands === 'f16' ? gpu.upload(x.bits, shape, 'f16') : gpu.upload(x.values, shape);
        const ta = up(a, tA ? [K, M] : [M, K]), tb = up(b, tB ? [N, K] : [K, N]);
        const tc = poisoned(gpu, [M, N], out);
        gemmSubgroupMatrix(gpu, tier, { a: ta, b: tb, c: tc, M, N, K, transA: tA, transB: tB, alpha: 0.5 });
        const ref = refGemm(a.values, b.values, M, N, K, tA, tB, { alpha: 0.5 });
        expectClose(await gpu.readF32(tc), ref, TOL[out], `${layoutName(tA, tB)} ${M}x${N}x${K} ${operands} -> ${out}`, rng.seed);
        gpu.release(ta, tb, tc);
      }
    });

  // the default tile runs every case above; the others where they fit the device's workgroup memory
  for (const tile of GEMM_TILES.subgroup.slice(1))
    it(`tile ${tile.name}: the three layouts match the CPU reference`, async (ctx) => {
      if (subgroupWorkgroupBytes(tier, tile) > gpu.caps.limits.maxComputeWorkgroupStorageSize) ctx.skip(`${tile.name} does not fit ${gpu.caps.adapter}'s workgroup memory`);
      const rng = makeRng();
      for (const { M, N, K, transA: tA, transB: tB } of SUBGROUP_TILE_CASES) {
        const a = randomHalf(rng, M * K), b = randomHalf(rng, K * N);
        const ta = gpu.upload(a.values, tA ? [K, M] : [M, K]), tb = gpu.upload(b.values, tB ? [N, K] : [K, N]);
        const tc = poisoned(gpu, [M, N], 'f32');
        gemmSubgroupMatrix(gpu, tier, { a: ta, b: tb, c: tc, M, N, K, transA: tA, transB: tB, alpha: 0.5, tile: tile.name });
        expectClose(await gpu.readF32(tc), refGemm(a.values, b.values, M, N, K, tA, tB, { alpha: 0.5 }), TOL.f32,
          `${tile.name} ${layoutName(tA, tB)} ${M}x${N}x${K}`, rng.seed);
        gpu.release(ta, tb, tc);
      }
    });

  it('f32 inputs that f16 cannot hold come out within f16 rounding of the exact product', async () => {
    const rng = makeRng();
    const [M, N, K] = [96, 80, 144];
    const a = rng.randn(M * K), b = rng.randn(N * K);
    const tc = poisoned(gpu, [M, N], 'f32');
    gemmSubgroupMatrix(gpu, tier, { a: gpu.upload(a, [M, K]), b: gpu.upload(b, [N, K]), c: tc, M, N, K, transB: true });
    const tol = tier.config.componentType === 'f16' ? 2e-3 : 1e-4;
    expectClose(await gpu.readF32(tc), refGemm(a, b, M, N, K, false, true), tol, `${M}x${N}x${K} from f32 inputs`, rng.seed);
  });

  it('accumulates with beta, scales with alpha, honours offsets, leading dims and batches', async () => {
    const rng = makeRng();
    const [B, M, N, K, lda, offA] = [2, 40, 150, 70, 75, 3];
    const a = randomHalf(rng, offA + B * M * lda), b = randomHalf(rng, B * K * N);
    const c = rng.randn(B * M * N);
    const tc = gpu.upload(c, [B, M, N]);
    gemmSubgroupMatrix(gpu, tier, {
      a: gpu.upload(a.values, [a.values.length]), b: gpu.upload(b.values, [B, K, N]), c: tc, M, N, K,
      lda, offA, batch: B, strideA: M * lda, strideB: K * N, strideC: M * N, alpha: 2 ** -8, beta: 1,
    });
    const got = await gpu.readF32(tc);
    for (let i = 0; i < B; i++) {
      const ref = refGemm(a.values.subarray(offA + i * M * lda), b.values.subarray(i * K * N), M, N, K, false, false,
        { lda, alpha: 2 ** -8, beta: 1, c: c.subarray(i * M * N) });
      expectClose(got.subarray(i * M * N, (i + 1) * M * N), ref, TOL.f32, `batch ${i}`, rng.seed);
    }
  });
});
