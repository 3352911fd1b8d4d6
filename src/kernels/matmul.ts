// Matrix products. gemm() is the general strided, batched form; linear*() are the three layouts a
// linear layer needs in training (the frozen base never needs its weight gradient, but full
// fine-tuning does). Weights may be f32 or f16 (stored as packed pairs: any device, see f16.ts),
// or block-quantized q4 / q8 (QLoRA base weights): linear() and linearBackwardInput() route those
// to the fused dequantize-matmuls of src/kernels/quant.ts, part by part. On a device with
// shader-f16 (the f16 tier), f16 weights multiply an f16 copy of the activations or gradients
// (toScaledF16) in gemmF16, with f32 sums; the decode rows (gemv) keep reading them as pairs.
// A weight gradient sums over all tokens into a small matrix (LoRA's dA, dB): gemm() splits that
// long K (split-K, see gemmSplit).

import source from '../../shaders/matmul.wgsl';
import { f32, type Gpu } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import type { Tensor } from '../gpu/tensor';
import type { GemmArgs } from './gemm-args';
import { toScaledF16, type ScaledF16 } from './f16';
import { gemmF16 } from './matmul-f16';
import { defaultTile, gemmTile, type GemmTile } from './gemm-tiles';
import { isQuantized, qlinearForward, qlinearBackwardInput } from './quant';
import { scratch } from './scratch';

export type { GemmArgs } from './gemm-args';

/**
 * Output tile and reduction step of the default tile (gemm-tiles.ts): split-K decides by them
 * (the same split whichever tile a device chose, so a product sums in the same order).
 */
const TILE = 64;
const BK = 16;
/** Split-K aims at about this many workgroups: enough to fill a big GPU several times over. */
const SPLIT_TARGET_WORKGROUPS = 512;
/** No partial sums fewer than this many k (8 steps of BK): below it the reduction pass costs more than it saves. */
const SPLIT_MIN_CHUNK = 128;

export interface KSplit {
  splits: number;
  /** k per partial, a multiple of BK; the last partial takes what is left. */
  chunk: number;
}

/** The k ranges of `splits` nearly equal partials of K (fewer where chunks round up). */
function kSplit(K: number, splits: number): KSplit {
  if (splits <= 1 || K <= BK) return { splits: 1, chunk: Math.max(K, 1) };
  const chunk = Math.ceil(Math.ceil(K / splits) / BK) * BK;
  return { splits: Math.ceil(K / chunk), chunk };
}

/**
 * How to split the reduction of an M x N product over K: C's 64 x 64 tiles alone start
 * ceil(M/64)·ceil(N/64) workgroups (LoRA's dA [16, 896] over 4096 tokens: 14); split K until there
 * are about SPLIT_TARGET_WORKGROUPS, no chunk under SPLIT_MIN_CHUNK. { splits: 1 } when C has
 * half that many tiles already.
 */
function splitForShape(M: number, N: number, K: number): KSplit {
  const tiles = Math.ceil(M / TILE) * Math.ceil(N / TILE);
  if (2 * tiles >= SPLIT_TARGET_WORKGROUPS) return { splits: 1, chunk: Math.max(K, 1) };
  const wanted = Math.min(Math.ceil(SPLIT_TARGET_WORKGROUPS / tiles), Math.floor(K / SPLIT_MIN_CHUNK));
  return kSplit(K, wanted);
}

/** Workgroups of gemm()'s product pass for these arguments with the default tile (a split adds a reduction pass of ceil(M·N / 256)). */
export function gemmWorkgroups(g: Pick<GemmArgs, 'M' | 'N' | 'K' | 'transA' | 'transB' | 'batch' | 'splits'>): number {
  return Math.ceil(g.M / TILE) * Math.ceil(g.N / TILE) * (g.batch ?? 1) * gemmSplit(g).splits;
}

/** The split gemm() makes for these arguments. */
export function gemmSplit(g: Pick<GemmArgs, 'M' | 'N' | 'K' | 'transA' | 'transB' | 'batch' | 'splits'>): KSplit {
  if (g.splits !== undefined) {
    if (!(Number.isInteger(g.splits) && g.splits >= 1)) throw new Error(`gemm: splits = ${g.splits}, expected an integer >= 1`);
    if (g.splits > 1 && (g.batch ?? 1) !== 1) throw new Error(`gemm: split-K takes one product, not a batch of ${g.batch}`);
    return kSplit(g.K, g.splits);
  }
  return g.transA && !g.transB && (g.batch ?? 1) === 1 ? splitForShape(g.M, g.N, g.K) : { splits: 1, chunk: g.K };
}

