// The subgroup-matrix tier's matrix product: same arguments and layouts as gemm() in matmul.ts,
// with A, B and C each f32 or f16 (f16 needs shader-f16). Operands are converted to the device's
// matrix component type (f16 on NVIDIA/AMD/Intel: f32 inputs lose precision to 2^-11 there) and
// products are summed in f32. Needs the tier found by subgroupMatrixTier() (subgroup-matrix.ts).

import source from '../../shaders/matmul-subgroup.wgsl';
import { f32, type Gpu } from '../gpu/runtime';
import { shaderVariant, type ShaderSource } from '../gpu/shader';
import type { GemmArgs } from './gemm-args';
import { defaultTile, gemmTile, type GemmTile } from './gemm-tiles';
import { directives, forSyntax, type SubgroupMatrixTier } from './subgroup-matrix';
import { vec4Aligned, vec4Binding } from './vec4-binding';

/** Outputs per workgroup along M and N: SGM (SGN) subgroups x TM (TN) result matrices of the device's shape. */
export function subgroupTile(tier: SubgroupMatrixTier, tile: GemmTile = defaultTile('subgroup')): { BM: number; BN: number } {
  const { SGM, SGN, TM, TN } = tile.constants as Record<'SGM' | 'SGN' | 'TM' | 'TN', number>;
  return { BM: SGM * TM * tier.config.M, BN: SGN * TN * tier.config.N };
}

/** Workgroup memory of the kernel: both staged tiles (32 of K, padded to 40) and one f32 scratch matrix per subgroup. */
export function subgroupWorkgroupBytes(tier: SubgroupMatrixTier, tile: GemmTile = defaultTile('subgroup')): number {
  const { BM, BN } = subgroupTile(tier, tile);
  const component = tier.config.componentType === 'f16' ? 2 : 4;
  return (BM + BN) * 40 * component + tile.constants.SGM! * tile.constants.SGN! * tier.config.M * tier.config.N * 4;
}

export function gemmSubgroupMatrix(gpu: Gpu, tier: SubgroupMatrixTier, g: GemmArgs): void {
  const { M, N, K } = g;
  const { key, build, tile } = subgroupGemmVariant(gpu, tier, g);
  const { BM, BN } = subgroupTile(tier, tile);
  gpu.dispatch(
    gpu.pipeline(key, build),
    [vec4Binding(g.a), vec4Binding(g.b), g.c],
    [Math.ceil(N / BN), Math.ceil(M / BM), g.batch ?? 1],
    [M, N, K, lda(g), ldb(g), g.ldc ?? N, g.offA ?? 0, g.offB ?? 0, g.offC ?? 0,
      g.strideA ?? 0, g.strideB ?? 0, g.strideC ?? 0, f32(g.alpha ?? 1), f32(g.beta ?? 0)],
  );
}

/**
 * The pipeline key and WGSL of the variant these arguments need (checked). Exported for the test
 * that runs the kernel's data movement with the matrix builtins emulated, on devices without them.
 */
export function subgroupGemmVariant(gpu: Gpu, tier: SubgroupMatrixTier, g: GemmArgs): { key: string; build: () => ShaderSource; tile: GemmTile } {
  const { M, N, K, transA = false, transB = false } = g;
  for (const [name, t] of [['A', g.a], ['B', g.b], ['C', g.c]] as const) {
    if (t.dtype !== 'f32' && t.dtype !== 'f16') throw new Error(`gemmSubgroupMatrix: ${name} must be f32 or f16, not ${t.dtype}`);
  }
  const types = { ST: tier.config.componentType, AT: g.a.dtype, BT: g.b.dtype, CT: g.c.dtype };
  const f16 = Object.values(types).includes('f16');
  if (f16 && !gpu.caps.f16) throw new Error(`gemmSubgroupMatrix: f16 needs shader-f16, which ${gpu.caps.adapter} lacks`);
  const { M: CM, N: CN, K: CK } = tier.config;
  const layout = `${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`;
  const tile = gemmTile(gpu, { tier: 'subgroup', layout, M, N, K, a: g.a.dtype, b: g.b.dtype, c: g.c.dtype, matrices: tier }, g.tile);
  const bytes = subgroupWorkgroupBytes(tier, tile), limit = gpu.caps.limits.maxComputeWorkgroupStorageSize;
  if (bytes > limit) throw new Error(`gemmSubgroupMatrix: ${types.ST} ${CM}x${CN}x${CK} tiles of ${tile.name} need ${bytes} bytes of workgroup memory; ${gpu.caps.adapter} has ${limit}`);
  const vec = vec4Aligned(lda(g), ldb(g), g.offA ?? 0, g.offB ?? 0, g.strideA ?? 0, g.strideB ?? 0, transA ? M : K, transB ? K : N);
  return {
    key: `gemm_subgroup_matrix:${layout}${vec ? ':v4' : ''}:${types.AT}${types.BT}${types.CT}:${types.ST}${CM}x${CN}x${CK}:${tile.name}`,
    tile,
    build: () => {
      const v = shaderVariant(source, 'gemm_subgroup_matrix', { TRANS_A: transA, TRANS_B: transB, VEC: vec, CM, CN, CK, SG: tier.subgroupSize, ...tile.constants });
      const aliases = Object.entries(types).map(([name, t]) => `alias ${name} = ${t};`).join('\n');
      return { ...v, code: forSyntax(`${directives(tier, f16)}${aliases}\n${v.code}`, tier.syntax) };
    },
  };
}

const lda = (g: GemmArgs) => g.lda ?? (g.transA ? g.M : g.K);
const ldb = (g: GemmArgs) => g.ldb ?? (g.transB ? g.K : g.N);
