// Generation with images on a tiny random Qwen2-VL (tests/helpers/qwen2vl.ts): the prefill places
// the vision tower's embeddings with M-RoPE positions and decoding continues at index + rope_deltas,
// so decoding token by token with the key/value cache must agree with one full forward over the
// whole sequence (get_rope_index over all of it): greedy tokens equal, and beam search's score (the
// summed log-probabilities of its tokens) equal to the full forward's. Also: a follow-up turn that
// reuses the cached prefix, the same tokens with other pixels (no stale reuse), ropeIndex.
import { describe, expect, it } from 'vitest';
import { dirFiles } from '../src/model/files-node';
import { fullLogits, Workspace } from '../src/model/forward';
import { Generator } from '../src/model/generate';
import { Model } from '../src/model/model';
import { mropeBatchPositions, ropeIndex } from '../src/model/mrope';
import { chunkEnds, expandImagePads, reusablePrefix, type PromptImage } from '../src/model/prompt-images';
import type { ImageGrid } from '../src/model/vision';
import { makeRng, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { qwen2vlConfig, synthesizeQwen2VL, writeQwen2VL } from './helpers/qwen2vl';

const config = qwen2vlConfig();
const V = 256;
const [IMAGE, START, END] = [250, 252, 253];
const FEATURES = 3 * 2 * 2 * 2;

const image = (rng: Rng, grid: ImageGrid): PromptImage => ({ pixels: rng.randn(grid[0] * grid[1] * grid[2] * FEATURES), grid });
const text = (rng: Rng, n: number) => Array.from({ length: n }, () => Math.floor(rng.next() * 240));
const withImage = (rng: Rng, grid: ImageGrid) => [START, ...Array<number>((grid[0] * grid[1] * grid[2]) / 4).fill(IMAGE), END, ...text(rng, 3)];

/** Logits [n, V] of one full forward over the sequence with its images (positions: get_rope_index of all of it). */
async function fullForward(model: Model, ids: number[], images: PromptImage[]): Promise<Float32Array> {
  const gpu = model.gpu;
  const S = ids.length;
  const batch = {
    B: 1, S, ids: Int32Array.from(ids), labels: new Int32Array(S).fill(-100),
    positions: mropeBatchPositions(Int32Array.from(ids), 1, S, [S], [images.map((i) => i.grid)], model.spec.vision!),
    ...(images.length ? { images: { pixels: Float32Array.from(images.flatMap((i) => [...i.pixels])), grids: images.map((i) => i.grid) } } : {}),
  };
  const ws = new Workspace(model, 1, S, false);
  ws.load(batch);
  const out = gpu.tensor([S, V]);
  fullLogits(ws, out);
  const z = await gpu.readF32(out);
  gpu.release(out);
  ws.release();
  return z;
}

const argmax = (z: Float32Array, row: number) => {
  let best = 0;
  for (let i = 1; i < V; i++) if (z[row * V + i]! > z[row * V + best]!) best = i;
  return best;
};
const logSoftmaxAt = (z: Float32Array, row: number, id: number) => {
  let max = -Infinity, sum = 0;
  for (let i = 0; i < V; i++) max = Math.max(max, z[row * V + i]!);
  for (let i = 0; i < V; i++) sum += Math.exp(z[row * V + i]! - max);
  return z[row * V + id]! - max - Math.log(sum);
};

/** Greedy answer from the generator, checked against the full forward over prompt + answer. */
async function checkGreedy(gen: Generator, model: Model, prompt: number[], images: PromptImage[], at: string): Promise<number[]> {
  const N = 6;
  const out: number[] = [];
  for await (const id of gen.generate(prompt, { maxNewTokens: N, temperature: 0, stopIds: [] }, images)) out.push(id);
  expect(out.length).toBe(N);
  const z = await fullForward(model, [...prompt, ...out.slice(0, -1)], images);
  expect(out, `greedy tokens vs the full forward's argmax ${at}`).toEqual(out.map((_, i) => argmax(z, prompt.length - 1 + i)));
  return out;
}

describe('Qwen2-VL generation with images', () => {
  it('KV-cache decoding equals the full forward: greedy, beam score, a follow-up turn, other pixels', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const model = await Model.load(gpu, dirFiles(writeQwen2VL(synthesizeQwen2VL(rng, config), config)));
    // 24 + 6 image tokens: with the 64-token prefill chunks, the second image's run ends past 64
    const images = [image(rng, [1, 8, 12]), image(rng, [1, 4, 6])];
    const prompt = [...text(rng, 5), ...withImage(rng, images[0]!.grid), ...text(rng, 20), ...withImage(rng, images[1]!.grid)];
    const gen = new Generator(model, 256);
    const answer = await checkGreedy(gen, model, prompt, images, at);

    // beam search (one beam: the greedy path) through the beam cache: its score is the mean log-probability of its tokens
    const beam = (await gen.beamSearch(prompt, { maxNewTokens: 4, numBeams: 1, stopIds: [] }, images))!;
    const z = await fullForward(model, [...prompt, ...beam.tokens.slice(0, -1)], images);
    const want = beam.tokens.reduce((s, id, i) => s + logSoftmaxAt(z, prompt.length - 1 + i, id), 0) / beam.tokens.length;
    expect(Math.abs(beam.score - want), `beam score ${beam.score} vs ${want} ${at}`).toBeLessThan(1e-4);

    // a follow-up turn with a third image: the cached prefix (both images) is reused
    const third = image(rng, [1, 2, 2]);
    const follow = [...prompt, ...answer, ...text(rng, 4), ...withImage(rng, third.grid)];
    await checkGreedy(gen, model, follow, [...images, third], at);
    // the same tokens with other pixels in the first image must not reuse the cached keys
    await checkGreedy(gen, model, prompt, [image(rng, images[0]!.grid), images[1]!], at);
    // text only after all that: positions from 0 again, rope_deltas 0
    await checkGreedy(gen, model, text(rng, 7), [], at);

    await expect(gen.generate(prompt, { maxNewTokens: 2 }, images.slice(0, 1)).next()).rejects.toThrow(/2 image token run\(s\) for 1 image/);
    await expect(gen.generate(prompt, { maxNewTokens: 2 }, [images[1]!, images[0]!]).next()).rejects.toThrow(/image 1 \(grid 1x4x6\) needs 6 image tokens; the prompt has 24/);
    gen.release();
    model.release();
  });
});

