// Qwen2-VL's multimodal position ids (transformers' Qwen2VLModel.get_rope_index) for text + image
// rows: text tokens count up with all three components equal; an image's tokens take (t, h, w) of
// its merged grid, offset by the position after the text before it; the text after an image
// continues from the largest position so far + 1.

import type { ImageGrid } from './vision';
import type { VisionSpec } from './spec';

/**
 * Position ids [3, n] of one row's first n tokens; `grids` are the row's images in order (one per
 * <|vision_start|><|image_pad|> run). Tokens past n (padding) are not looked at.
 */
export function mropePositions(ids: ArrayLike<number>, n: number, grids: readonly ImageGrid[], v: Pick<VisionSpec, 'imageTokenId' | 'visionStartId' | 'mergeSize'>): Int32Array {
  const out = new Int32Array(3 * n);
  let next = 0, image = 0, i = 0;
  while (i < n) {
    const startsImage = ids[i] === v.imageTokenId && i > 0 && ids[i - 1] === v.visionStartId;
    if (!startsImage) {
      for (let c = 0; c < 3; c++) out[c * n + i] = next;
      next++;
      i++;
      continue;
    }
    const grid = grids[image++];
    if (!grid) throw new Error(`M-RoPE: image ${image} at token ${i} has no image grid (${grids.length} given)`);
    const [t, h, w] = [grid[0], grid[1] / v.mergeSize, grid[2] / v.mergeSize];
    if (i + t * h * w > n) throw new Error(`M-RoPE: image ${image} needs ${t * h * w} tokens from token ${i}, past the ${n} of the row`);
    for (let a = 0; a < t; a++)
      for (let b = 0; b < h; b++)
        for (let c = 0; c < w; c++, i++) {
          out[i] = next + a;
          out[n + i] = next + b;
          out[2 * n + i] = next + c;
        }
    next += Math.max(t, h, w);
  }
  if (image !== grids.length) throw new Error(`M-RoPE: ${grids.length} image grids for ${image} images in the row`);
  return out;
}

/**
 * [3, B * S] position ids of a padded batch: each row's from mropePositions over its `lengths[b]`
 * real tokens; padding continues each component by one per token (never attended to by real tokens).
 */
export function mropeBatchPositions(
  ids: Int32Array, B: number, S: number, lengths: readonly number[], rowGrids: readonly (readonly ImageGrid[])[],
  v: Pick<VisionSpec, 'imageTokenId' | 'visionStartId' | 'mergeSize'>,
): Int32Array {
  const T = B * S;
  const out = new Int32Array(3 * T);
  for (let b = 0; b < B; b++) {
    const n = lengths[b]!;
    const row = mropePositions(ids.subarray(b * S, b * S + n), n, rowGrids[b] ?? [], v);
    for (let c = 0; c < 3; c++) {
      let last = -1;
      for (let t = 0; t < n; t++) last = Math.max(last, (out[c * T + b * S + t] = row[c * n + t]!));
      for (let t = n; t < S; t++) out[c * T + b * S + t] = ++last;
    }
  }
  return out;
}

/**
 * transformers' get_rope_index for one prompt: its position ids [3, n] and rope_deltas, the offset
 * of every later text token (generated ones included): position = its index in the sequence + delta.
 */
export function ropeIndex(ids: ArrayLike<number>, grids: readonly ImageGrid[], v: Pick<VisionSpec, 'imageTokenId' | 'visionStartId' | 'mergeSize'>): { positions: Int32Array; delta: number } {
  const n = ids.length;
  const positions = mropePositions(ids, n, grids, v);
  let max = -1;
  for (const p of positions) max = Math.max(max, p);
  return { positions, delta: max + 1 - n };
}
