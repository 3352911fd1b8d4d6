// Kernel family: matmul, subgroup-matrix tier, on devices without subgroup matrices: the kernel's
// own WGSL with the matrix builtins emulated per invocation (tests/helpers/
// subgroup-matrix-emulation.ts), so staging, offsets, strides, majorness and the epilogue are
// checked against the CPU reference for non-square device shapes on any adapter with subgroups.
// The real builtins run in kernels.matmul-subgroup.test.ts (GPU only).
import { describe, it } from 'vitest';
import type { SubgroupMatrixConfig } from '../src/gpu/capabilities';
import type { GemmArgs } from '../src/kernels/matmul';
import { gemmSubgroupMatrix, subgroupGemmVariant } from '../src/kernels/matmul-subgroup';
import type { SubgroupMatrixTier } from '../src/kernels/subgroup-matrix';
import { GEMM_TILES } from '../src/kernels/gemm-tiles';
import { SUBGROUP_TILE_CASES } from '../src/bench/cases/matmul-subgroup';
import { expectClose, makeRng } from './helpers/check';
import { poisoned, testGpu } from './helpers/gpu';
import { emulateSubgroupMatrices } from './helpers/subgroup-matrix-emulation';
import { refGemm } from './reference/matmul';

const gpu = await testGpu();
const sgSize = gpu.caps.subgroups ? gpu.caps.subgroupSize?.max : undefined;
const skip = sgSize ? '' : `${gpu.caps.adapter} has no subgroups`;
if (skip) console.warn(`emulated subgroup-matrix GEMM tests skipped: ${skip}`);

// f32 components (devices without subgroup matrices may lack shader-f16 too): a 16x16 config's
// 128 x 128 tiles would not fit 32 KiB of workgroup memory in f32, so the two non-square shapes
// (Intel's 8x16x16 and its mirror) stand in for it; each exercises every index in its own direction
const CONFIGS: SubgroupMatrixConfig[] = [
  { componentType: 'f32', resultComponentType: 'f32', M: 8, N: 16, K: 16 },
  { componentType: 'f32', resultComponentType: 'f32', M: 16, N: 8, K: 16 },
];

/** Run gemmSubgroupMatrix with its pipeline built from the emulated WGSL. */
function emulatedGemm(tier: SubgroupMatrixTier, g: GemmArgs): void {
  const { key, build } = subgroupGemmVariant(gpu, tier, g);
  gpu.pipeline(key, () => {
    const s = build();
    return { ...s, code: emulateSubgroupMatrices(s.code) };
  });
  gemmSubgroupMatrix(gpu, tier, g);
}

function tierOf(config: SubgroupMatrixConfig): SubgroupMatrixTier {
  return { config, syntax: 'template', diagnostic: 'chromium.subgroup_matrix_uniformity', subgroupSize: sgSize! };
}

// the emulated builtins compile for many seconds on SwiftShader, more on a busy machine
describe.skipIf(skip !== '')(`matmul subgroup-matrix tier, builtins emulated${skip ? ` (skipped: ${skip})` : ''}`, { timeout: 300_000 }, () => {
  // multiples of 4 load whole vectors (every layout), other sizes element by element (the loads
  // do not depend on the layout: x Wᵀ only, to keep pipelines few)
  const SHAPES = [
    [false, true, 70, 65, 33], [false, true, 130, 140, 72], [false, false, 130, 140, 72], [true, false, 132, 140, 72],
  ] as const;
  it('8x16x16: the three layouts match the CPU reference over partial and whole tiles', async () => {
    const rng = makeRng();
    const tier = tierOf(CONFIGS[0]!);
    for (const [tA, tB, M, N, K] of SHAPES) {
      const a = rng.randn(M * K), b = rng.randn(K * N);
      const ta = gpu.upload(a, tA ? [K, M] : [M, K]), tb = gpu.upload(b, tB ? [N, K] : [K, N]);
      const tc = poisoned(gpu, [M, N]);
      emulatedGemm(tier, { a: ta, b: tb, c: tc, M, N, K, transA: tA, transB: tB, alpha: 0.5 });
      expectClose(await gpu.readF32(tc), refGemm(a, b, M, N, K, tA, tB, { alpha: 0.5 }), 1e-5,
        `${tA ? 'T' : 'N'}${tB ? 'T' : 'N'} ${M}x${N}x${K}`, rng.seed);
      gpu.release(ta, tb, tc);
    }
  });

  // the other tiles (subgroups per workgroup, result matrices per subgroup): a partial tile per layout
  for (const tile of GEMM_TILES.subgroup.slice(1))
    it(`tile ${tile.name} (8x16x16): the three layouts match the CPU reference`, async () => {
      const rng = makeRng();
      const tier = tierOf(CONFIGS[0]!);
      for (const { transA: tA, transB: tB, M, N, K } of SUBGROUP_TILE_CASES) {
        const a = rng.randn(M * K), b = rng.randn(K * N);
        const ta = gpu.upload(a, tA ? [K, M] : [M, K]), tb = gpu.upload(b, tB ? [N, K] : [K, N]);
        const tc = poisoned(gpu, [M, N]);
        emulatedGemm(tier, { a: ta, b: tb, c: tc, M, N, K, transA: tA, transB: tB, alpha: 0.5, tile: tile.name });
        expectClose(await gpu.readF32(tc), refGemm(a, b, M, N, K, tA, tB, { alpha: 0.5 }), 1e-5,
          `${tile.name} ${tA ? 'T' : 'N'}${tB ? 'T' : 'N'} ${M}x${N}x${K}`, rng.seed);
        gpu.release(ta, tb, tc);
      }
    });

  it('16x8x16 (x Wᵀ): accumulates with beta and honours offsets, leading dims and batches', async () => {
    const rng = makeRng();
    const tier = tierOf(CONFIGS[1]!);
    const [B, M, N, K, lda, offA] = [2, 140, 75, 70, 75, 3];
    const a = rng.randn(offA + B * M * lda), b = rng.randn(B * N * K), c = rng.randn(B * M * N);
    const tc = gpu.upload(c, [B, M, N]);
    emulatedGemm(tier, {
      a: gpu.upload(a, [a.length]), b: gpu.upload(b, [B, N, K]), c: tc, M, N, K, transB: true,
      lda, offA, batch: B, strideA: M * lda, strideB: N * K, strideC: M * N, alpha: 2 ** -8, beta: 1,
    });
    const got = await gpu.readF32(tc);
    for (let i = 0; i < B; i++) {
      const ref = refGemm(a.subarray(offA + i * M * lda), b.subarray(i * N * K), M, N, K, false, true,
        { lda, alpha: 2 ** -8, beta: 1, c: c.subarray(i * M * N) });
      expectClose(got.subarray(i * M * N, (i + 1) * M * N), ref, 1e-5, `batch ${i}`, rng.seed);
    }
  });
});