describe('prompt images and rope_deltas', () => {
  it('ropeIndex gives get_rope_index\'s positions and delta; chunks never cut a run; reuse stops at a changed image', () => {
    const v = { imageTokenId: IMAGE, visionStartId: START, mergeSize: 2 };
    // a b <start> 6 image tokens (grid 1x4x6 -> 2 x 3) <end> c: text after the image continues at 3 + 3 = 6
    const ids = [1, 2, START, ...Array<number>(6).fill(IMAGE), END, 3];
    const { positions, delta } = ropeIndex(ids, [[1, 4, 6]], v);
    expect(Array.from(positions.subarray(0, 11))).toEqual([0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7]);
    expect(delta).toBe(8 - 11);
    expect(ropeIndex([5, 6, 7], [], v).delta).toBe(0);
    const runs = [{ start: 3, length: 6 }, { start: 20, length: 10 }];
    expect(chunkEnds(0, 40, 8, runs)).toEqual([9, 17, 30, 38, 40]);
    expect(chunkEnds(5, 12, 64, runs)).toEqual([12]);
    const a = { pixels: Float32Array.from([1, 2]), grid: [1, 2, 2] as ImageGrid };
    const b = { pixels: Float32Array.from([1, 3]), grid: [1, 2, 2] as ImageGrid };
    expect(reusablePrefix(35, runs, [a, a], [a, { ...a, pixels: Float32Array.from(a.pixels) }])).toBe(35);
    expect(reusablePrefix(35, runs, [a, b], [a, a])).toBe(20);
    expect(reusablePrefix(35, runs, [a, a], [a])).toBe(20);
    expect(reusablePrefix(25, runs, [a, a], [a, a])).toBe(20);
    expect(reusablePrefix(10, runs, [b, a], [a, a])).toBe(3);
    // a template's one image token per image, expanded to each grid's merged count
    const big = { pixels: new Float32Array(0), grid: [1, 4, 6] as ImageGrid };
    expect(expandImagePads([1, IMAGE, 2, IMAGE], [big, a], IMAGE, 2)).toEqual([1, ...Array<number>(6).fill(IMAGE), 2, IMAGE]);
    expect(() => expandImagePads([1, 2], [a], IMAGE, 2)).toThrow(/wrote 0 image token\(s\) for 1 image\(s\) \(does it render image content parts\?\)/);
  });
});
