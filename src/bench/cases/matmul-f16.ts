// f16-tier matrix product cases (gemmF16: f16 operands, f32 sums), one list for both uses:
// tests/kernels.matmul-f16.test.ts checks the small shapes against the CPU reference on a device
// with shader-f16 (lavapipe without a GPU), the kernel benchmark times the real ones.

import type { Gpu } from '../../gpu/runtime';
import { chosenTile } from '../../kernels/gemm-tiles';
import { gemmF16 } from '../../kernels/matmul-f16';
import { floatToHalf } from '../../model/safetensors';
import { filler, type Scale, type Timed } from './timed';

export interface GemmF16Case {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  /** C's storage. */
  out: 'f32' | 'f16';
  /** A real training shape, timed by the benchmark (too big for the CPU reference). */
  bench?: boolean;
}

// the three products of a linear layer: y = x Wᵀ (NT), dX = dY W (NN), dW = dYᵀ X (TN)
const LAYOUTS: [boolean, boolean][] = [[false, true], [false, false], [true, false]];
// Multiples of 4 (but not of the 64 x 64 x 16 tile) take the vec4 path, in every layout; odd sizes
// the element-wise path, whose loads do not depend on the layout. Each variant is a pipeline, and
// lavapipe (the f16 device without a GPU) takes many seconds to compile one: few variants.
const ALIGNED: [number, number, number][] = [[68, 132, 40], [128, 64, 96]];
const ODD: [number, number, number][] = [[1, 1, 1], [70, 65, 33], [5, 130, 17]];

// Qwen2.5-0.5B at 8 x 512 tokens: weights [N, K] of q/o_proj, gate/up_proj, down_proj
const T = 4096;
const WEIGHTS: [number, number][] = [[896, 896], [4864, 896], [896, 4864]];

export const GEMM_F16_CASES: readonly GemmF16Case[] = [
  ...LAYOUTS.flatMap(([transA, transB]) => ALIGNED.map(([M, N, K]): GemmF16Case => ({ M, N, K, transA, transB, out: 'f32' }))),
  ...ODD.map(([M, N, K]): GemmF16Case => ({ M, N, K, transA: false, transB: true, out: 'f32' })),
  { M: 68, N: 132, K: 40, transA: false, transB: true, out: 'f16' },
  ...WEIGHTS.flatMap(([N, K]): GemmF16Case[] => [
    { M: T, N, K, transA: false, transB: true, out: 'f16', bench: true },
    { M: T, N: K, K: N, transA: false, transB: false, out: 'f16', bench: true },
    { M: N, N: K, K: T, transA: true, transB: false, out: 'f32', bench: true },
  ]),
];

/**
 * Shapes every candidate tile (gemm-tiles.ts) of the tier is checked on: multiples of 4 that fill
 * no candidate's tile (vec4 loads) in each layout, and an odd shape (element loads; x Wᵀ only,
 * those loads do not depend on the layout).
 */
export const F16_TILE_CASES: readonly GemmF16Case[] = [
  ...LAYOUTS.map(([transA, transB]): GemmF16Case => ({ M: 132, N: 136, K: 44, transA, transB, out: 'f32' })),
  { M: 70, N: 65, K: 33, transA: false, transB: true, out: 'f16' },
];

const PRODUCT: Record<string, string> = { NT: 'x·Wᵀ', NN: 'dY·W', TN: 'dYᵀ·X' };

export function gemmF16Timed(gpu: Gpu, c: GemmF16Case, n: Scale): Timed {
  const [M, N, K] = [n(c.M), n(c.N), n(c.K)];
  const half = (count: number) => Uint16Array.from(filler(count), floatToHalf);
  const a = gpu.upload(half(M * K), c.transA ? [K, M] : [M, K], 'f16');
  const b = gpu.upload(half(K * N), c.transB ? [N, K] : [K, N], 'f16');
  const out = gpu.tensor([M, N], c.out);
  const layout = `${c.transA ? 'T' : 'N'}${c.transB ? 'T' : 'N'}`;
  return {
    kernel: `matmul f16 ${PRODUCT[layout] ?? layout} -> ${c.out}`,
    shape: `${M}x${N}x${K}`,
    flops: 2 * M * N * K,
    tile: chosenTile(gpu, 'f16', layout, M, N, K).name,
    run: () => gemmF16(gpu, { a, b, c: out, M, N, K, transA: c.transA, transB: c.transB }),
    release: () => gpu.release(a, b, out),
  };
}
