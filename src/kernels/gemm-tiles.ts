// Tile shapes of the three GEMM tiers, and the one chosen for each product on a device. Each tier
// lists a few candidate tiles (its shader's variant constants), every one within WebGPU's default
// limits (256 invocations, 16 KiB of workgroup memory) except where the tier's own shape needs more
// (subgroup matrices: checked against the device); the first is the default. The launchers look up
// the tile for their (tier, layout, shape class) here: the default until the tuner
// (gemm-tuner.ts) has timed the candidates on this device. While the tuner records, the launchers
// also note the shapes they ran (the model's real products, at first use).

import type { Gpu } from '../gpu/runtime';
import type { DType } from '../gpu/tensor';
import type { SubgroupMatrixTier } from './subgroup-matrix';

export type GemmTier = 'f32' | 'f16' | 'subgroup';

/** A candidate: its name (stable: caches store it) and the shader's variant constants. */
export interface GemmTile {
  name: string;
  constants: Readonly<Record<string, number>>;
}

/**
 * f32 tier (shaders/matmul.wgsl): BM x BN outputs per workgroup, K in steps of BK, each thread
 * owning TM x TN of them, so (BN/TN) x (BM/TM) threads and (BM + BN)·BK·4 bytes of workgroup memory.
 */
const f32Tile = (BM: number, BN: number, BK: number, TM: number, TN: number): GemmTile =>
  ({ name: `${BM}x${BN}x${BK}/${TM}x${TN}`, constants: { BM, BN, BK, TM, TN } });

/** f16 tier (shaders/matmul-f16.wgsl): 16 x 16 threads, each owning (BM/64) x (BN/64) blocks of 4 x 4. */
const f16Tile = (BM: number, BN: number, BK: number): GemmTile => ({ name: `${BM}x${BN}x${BK}`, constants: { BM, BN, BK } });

/**
 * Subgroup-matrix tier (shaders/matmul-subgroup.wgsl): SGM x SGN subgroups per workgroup, each
 * holding TM x TN result matrices of the device's shape.
 */
const sgTile = (SGM: number, SGN: number, TM: number, TN: number): GemmTile =>
  ({ name: `${SGM}x${SGN}sg/${TM}x${TN}`, constants: { SGM, SGN, TM, TN } });

export const GEMM_TILES: Readonly<Record<GemmTier, readonly GemmTile[]>> = {
  f32: [f32Tile(64, 64, 16, 4, 4), f32Tile(128, 64, 16, 8, 4), f32Tile(64, 128, 16, 4, 8), f32Tile(32, 64, 32, 2, 4), f32Tile(128, 128, 8, 8, 8)],
  f16: [f16Tile(64, 64, 16), f16Tile(128, 64, 16), f16Tile(64, 128, 16), f16Tile(128, 128, 8)],
  subgroup: [sgTile(2, 2, 4, 4), sgTile(2, 2, 2, 4), sgTile(2, 2, 4, 2), sgTile(2, 2, 2, 2)],
};

export const defaultTile = (tier: GemmTier): GemmTile => GEMM_TILES[tier][0]!;

/** The candidate of `tier` named `name`, or an error listing the names. */
export function tileNamed(tier: GemmTier, name: string): GemmTile {
  const t = GEMM_TILES[tier].find((c) => c.name === name);
  if (!t) throw new Error(`gemm tile "${name}" is not a ${tier} tile (${GEMM_TILES[tier].map((c) => c.name).join(', ')})`);
  return t;
}

/** Products of one class share a tile: layout and each size rounded up to a power of two. */
export function shapeClass(tier: GemmTier, layout: string, M: number, N: number, K: number): string {
  const p2 = (x: number) => 2 ** Math.ceil(Math.log2(Math.max(1, x)));
  return `${tier}:${layout}:${p2(M)}x${p2(N)}x${p2(K)}`;
}

/** A product a launcher ran, with what the tuner needs to run it again on fresh tensors. */
export interface GemmShape {
  tier: GemmTier;
  layout: string;
  M: number;
  N: number;
  K: number;
  a: DType;
  b: DType;
  c: DType;
  /** The subgroup-matrix tier's device shape and spelling. */
  matrices?: SubgroupMatrixTier;
}

interface TuneState {
  /** Shape class -> tile name. */
  choices: Map<string, string>;
  /** Shapes run since recording began (one per class), or null when not recording. */
  recorded: Map<string, GemmShape> | null;
}

const states = new WeakMap<Gpu, TuneState>();

export function tuneState(gpu: Gpu): TuneState {
  let s = states.get(gpu);
  if (!s) {
    s = { choices: new Map(), recorded: null };
    states.set(gpu, s);
  }
  return s;
}

/**
 * The tile a launcher uses: `forced` (a candidate's name: the tuner, tests), else this device's
 * choice for the product's class, else the tier's default. Notes the shape while recording.
 */
export function gemmTile(gpu: Gpu, shape: GemmShape, forced?: string): GemmTile {
  if (forced !== undefined) return tileNamed(shape.tier, forced);
  const s = states.get(gpu);
  if (!s) return defaultTile(shape.tier);
  const cls = shapeClass(shape.tier, shape.layout, shape.M, shape.N, shape.K);
  if (s.recorded && !s.recorded.has(cls)) s.recorded.set(cls, shape);
  const name = s.choices.get(cls);
  return name ? tileNamed(shape.tier, name) : defaultTile(shape.tier);
}

/** The tile a product of this class runs with on this device now (reports; records nothing). */
export function chosenTile(gpu: Gpu, tier: GemmTier, layout: string, M: number, N: number, K: number): GemmTile {
  const name = states.get(gpu)?.choices.get(shapeClass(tier, layout, M, N, K));
  return name ? tileNamed(tier, name) : defaultTile(tier);
}
