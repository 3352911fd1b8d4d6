// Subgroup-matrix tier matrix product cases (gemmSubgroupMatrix), one list for both uses:
// tests/kernels.matmul-subgroup.test.ts checks the small shapes against the CPU reference on a GPU
// with subgroup matrices (no CPU driver has them), the kernel benchmark times the real ones.

import type { Gpu } from '../../gpu/runtime';
import { chosenTile } from '../../kernels/gemm-tiles';
import { gemmSubgroupMatrix } from '../../kernels/matmul-subgroup';
import type { SubgroupMatrixTier } from '../../kernels/subgroup-matrix';
import { floatToHalf } from '../../model/safetensors';
import { filler, type Scale, type Timed } from './timed';

export interface SubgroupGemmCase {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  /** Storage of A and B, and of C. */
  operands: 'f32' | 'f16';
  out: 'f32' | 'f16';
  /** A real training shape, timed by the benchmark (too big for the CPU reference). */
  bench?: boolean;
}

// the three products of a linear layer: y = x Wᵀ (NT), dX = dY W (NN), dW = dYᵀ X (TN)
const LAYOUTS: [boolean, boolean][] = [[false, true], [false, false], [true, false]];
// one element; partial tiles in every direction; several whole 128 x 128 tiles with K past one step
const SHAPES: [number, number, number][] = [[1, 1, 1], [70, 65, 33], [256, 384, 96], [130, 260, 200]];

// Qwen2.5-0.5B at 8 x 512 tokens: weights [N, K] of q/o_proj, gate/up_proj, down_proj
const T = 4096;
const WEIGHTS: [number, number][] = [[896, 896], [4864, 896], [896, 4864]];

export const SUBGROUP_GEMM_CASES: readonly SubgroupGemmCase[] = [
  ...LAYOUTS.flatMap(([transA, transB]) => SHAPES.map(([M, N, K]): SubgroupGemmCase => ({ M, N, K, transA, transB, operands: 'f32', out: 'f32' }))),
  ...LAYOUTS.map(([transA, transB]): SubgroupGemmCase => ({ M: 130, N: 260, K: 200, transA, transB, operands: 'f16', out: 'f16' })),
  ...WEIGHTS.flatMap(([N, K]): SubgroupGemmCase[] => [
    { M: T, N, K, transA: false, transB: true, operands: 'f16', out: 'f16', bench: true },
    { M: T, N: K, K: N, transA: false, transB: false, operands: 'f16', out: 'f16', bench: true },
    { M: N, N: K, K: T, transA: true, transB: false, operands: 'f16', out: 'f32', bench: true },
  ]),
];

/**
 * Shapes every candidate tile (gemm-tiles.ts) of the tier is checked on: a partial tile in each
 * layout, element loads for x Wᵀ and vec4 loads (multiples of 4) for the other two.
 */
export const SUBGROUP_TILE_CASES: readonly SubgroupGemmCase[] = [
  { M: 70, N: 65, K: 33, transA: false, transB: true, operands: 'f32', out: 'f32' },
  { M: 76, N: 68, K: 36, transA: false, transB: false, operands: 'f32', out: 'f32' },
  { M: 76, N: 68, K: 36, transA: true, transB: false, operands: 'f32', out: 'f32' },
];

const PRODUCT: Record<string, string> = { NT: 'x·Wᵀ', NN: 'dY·W', TN: 'dYᵀ·X' };

export function subgroupGemmTimed(gpu: Gpu, tier: SubgroupMatrixTier, c: SubgroupGemmCase, n: Scale): Timed {
  const [M, N, K] = [n(c.M), n(c.N), n(c.K)];
  const upload = (count: number, shape: number[]) => c.operands === 'f16'
    ? gpu.upload(Uint16Array.from(filler(count), floatToHalf), shape, 'f16')
    : gpu.upload(filler(count), shape);
  const a = upload(M * K, c.transA ? [K, M] : [M, K]);
  const b = upload(K * N, c.transB ? [N, K] : [K, N]);
  const out = gpu.tensor([M, N], c.out);
  const layout = `${c.transA ? 'T' : 'N'}${c.transB ? 'T' : 'N'}`;
  const { componentType: ct, M: cm, N: cn, K: ck } = tier.config;
  return {
    kernel: `matmul subgroup-matrix ${ct} ${cm}x${cn}x${ck} ${PRODUCT[layout] ?? layout} ${c.operands} -> ${c.out}`,
    shape: `${M}x${N}x${K}`,
    flops: 2 * M * N * K,
    tile: chosenTile(gpu, 'subgroup', layout, M, N, K).name,
    run: () => gemmSubgroupMatrix(gpu, tier, { a, b, c: out, M, N, K, transA: c.transA, transB: c.transB }),
    release: () => gpu.release(a, b, out),
  };
}
