// Records with images for Qwen2-VL (src/data/vision-data.ts): LLaMA-Factory's qwen2_vl template
// (template.py: Qwen's ChatML "copied from qwen template" with default_system "You are a helpful
// assistant." and the qwen2_vl mm_plugin), the placeholder expansion to each image's token count,
// the pixel values kept per example, labels as the template masks them, and the errors: a missing
// or oversized image, placeholders that do not match, a cutoff_len that would cut an image, packing.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildDataset, DataError, getTemplate, memoryFileAccess, type DataConfig } from '../src/data/index.ts';
import { decodeImage } from '../src/data/image/decode.ts';
import { processQwen2VLImage, qwen2vlGrid, qwen2vlImageConfig, LLAMAFACTORY_PIXEL_LIMITS } from '../src/data/image/qwen2vl.ts';
import type { LmExample } from '../src/data/processor.ts';
import { makeRng } from './helpers/check.ts';
import { encodePng } from './helpers/png-encode.ts';
import { FIXTURES, LF_DATA, tokenizerFor } from './fixtures/data/helpers.ts';

type Piece = string | { bos: true } | { eos: true } | { token: string };
interface Pair { prompt: Piece[]; response: Piece[] }
const LF = JSON.parse(readFileSync(join(FIXTURES, '..', 'templates', 'llamafactory-renderings.json'), 'utf8')) as {
  conversation: { system: string; messages: { role: string; content: string }[] };
  templates: Record<string, { multiturn: Pair[]; multiturn_default_system: Pair[] }>;
};

const tok = tokenizerFor('qwen3');
const PAD = tok.requireTokenId('<|image_pad|>');
const START = tok.requireTokenId('<|vision_start|>');
const END = tok.requireTokenId('<|vision_end|>');
const CFG = qwen2vlImageConfig({});

function png(width: number, height: number, seed: number): Uint8Array {
  const rng = makeRng(seed);
  return encodePng({ width, height, colorType: 2, depth: 8, samples: Array.from({ length: width * height * 3 }, () => Math.floor(rng.next() * 256)) });
}

/** A PNG whose header claims width x height (the decoder refuses it before reading pixels). */
function hugePng(width: number, height: number): Uint8Array {
  const p = png(2, 2, 1);
  const view = new DataView(p.buffer, p.byteOffset);
  view.setUint32(16, width);
  view.setUint32(20, height);
  return p;
}