export function gemm(gpu: Gpu, g: GemmArgs): void {
  const { M, N, K, transA = false, transB = false } = g;
  if (g.a.dtype !== 'f32' || g.c.dtype !== 'f32') throw new Error('gemm: A and C must be f32');
  if (g.b.dtype !== 'f32' && g.b.dtype !== 'f16') throw new Error(`gemm: B must be f32 or f16, not ${g.b.dtype}`);
  const lda = g.lda ?? (transA ? M : K);
  const ldb = g.ldb ?? (transB ? K : N);
  const ldc = g.ldc ?? N;
  const batch = g.batch ?? 1;
  const layout = `${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`;
  const tile = gemmTile(gpu, { tier: 'f32', layout, M, N, K, a: 'f32', b: g.b.dtype, c: 'f32' }, g.tile);
  const { splits, chunk } = gemmSplit(g);
  const params = [M, N, K, lda, ldb, ldc, g.offA ?? 0, g.offB ?? 0, g.offC ?? 0,
    g.strideA ?? 0, g.strideB ?? 0, g.strideC ?? 0, f32(g.alpha ?? 1), f32(g.beta ?? 0), chunk];
  const { BM, BN } = tile.constants as { BM: number; BN: number };
  const entry = splits === 1 ? 'gemm' : 'gemm_split_k';
  const pipeline = gpu.pipeline(gemmVariantKey(entry, layout, g.b.dtype, tile), () => gemmVariant(entry, transA, transB, g.b.dtype === 'f16', tile));
  if (splits === 1) {
    gpu.dispatch(pipeline, [g.a, g.b, g.c], [Math.ceil(N / BN), Math.ceil(M / BM), batch], params);
    return;
  }
  const partials = scratch(gpu, 'matmul.splitK', splits * M * N);
  gpu.dispatch(pipeline, [g.a, g.b, partials], [Math.ceil(N / BN), Math.ceil(M / BM), splits], params);
  const reduce = gpu.pipeline('gemm_split_reduce', () => gemmVariant('gemm_split_reduce', false, false, false, defaultTile('f32')));
  gpu.dispatch(reduce, [partials, g.c], gpu.grid(Math.ceil((M * N) / 256)), params);
}

/** The pipeline key of a product variant: entry, layout, B's storage and the tile. */
export const gemmVariantKey = (entry: string, layout: string, b: string, tile: GemmTile): string => `${entry}:${layout}:${b}:${tile.name}`;

/** The WGSL of a product variant (also compiled on its own by the tuner, to drop tiles that fail). */
export function gemmVariant(entry: string, transA: boolean, transB: boolean, bF16: boolean, tile: GemmTile) {
  return shaderVariant(source, entry, { TRANS_A: transA, TRANS_B: transB, B_F16: bF16, ...tile.constants });
}

/**
 * A weight [N, K] in row parts, each small enough for one storage binding (browsers often cap a
 * binding at 128 MiB to 2 GiB; an embedding table can be larger).
 */
export type Weight = Tensor | readonly Tensor[];
export const weightParts = (w: Weight): readonly Tensor[] => (Array.isArray(w) ? w : [w as Tensor]);

function rows(x: Tensor): number {
  return x.shape.slice(0, -1).reduce((a, b) => a * b, 1);
}
const cols = (x: Tensor): number => x.shape[x.shape.length - 1]!;

/** The f16 tier's operand for a product with `w`: an f16 copy of `x`, when w is f16 and the device has shader-f16. */
function f16Operand(gpu: Gpu, w: Weight, x: Tensor, key: string): ScaledF16 | null {
  return gpu.caps.f16 && weightParts(w).every((p) => p.dtype === 'f16') ? toScaledF16(gpu, x, key) : null;
}

/** y[T, N] (=|+=) x[T, K] · Wᵀ, W [N, K]. */
export function linear(gpu: Gpu, x: Tensor, w: Weight, y: Tensor, accumulate = false, scale = 1): void {
  const T = rows(x), K = cols(x), N = cols(y);
  const half = T > GEMV_MAX_T ? f16Operand(gpu, w, x, 'linear.x') : null;
  let n0 = 0;
  for (const part of weightParts(w)) {
    const n = part.shape[0]!;
    if (part.shape[1] !== K) throw new Error(`linear: weight has ${part.shape[1]} columns, input has ${K}`);
    if (n0 + n > N) throw new Error(`linear: weight has at least ${n0 + n} rows, output has ${N} columns`);
    if (isQuantized(part)) qlinearForward(gpu, x, part, y, accumulate, scale, { ldc: N, offC: n0 });
    else if (T <= GEMV_MAX_T && T > 0) linearDecode(gpu, x, part, y, { T, n, K, ldc: N, offC: n0, scale, accumulate });
    else if (half) gemmF16(gpu, { a: half.value, b: part, c: y, M: T, N: n, K, transB: true, ldc: N, offC: n0, alpha: scale, beta: accumulate ? 1 : 0 }, half.descale);
    else gemm(gpu, { a: x, b: part, c: y, M: T, N: n, K, transB: true, ldc: N, offC: n0, alpha: scale, beta: accumulate ? 1 : 0 });
    n0 += n;
  }
  if (n0 !== N) throw new Error(`linear: weight has ${n0} rows, output has ${N} columns`);
}

