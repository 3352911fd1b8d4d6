// The images of a generation prompt (Qwen2-VL): each image's processed pixels fill one run of
// <|image_pad|> tokens, in order. Generation prefills such a prompt in chunks that never cut a run
// (the vision tower embeds whole images), and reuses a cached prefix only up to the first image
// that is not the one cached at that place.

import type { ImageGrid } from './vision';

export interface PromptImage {
  /** The processor's pixel values, [t * h * w, C * T * P * P]. */
  pixels: Float32Array;
  grid: ImageGrid;
}

export interface TokenRun {
  start: number;
  length: number;
}

/** The runs of `imageTokenId` in the prompt, checked against the images' token counts (t*h*w / merge²). */
export function imageRuns(prompt: readonly number[], images: readonly PromptImage[], imageTokenId: number, mergeSize: number): TokenRun[] {
  const runs: TokenRun[] = [];
  prompt.forEach((id, i) => {
    if (id !== imageTokenId) return;
    const last = runs[runs.length - 1];
    if (last && last.start + last.length === i) last.length++;
    else runs.push({ start: i, length: 1 });
  });
  if (runs.length !== images.length) throw new Error(`the prompt has ${runs.length} image token run(s) for ${images.length} image(s)`);
  runs.forEach((r, k) => {
    const [t, h, w] = images[k]!.grid;
    const want = (t * h * w) / (mergeSize * mergeSize);
    if (r.length !== want) throw new Error(`image ${k + 1} (grid ${t}x${h}x${w}) needs ${want} image tokens; the prompt has ${r.length} there`);
  });
  return runs;
}

export function sameImage(a: PromptImage, b: PromptImage): boolean {
  if (a === b) return true;
  if (a.grid.some((d, i) => d !== b.grid[i]) || a.pixels.length !== b.pixels.length) return false;
  for (let i = 0; i < a.pixels.length; i++) if (a.pixels[i] !== b.pixels[i]) return false;
  return true;
}

/**
 * How much of a cached prefix of `keep` tokens the prompt can reuse: not past the start of the
 * first image that differs from the one cached in its place, nor into the middle of a run.
 */
export function reusablePrefix(keep: number, runs: readonly TokenRun[], images: readonly PromptImage[], cachedImages: readonly PromptImage[]): number {
  for (const [k, r] of runs.entries()) {
    if (r.start >= keep) break;
    const cached = cachedImages[k];
    if (!cached || !sameImage(images[k]!, cached) || r.start + r.length > keep) return r.start;
  }
  return keep;
}

/** Chunk ends for prefilling tokens [from, to): about `chunk` tokens each, extended to the end of a run they would cut. */
export function chunkEnds(from: number, to: number, chunk: number, runs: readonly TokenRun[]): number[] {
  const ends: number[] = [];
  for (let at = from; at < to; ) {
    let end = Math.min(to, at + chunk);
    const cut = runs.find((r) => r.start < end && r.start + r.length > end);
    if (cut) end = cut.start + cut.length;
    ends.push(end);
    at = end;
  }
  return ends;
}

/**
 * A rendered prompt with each single image token (what a chat template writes per image) expanded
 * to its image's token count, as the processor does before the model sees the prompt.
 */
export function expandImagePads(rendered: readonly number[], images: readonly PromptImage[], imageTokenId: number, mergeSize: number): number[] {
  const found = rendered.filter((id) => id === imageTokenId).length;
  if (found !== images.length) {
    throw new Error(`the chat template wrote ${found} image token(s) for ${images.length} image(s)${found < images.length ? ' (does it render image content parts?)' : ''}`);
  }
  let k = 0;
  return rendered.flatMap((id) => {
    if (id !== imageTokenId) return [id];
    const [t, h, w] = images[k++]!.grid;
    return Array<number>((t * h * w) / (mergeSize * mergeSize)).fill(id);
  });
}