const SHAREGPT = { formatting: 'sharegpt', columns: { messages: 'messages', images: 'images' }, tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant' } };
const chat = (user: string, images: string[], answer = 'A picture.') => ({ messages: [{ role: 'user', content: user }, { role: 'assistant', content: answer }], images });

function files(records: unknown[], images: Record<string, Uint8Array>) {
  return memoryFileAccess({
    'data/dataset_info.json': JSON.stringify({ pics: { file_name: 'pics.json', ...SHAREGPT } }),
    'data/pics.json': JSON.stringify(records),
    ...Object.fromEntries(Object.entries(images).map(([k, v]) => [`data/${k}`, v])),
  });
}

const base: DataConfig = { dataset: 'pics', template: 'qwen2_vl', shuffle: false };

async function build(records: unknown[], images: Record<string, Uint8Array>, config: Partial<DataConfig> = {}) {
  return buildDataset({ ...base, ...config }, { tokenizer: tok, imageProcessor: CFG, ...files(records, images) });
}

async function buildError(records: unknown[], images: Record<string, Uint8Array>, config: Partial<DataConfig> = {}, imageProcessor = CFG): Promise<string> {
  try {
    await buildDataset({ ...base, ...config }, { tokenizer: tok, imageProcessor, ...files(records, images) });
  } catch (e) {
    expect(e).toBeInstanceOf(DataError);
    return (e as Error).message;
  }
  throw new Error('expected a DataError');
}

describe("LLaMA-Factory's qwen2_vl template", () => {
  const ids = (pieces: Piece[], eos: number) => pieces.flatMap((p) => (typeof p === 'string' ? tok.encode(p) : 'eos' in p ? [eos] : 'bos' in p ? [tok.bosId!] : [tok.requireTokenId(p.token)]));
  const conv = { system: LF.conversation.system, messages: LF.conversation.messages.map((m) => ({ role: m.role as 'user' | 'assistant', content: m.content })) };

  it("renders as qwen's ChatML (LLaMA-Factory copies it), with its own default system", () => {
    const t = getTemplate('qwen2_vl', tok);
    expect(t.eosId).toBe(tok.requireTokenId('<|im_end|>'));
    expect(t.stopIds).toContain(tok.requireTokenId('<|im_end|>'));
    const turns = t.encodeConversation(conv).turns;
    LF.templates.qwen.multiturn.forEach((p, i) => {
      expect(turns[i].prompt).toEqual(ids(p.prompt, t.eosId));
      expect(turns[i].response).toEqual(ids(p.response, t.eosId));
    });
    // without a system prompt: "You are a helpful assistant." where qwen has "You are Qwen, ..."
    const own = (p: Piece[]) => p.map((x) => (typeof x === 'string' ? x.replace('You are Qwen, created by Alibaba Cloud. You are a helpful assistant.', 'You are a helpful assistant.') : x));
    const plain = t.encodeConversation({ messages: conv.messages }).turns;
    expect(tok.decode(plain[0].prompt)).toContain('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n');
    LF.templates.qwen.multiturn_default_system.forEach((p, i) => expect(plain[i].prompt).toEqual(ids(own(p.prompt), t.eosId)));
  });
});

describe('datasets with images for Qwen2-VL', () => {
  it('each <image> becomes <|vision_start|> + <|image_pad|> x t*h*w/4 + <|vision_end|>; pixels and grids kept per example; image tokens unlearned', async () => {
    const images = { 'a.png': png(40, 30, 1), 'b.png': png(3, 2, 2), 'c.png': png(64, 20, 3) };
    const data = await build([chat('<image>What is it?', ['a.png']), chat('Compare <image> with <image>.', ['b.png', 'c.png'], 'Both are noise.'), chat('No picture here.', [])], images);
    const rows = data.train as LmExample[];
    expect(rows).toHaveLength(3);
    const decoded = await Promise.all(Object.values(images).map(decodeImage));
    const want = decoded.map((img) => processQwen2VLImage(img, CFG, LLAMAFACTORY_PIXEL_LIMITS));
    expect(want.map((w) => w.grid)).toEqual(decoded.map((img) => qwen2vlGrid(img.width, img.height, CFG, LLAMAFACTORY_PIXEL_LIMITS)));
    const per = [[want[0]], [want[1], want[2]], []];
    for (const [i, r] of rows.entries()) {
      const grids = per[i].map((w) => w.grid);
      const tokens = grids.map(([t, h, w]) => (t * h * w) / 4);
      // the runs in order, each whole and between its start and end tokens
      const runs: number[] = [];
      r.input_ids.forEach((id, k) => {
        if (id === START) {
          let n = 0;
          while (r.input_ids[k + 1 + n] === PAD) n++;
          expect(r.input_ids[k + 1 + n]).toBe(END);
          runs.push(n);
        }
      });
      expect(runs).toEqual(tokens);
      expect(r.input_ids.filter((id) => id === PAD).length).toBe(tokens.reduce((a, b) => a + b, 0));
      r.input_ids.forEach((id, k) => {
        if (id === PAD || id === START || id === END) expect(r.labels[k]).toBe(-100);
      });
      expect(r.labels.some((l) => l !== -100)).toBe(true);
      if (!grids.length) {
        expect(r.images).toBeUndefined();
        continue;
      }
      expect(r.images!.grids).toEqual(grids);
      const pixels = new Float32Array(per[i].reduce((n, w) => n + w.pixelValues.length, 0));
      let at = 0;
      for (const w of per[i]) (pixels.set(w.pixelValues, at), (at += w.pixelValues.length));
      // processed again on demand (at batch time), the same values each time
      expect(await r.images!.load()).toEqual(pixels);
      expect(await r.images!.load()).toEqual(pixels);
    }
    // the text around the image is the template's
    expect(tok.decode(rows[0].input_ids.filter((id) => id !== PAD))).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|vision_end|>What is it?<|im_end|>\n<|im_start|>assistant\nA picture.<|im_end|>\n',
    );
  });

  it("LLaMA-Factory's mllm_demo (unchanged) builds: images in earlier turns too, every run whole", async () => {
    const jpeg = new Uint8Array(readFileSync(join(FIXTURES, '..', 'images', 'jpeg', 'baseline-420.jpg')));
    const access = memoryFileAccess({
      'lf/dataset_info.json': readFileSync(join(LF_DATA, 'dataset_info.json'), 'utf8'),
      'lf/mllm_demo.json': readFileSync(join(LF_DATA, 'mllm_demo.json'), 'utf8'),
      'lf/mllm_demo_data/1.jpg': jpeg,
      'lf/mllm_demo_data/2.jpg': png(50, 40, 8),
      'lf/mllm_demo_data/3.jpg': png(30, 60, 9),
    });
    const data = await buildDataset({ dataset: 'mllm_demo', dataset_dir: 'lf', template: 'qwen2_vl', shuffle: false }, { tokenizer: tok, imageProcessor: CFG, ...access });
    const rows = data.train as LmExample[];
    expect(rows.map((r) => r.images!.grids.length)).toEqual([2, 1, 1, 2, 1, 1]);
    for (const r of rows) {
      const want = r.images!.grids.reduce((n, [t, h, w]) => n + (t * h * w) / 4, 0);
      expect(r.input_ids.filter((id) => id === PAD)).toHaveLength(want);
      expect(r.input_ids.filter((id) => id === START)).toHaveLength(r.images!.grids.length);
    }
  });

  it('image_max_pixels / image_min_pixels set the grid (and so the token count)', async () => {
    const small = await build([chat('<image>Hi', ['a.png'])], { 'a.png': png(200, 100, 4) }, { image_max_pixels: 56 * 56 });
    const big = await build([chat('<image>Hi', ['a.png'])], { 'a.png': png(200, 100, 4) });
    const grid = (d: typeof small) => (d.train[0] as LmExample).images!.grids[0];
    expect(grid(small)).toEqual(qwen2vlGrid(200, 100, CFG, { ...LLAMAFACTORY_PIXEL_LIMITS, maxPixels: 56 * 56 }));
    expect(grid(big)).toEqual([1, 8, 14]);
    expect(grid(small)[1] * grid(small)[2]).toBeLessThan(grid(big)[1] * grid(big)[2]);
  });

  it('cutoff_len that would cut into an image is an error naming the record and the image sizes', async () => {
    const msg = await buildError([chat('Hi', []), chat('Look: <image> what is it?', ['a.png'])], { 'a.png': png(200, 100, 5) }, { cutoff_len: 40 });
    expect(msg).toMatch(/^data\/pics.json, line 1, record 1: cutoff_len 40 cuts into this record's image tokens \(\d+ of 28 kept; data\/a.png: 28 tokens\): raise cutoff_len or lower image_max_pixels/);
  });

  it('a missing image, an image over the pixel limit and a placeholder count that does not match are errors naming the file and the record', async () => {
    const missing = await buildError([chat('<image>Hi', ['a.png']), chat('<image>Hi', ['gone.png'])], { 'a.png': png(4, 4, 6) });
    expect(missing).toMatch(/^data\/pics.json, line 1, record 1, field "images\[0\]": image file not found: "gone.png"/);
    const huge = await buildError([chat('<image>Hi', ['huge.png'])], { 'huge.png': hugePng(20000, 20000) });
    expect(huge).toMatch(/record 0, field "images\[0\]": image "data\/huge.png" cannot be read: image is 20000x20000 = 400000000 pixels, over the/);
    const count = await buildError([chat('<image><image>Hi', ['a.png'])], { 'a.png': png(4, 4, 6) });
    expect(count).toMatch(/record 0, field "images": 2 <image> placeholders in the messages but 1 image in "images"/);
    const literal = await buildError([chat('<image>Hi <|image_pad|>', ['a.png'])], { 'a.png': png(4, 4, 6) });
    expect(literal).toMatch(/record 0: the text holds 1 more <\|image_pad\|> tokens than its images give/);
  });

  it('predict_with_generate: the eval prompt keeps its image tokens and its images, the answer is the labels', async () => {
    const a = png(4, 4, 8);
    const built = await build([chat('<image>What is it?', ['a.png'], 'red')], { 'a.png': a }, { dataset: undefined, eval_dataset: 'pics', predict_with_generate: true });
    const [ex] = built.eval as LmExample[];
    const grid = qwen2vlGrid(4, 4, CFG, LLAMAFACTORY_PIXEL_LIMITS);
    expect(ex!.images!.grids).toEqual([grid]);
    expect(ex!.input_ids.filter((id) => id === PAD)).toHaveLength((grid[0] * grid[1] * grid[2]) / 4);
    expect(tok.decode(ex!.input_ids, { skipSpecialTokens: false })).toMatch(/<\|vision_start\|>(<\|image_pad\|>)+<\|vision_end\|>What is it\?<\|im_end\|>\n<\|im_start\|>assistant\n$/);
    expect(tok.decode(ex!.labels, { skipSpecialTokens: false })).toBe('red<|im_end|>\n');
    expect(Array.from(await ex!.images!.load())).toEqual(Array.from(processQwen2VLImage(await decodeImage(a), CFG, LLAMAFACTORY_PIXEL_LIMITS).pixelValues));
  });

  it('refused clearly: packing, other stages, another template, a model without a vision tower', async () => {
    const recs = [chat('<image>Hi', ['a.png'])];
    const imgs = { 'a.png': png(4, 4, 7) };
    expect(await buildError(recs, imgs, { packing: true })).toMatch(/^data\/pics.json, line 1, record 0, field "images": 1 record has images \(the first: data\/a.png\); packing cannot keep each image's tokens/);
    expect(await buildError(recs, imgs, { neat_packing: true })).toMatch(/packing cannot keep/);
    expect(await buildError(recs, imgs, { stage: 'pt' })).toMatch(/images are supported in stage sft only \(not pt\)/);
    expect(await buildError(recs, imgs, { template: 'qwen3' })).toMatch(/training on images needs `template: qwen2_vl` .*not "qwen3"/);
    expect(await buildError(recs, imgs, {}, null as never)).toMatch(/the model has no vision tower/);
  });
});
