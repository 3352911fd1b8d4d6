// Matrix product cases, one list for both uses: tests/kernels.matmul.test.ts checks the small odd
// shapes against the CPU reference, the kernel benchmark times the real ones (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { chosenTile } from '../../kernels/gemm-tiles';
import { gemm, gemmSplit, gemmWorkgroups } from '../../kernels/matmul';
import { filler, type Scale, type Timed } from './timed';

export interface GemmCase {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  /** B holds f16 values (packed pairs). */
  f16?: boolean;
  /** Element offset of B. */
  offB?: number;
  /** Split-K partials (1: one pass); absent: gemm's own choice. */
  splits?: number;
  /** A real training shape, timed by the benchmark (too big for the CPU reference). */
  bench?: boolean;
}

/** Around the 64 x 64 tile: one element, one row, sizes that are no multiple of anything. */
const ODD: [number, number, number][] = [[1, 1, 1], [1, 37, 19], [70, 65, 33], [128, 64, 96], [5, 130, 17]];
const LAYOUTS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

// Qwen2.5-0.5B at 8 x 512 tokens: weights [N, K] of q/o_proj, gate/up_proj, down_proj
const T = 4096;
const WEIGHTS: [number, number][] = [[896, 896], [4864, 896], [896, 4864]];
// LoRA's weight gradients at rank 16 over those tokens: dA [r, K] and dB [N, r] of q/o (896 x 896),
// gate/up (4864 x 896) and down (896 x 4864), split-K (gemm's choice) against one pass
const LORA_GRADS: [number, number][] = [[16, 896], [896, 16], [4864, 16], [16, 4864]];

export const GEMM_CASES: readonly GemmCase[] = [
  ...LAYOUTS.flatMap(([transA, transB]) => ODD.map(([M, N, K]) => ({ M, N, K, transA, transB }))),
  { M: 3, N: 7, K: 5, transA: false, transB: true, f16: true, offB: 1 },
  { M: 70, N: 65, K: 33, transA: false, transB: false, f16: true, offB: 0 },
  { M: 5, N: 9, K: 17, transA: false, transB: true, f16: true, offB: 3 },
  { M: 1, N: 1, K: 1, transA: false, transB: false, f16: true, offB: 1 },
  // the three products of a linear layer: y = x Wᵀ, dX = dY W, dW = dYᵀ X
  ...WEIGHTS.flatMap(([N, K]): GemmCase[] => [
    { M: T, N, K, transA: false, transB: true, bench: true },
    { M: T, N: K, K: N, transA: false, transB: false, bench: true },
    { M: N, N: K, K: T, transA: true, transB: false, bench: true },
  ]),
  { M: T, N: 4864, K: 896, transA: false, transB: true, f16: true, bench: true },
  // split-K: the dYᵀ·X layout picks it for a long K (the last chunk shorter), any layout takes it when asked
  { M: 16, N: 70, K: 1000, transA: true, transB: false },
  { M: 70, N: 9, K: 333, transA: true, transB: false },
  { M: 37, N: 65, K: 333, transA: false, transB: false, splits: 5 },
  { M: 9, N: 20, K: 150, transA: false, transB: true, splits: 3 },
  { M: 5, N: 130, K: 271, transA: true, transB: true, splits: 4 },
  { M: 16, N: 70, K: 1000, transA: true, transB: false, splits: 1 },
  ...LORA_GRADS.flatMap(([M, N]): GemmCase[] => [
    { M, N, K: T, transA: true, transB: false, bench: true },
    { M, N, K: T, transA: true, transB: false, splits: 1, bench: true },
  ]),
];

/**
 * Shapes every candidate tile (gemm-tiles.ts) is checked on, in the three layouts of a linear layer:
 * one element, partial tiles of every candidate (no size a multiple of 8 or of any BK), and a
 * split-K product (the dYᵀ·X layout splits it).
 */
export const TILE_CASES: readonly GemmCase[] = [
  ...([[false, true], [false, false], [true, false]] as const).flatMap(([transA, transB]) =>
    ([[1, 1, 1], [70, 65, 37], [130, 140, 45]] as const).map(([M, N, K]) => ({ M, N, K, transA, transB }))),
  { M: 16, N: 70, K: 1000, transA: true, transB: false },
];

/** NN, NT, TN or TT. */
export const gemmLayout = (c: Pick<GemmCase, 'transA' | 'transB'>): string => `${c.transA ? 'T' : 'N'}${c.transB ? 'T' : 'N'}`;

const PRODUCT: Record<string, string> = { NT: 'x·Wᵀ', NN: 'dY·W', TN: 'dYᵀ·X' };

/** For the layout that splits K: how, and the workgroups of the product (and of the partials' sum). */
function splitLabel(g: Parameters<typeof gemmSplit>[0]): string {
  if (!g.transA || g.transB) return '';
  const { splits } = gemmSplit(g);
  if (splits === 1) return ` one pass (${gemmWorkgroups(g)} workgroups)`;
  return ` split-K ${splits} (${gemmWorkgroups(g)} + ${Math.ceil((g.M * g.N) / 256)} workgroups)`;
}

export function gemmTimed(gpu: Gpu, c: GemmCase, n: Scale): Timed {
  const [M, N, K] = [n(c.M), n(c.N), n(c.K)];
  const a = gpu.upload(filler(M * K), c.transA ? [K, M] : [M, K]);
  const bShape = c.transB ? [N, K] : [K, N];
  const b = c.f16 ? gpu.upload(new Uint16Array(N * K).fill(0x3c00), bShape, 'f16') : gpu.upload(filler(K * N), bShape);
  const out = gpu.tensor([M, N]);
  const args = { a, b, c: out, M, N, K, transA: c.transA, transB: c.transB, ...(c.splits ? { splits: c.splits } : {}) };
  return {
    kernel: `matmul ${PRODUCT[gemmLayout(c)] ?? gemmLayout(c)}${c.f16 ? ' f16 W' : ''}${splitLabel(args)}`,
    shape: `${M}x${N}x${K}`,
    flops: 2 * M * N * K,
    tile: chosenTile(gpu, 'f32', gemmLayout(c), M, N, K).name,
    run: () => gemm(gpu, args),
    release: () => gpu.release(a, b, out),
  };
}
