// Examples -> padded micro-batches. Rows are padded on the right to a bucketed length so a run
// reuses a handful of GPU workspaces instead of one per distinct length; padding is never
// attended to by real tokens (causal) and never learned (label -100).

import { shiftLabels, type Batch } from '../model/forward';
import { mropeBatchPositions } from '../model/mrope';
import type { VisionSpec } from '../model/spec';

export interface TokenExample {
  input_ids: number[];
  labels: number[];
  /** Packed rows (neat_packing): segment id per token, 1-based; attention stays within a segment. */
  segment_ids?: number[];
  /** Packed rows: position ids restarting per packed sample. */
  position_ids?: number[];
  /** Vision-language rows: the grid of each image in token order, and their pixel values on demand. */
  images?: { grids: [number, number, number][]; load(): Promise<Float32Array> };
}

export interface TrainBatch extends Batch {
  /** Tokens whose label is learned (after the shift). */
  validTokens: number;
  /** Non-padding tokens (for tokens/s). */
  realTokens: number;
}

export function bucketLength(n: number, max: number): number {
  const b = n <= 64 ? Math.max(8, 2 ** Math.ceil(Math.log2(n))) : Math.ceil(n / 64) * 64;
  return Math.min(Math.max(b, n), Math.max(max, n));
}

/**
 * `vision`: the model's vision tower, for rows with images: `pixels` (rowPixels) ride along and
 * positions are M-RoPE's [3, B * S] (transformers' get_rope_index).
 */
export function makeBatch(examples: readonly TokenExample[], padId: number, maxLen: number, vision?: VisionSpec | null, pixels?: readonly (Float32Array | null)[]): TrainBatch {
  const B = examples.length;
  const longest = Math.max(...examples.map((e) => e.input_ids.length));
  const S = bucketLength(longest, maxLen);
  const ids = new Int32Array(B * S).fill(padId);
  const labels = new Int32Array(B * S).fill(-100);
  const positions = new Int32Array(B * S);
  const packed = examples.some((e) => e.segment_ids);
  const segments = packed ? new Int32Array(B * S) : undefined;
  let realTokens = 0;
  examples.forEach((e, b) => {
    if (e.labels.length !== e.input_ids.length) throw new Error(`example ${b}: ${e.input_ids.length} input_ids but ${e.labels.length} labels`);
    ids.set(e.input_ids, b * S);
    labels.set(e.labels, b * S);
    realTokens += e.input_ids.length;
    for (let t = 0; t < S; t++) {
      positions[b * S + t] = e.position_ids?.[t] ?? t;
      if (segments) segments[b * S + t] = t < e.input_ids.length ? (e.segment_ids?.[t] ?? 1) : 0;
    }
  });
  const images = imagesOf(examples, ids, S, vision, pixels);
  const shifted = shiftLabels(labels, B, S);
  if (segments) {
    // never predict across a packed boundary
    for (let i = 0; i + 1 < B * S; i++) if ((i + 1) % S !== 0 && segments[i] !== segments[i + 1]) shifted[i] = -100;
  }
  return {
    B, S, ids, labels: shifted, positions: images?.positions ?? positions,
    ...(segments ? { segments } : {}),
    ...(images ? { images: images.images } : {}),
    validTokens: shifted.reduce((a, l) => a + (l !== -100 ? 1 : 0), 0),
    realTokens,
  };
}

/** Each row's pixel values (null for a row without images), for makeBatch. */
export async function rowPixels(examples: readonly TokenExample[]): Promise<(Float32Array | null)[]> {
  const out: (Float32Array | null)[] = [];
  for (const e of examples) out.push(e.images?.grids.length ? await e.images.load() : null);
  return out;
}

function imagesOf(examples: readonly TokenExample[], ids: Int32Array, S: number, vision?: VisionSpec | null, rows?: readonly (Float32Array | null)[]): { images: NonNullable<Batch['images']>; positions: Int32Array } | null {
  if (!examples.some((e) => e.images?.grids.length)) return null;
  if (!vision) throw new Error('a batch with images needs a vision-language model (this model has no vision tower)');
  if (!rows) throw new Error('a batch with images needs their pixel values (rowPixels)');
  if (examples.some((e) => e.segment_ids)) throw new Error('packed rows cannot carry images');
  const grids = examples.flatMap((e) => e.images?.grids ?? []);
  const pixels = new Float32Array(rows.reduce((n, p) => n + (p?.length ?? 0), 0));
  let at = 0;
  for (const p of rows) {
    if (!p) continue;
    pixels.set(p, at);
    at += p.length;
  }
  const positions = mropeBatchPositions(ids, examples.length, S, examples.map((e) => e.input_ids.length), examples.map((e) => e.images?.grids ?? []), vision);
  return { images: { pixels, grids }, positions };
}

/** Seeded shuffle (xorshift), reproducible across runs and resumable from the seed and epoch. */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let s = (seed * 2654435761 + epoch * 40503 + 1) >>> 0 || 1;
  const next = () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}