/** Largest T for which linear() uses the decode (gemv) kernel instead of 64 x 64 tiles. */
export const GEMV_MAX_T = 4;

export interface DecodeRows {
  /** Rows of x (tokens), at most GEMV_MAX_T, starting at row `row` (default 0). */
  T: number;
  row?: number;
  /** Rows of the weight part, and its columns (= x's). */
  n: number;
  K: number;
  /** y's row length, and the column the part's outputs start at. */
  ldc: number;
  offC: number;
  scale: number;
  accumulate: boolean;
}

/**
 * y[:, offC .. offC + n) (=|+=) scale · x[row .. row + T) Wᵀ for T <= 4 decode rows, W an f32 or f16
 * [n, K] part: one weight row per 64 threads, all tokens at once (a 64 x 64 tile would leave 60 of
 * its 64 rows idle and start N/64 workgroups).
 */
export function linearDecode(gpu: Gpu, x: Tensor, w: Tensor, y: Tensor, d: DecodeRows): void {
  if (!(d.T >= 1 && d.T <= GEMV_MAX_T)) throw new Error(`linearDecode: ${d.T} rows; the decode kernel takes 1 to ${GEMV_MAX_T}`);
  const pipeline = gpu.pipeline(`linear_forward_decode:${w.dtype}`, () =>
    gemmVariant('linear_forward_decode', false, true, w.dtype === 'f16', defaultTile('f32')));
  gpu.dispatch(pipeline, [x, w, y], gpu.grid(Math.ceil(d.n / 4)),
    [d.T, d.n, d.K, d.K, d.K, d.ldc, (d.row ?? 0) * d.K, 0, d.offC, 0, 0, 0, f32(d.scale), f32(d.accumulate ? 1 : 0), 0]);
}

/** dx[T, K] (=|+=) dy[T, N] · W, W [N, K]. */
export function linearBackwardInput(gpu: Gpu, dy: Tensor, w: Weight, dx: Tensor, accumulate = false, scale = 1): void {
  const T = rows(dy), N = cols(dy), K = cols(dx);
  const half = f16Operand(gpu, w, dy, 'linear.dy');
  let n0 = 0;
  weightParts(w).forEach((part, i) => {
    const n = part.shape[0]!;
    if (part.shape[1] !== K) throw new Error(`linearBackwardInput: weight has ${part.shape[1]} columns, input gradient has ${K}`);
    if (n0 + n > N) throw new Error(`linearBackwardInput: weight has at least ${n0 + n} rows, gradient has ${N} columns`);
    const acc = accumulate || i > 0;
    if (isQuantized(part)) qlinearBackwardInput(gpu, dy, part, dx, acc, scale, { lda: N, offA: n0 });
    else if (half) gemmF16(gpu, { a: half.value, b: part, c: dx, M: T, N: K, K: n, lda: N, offA: n0, alpha: scale, beta: acc ? 1 : 0 }, half.descale);
    else gemm(gpu, { a: dy, b: part, c: dx, M: T, N: K, K: n, lda: N, offA: n0, alpha: scale, beta: acc ? 1 : 0 });
    n0 += n;
  });
  if (n0 !== N) throw new Error(`linearBackwardInput: weight has ${n0} rows, gradient has ${N} columns`);
}

/** dw[N, K] (=|+=) dyᵀ · x, with dy [T, N] and x [T, K]; split over T when dw has few tiles. */
export function linearBackwardWeight(gpu: Gpu, dy: Tensor, x: Tensor, dw: Tensor, accumulate = false, scale = 1): void {
  const T = rows(dy), N = cols(dy), K = cols(x);
  gemm(gpu, { a: dy, b: x, c: dw, M: N, N: K, K: T, transA: true, alpha: scale, beta: accumulate ? 1 : 0 });
}
