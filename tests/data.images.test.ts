// Multimodal records as LLaMA-Factory defines them (src/data/media.ts): LLaMA-Factory's own
// mllm_demo (dataset_info.json and mllm_demo.json unchanged, pictures of our own at its paths),
// media_dir, and the errors for a missing file, a URL, a placeholder count that does not match,
// an unreadable image, and videos/audios.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { buildDataset, DataError, memoryFileAccess, type DataConfig } from '../src/data/index.ts';
import { loadDataset, resolveAttrs } from '../src/data/sources.ts';
import { LF_DATA, tokenizerFor } from './fixtures/data/helpers.ts';
import { encodePng } from './helpers/png-encode.ts';

const JPEG = new Uint8Array(readFileSync(join(import.meta.dirname, 'fixtures', 'images', 'jpeg', 'baseline-420.jpg')));
const PNG = encodePng({ width: 3, height: 2, colorType: 2, depth: 8, samples: Array.from({ length: 18 }, (_, i) => i * 14) });
const WEBP = Uint8Array.from([...'RIFF\0\0\0\0WEBPVP8 '].map((c) => c.charCodeAt(0)));

/** LLaMA-Factory's data folder as it ships (dataset_info.json, mllm_demo.json) plus our pictures at mllm_demo_data/. */
function lfFolder(dir: string, images: Record<string, Uint8Array>): Record<string, Uint8Array | string> {
  return {
    [`${dir}/dataset_info.json`]: readFileSync(join(LF_DATA, 'dataset_info.json'), 'utf8'),
    [`${dir}/mllm_demo.json`]: readFileSync(join(LF_DATA, 'mllm_demo.json'), 'utf8'),
    ...images,
  };
}

const demoImages = (at: string) => ({ [`${at}/mllm_demo_data/1.jpg`]: JPEG, [`${at}/mllm_demo_data/2.jpg`]: PNG, [`${at}/mllm_demo_data/3.jpg`]: JPEG });

async function load(config: DataConfig, files: Record<string, Uint8Array | string>) {
  const access = memoryFileAccess(files);
  const deps = { tokenizer: tokenizerFor('qwen3'), ...access };
  const dir = config.dataset_dir ?? 'data';
  const [{ attr, autodetect }] = await resolveAttrs([String(config.dataset)], config, deps, { readLocal: access.readFile, listLocal: access.listFiles });
  return loadDataset(attr, config, deps, { readLocal: access.readFile, listLocal: access.listFiles }, dir, 42, autodetect);
}

async function loadError(config: DataConfig, files: Record<string, Uint8Array | string>): Promise<string> {
  try {
    await load(config, files);
  } catch (e) {
    expect(e).toBeInstanceOf(DataError);
    return (e as Error).message;
  }
  throw new Error('expected a DataError');
}

describe("LLaMA-Factory's mllm_demo", () => {
  it('loads unchanged: six conversations, each image found under dataset_dir, placeholders kept in the text', async () => {
    const d = await load({ dataset: 'mllm_demo', dataset_dir: 'lf' }, lfFolder('lf', demoImages('lf')));
    expect(d.aligned).toHaveLength(6);
    expect(d.aligned.map((a) => a.images)).toEqual([
      ['lf/mllm_demo_data/1.jpg', 'lf/mllm_demo_data/1.jpg'],
      ['lf/mllm_demo_data/2.jpg'],
      ['lf/mllm_demo_data/3.jpg'],
      ['lf/mllm_demo_data/1.jpg', 'lf/mllm_demo_data/1.jpg'],
      ['lf/mllm_demo_data/2.jpg'],
      ['lf/mllm_demo_data/3.jpg'],
    ]);
    expect(d.aligned[0].prompt.map((m) => m.content)).toEqual(['<image>Who are they?', "They're Kane and Gretzka from Bayern Munich.", 'What are they doing?<image>']);
    expect(d.drops.size).toBe(0);
  });

  it('media_dir moves where images are looked for first; a path not found there is tried as written', async () => {
    const inMedia = await load({ dataset: 'mllm_demo', dataset_dir: 'lf', media_dir: 'pictures' }, lfFolder('lf', demoImages('pictures')));
    expect(inMedia.aligned[1].images).toEqual(['pictures/mllm_demo_data/2.jpg']);
    const asWritten = await load({ dataset: 'mllm_demo', dataset_dir: 'lf' }, lfFolder('lf', { 'mllm_demo_data/1.jpg': JPEG, 'mllm_demo_data/2.jpg': PNG, 'mllm_demo_data/3.jpg': JPEG }));
    expect(asWritten.aligned[1].images).toEqual(['mllm_demo_data/2.jpg']);
  });

  it('a missing image is an error naming the dataset, file, record and both places looked in', async () => {
    const files = lfFolder('lf', demoImages('lf'));
    delete files['lf/mllm_demo_data/2.jpg'];
    const msg = await loadError({ dataset: 'mllm_demo', dataset_dir: 'lf' }, files);
    expect(msg).toContain('lf/mllm_demo.json');
    expect(msg).toContain('record 1');
    expect(msg).toContain('field "images[0]"');
    expect(msg).toContain('image file not found: "mllm_demo_data/2.jpg" (looked for "lf/mllm_demo_data/2.jpg" and "mllm_demo_data/2.jpg"; set media_dir to the folder that holds the images)');
  });

  it('an image that is not PNG or JPEG is an error naming the record and the format', async () => {
    const files = lfFolder('lf', { ...demoImages('lf'), 'lf/mllm_demo_data/3.jpg': WEBP });
    const msg = await loadError({ dataset: 'mllm_demo', dataset_dir: 'lf' }, files);
    expect(msg).toMatch(/record 2, field "images\[0\]": image "lf\/mllm_demo_data\/3.jpg" cannot be read: WebP images are not supported yet/);
  });

  it('buildDataset refuses to train on images without the qwen2_vl template, naming the dataset and the first record', async () => {
    const files = memoryFileAccess(lfFolder('lf', demoImages('lf')));
    await expect(buildDataset({ dataset: 'mllm_demo', dataset_dir: 'lf', template: 'qwen3' }, { tokenizer: tokenizerFor('qwen3'), ...files })).rejects.toThrow(
      /^lf\/mllm_demo.json, line \d+, record 0, field "images": 6 records have images \(the first: lf\/mllm_demo_data\/1.jpg, lf\/mllm_demo_data\/1.jpg\); training on images needs `template: qwen2_vl`/,
    );
  });
});

/** One dataset "pics" in data/ with the given records and dataset_info entry fields. */
function custom(records: unknown[], entry: Record<string, unknown>, extra: Record<string, Uint8Array | string> = {}) {
  return {
    'data/dataset_info.json': JSON.stringify({ pics: { file_name: 'pics.json', ...entry } }),
    'data/pics.json': JSON.stringify(records),
    'data/a.png': PNG,
    'data/b.jpg': JPEG,
    ...extra,
  };
}
const SHAREGPT = { formatting: 'sharegpt', columns: { messages: 'messages', images: 'images' }, tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant' } };
const chat = (user: string, images: unknown) => ({ messages: [{ role: 'user', content: user }, { role: 'assistant', content: 'ok' }], images });

describe('image records', () => {
  it('alpaca rows take one path as a plain string too', async () => {
    const d = await load({ dataset: 'pics' }, custom([{ instruction: '<image>What is it?', output: 'A square.', images: 'a.png' }], { columns: { prompt: 'instruction', response: 'output', images: 'images' } }));
    expect(d.aligned[0].images).toEqual(['data/a.png']);
    expect(d.aligned[0].prompt[0].content).toBe('<image>What is it?');
  });

  it('rows without images in an image dataset are text rows; a placeholder without its image is an error', async () => {
    const ok = await load({ dataset: 'pics' }, custom([chat('Hello', []), chat('<image>Hi', ['b.jpg'])], SHAREGPT));
    expect(ok.aligned.map((a) => a.images)).toEqual([undefined, ['data/b.jpg']]);
    const msg = await loadError({ dataset: 'pics' }, custom([chat('Hello', []), chat('<image>Hi', [])], SHAREGPT));
    expect(msg).toContain('record 1');
    expect(msg).toContain('1 <image> placeholder in the messages but 0 images in "images"');
  });

  it('more images than placeholders is an error with both counts and the record', async () => {
    const msg = await loadError({ dataset: 'pics' }, custom([chat('<image>Hi', ['a.png']), chat('<image>Compare', ['a.png', 'b.jpg'])], SHAREGPT));
    expect(msg).toMatch(/^data\/pics.json, line 1, record 1, field "images": 1 <image> placeholder in the messages but 2 images in "images"/);
  });

  it('a URL is refused offline, naming the record and the list item', async () => {
    const msg = await loadError({ dataset: 'pics' }, custom([chat('<image><image>Hi', ['a.png', 'https://example.com/cat.jpg'])], SHAREGPT));
    expect(msg).toContain('record 0, field "images[1]"');
    expect(msg).toContain('image "https://example.com/cat.jpg" is a URL; Crucible reads images from local files only (offline): download it and give its path');
  });

  it('images given as objects (bytes) are refused by name', async () => {
    const msg = await loadError({ dataset: 'pics' }, custom([chat('<image>Hi', [{ bytes: [1, 2], path: null }])], SHAREGPT));
    expect(msg).toContain('field "images[0]": must be an image path (a string), got object (images given as bytes are not supported yet)');
  });

  it('videos and audios stay "not supported yet"', async () => {
    const withVideo = { ...SHAREGPT, columns: { ...SHAREGPT.columns, videos: 'videos' } };
    const msg = await loadError({ dataset: 'pics' }, custom([{ ...chat('<video>Hi', []), videos: ['clip.mp4'] }], withVideo));
    expect(msg).toContain('field "videos": videos are not supported yet (images are)');
    const withAudio = { ...SHAREGPT, columns: { ...SHAREGPT.columns, audios: 'audios' } };
    expect(await loadError({ dataset: 'pics' }, custom([{ ...chat('<audio>Hi', []), audios: ['a.wav'] }], withAudio))).toContain('audios are not supported yet');
  });

  it('without an images column, "<image>" is ordinary text', async () => {
    const d = await load({ dataset: 'pics' }, custom([chat('<image> is a tag', undefined)], { ...SHAREGPT, columns: { messages: 'messages' } }));
    expect(d.aligned[0].images).toBeUndefined();
  });
});

describe('config keys', () => {
  it('media_dir, image_max_pixels and image_min_pixels are read with their LLaMA-Factory defaults', () => {
    const base = { model_name_or_path: 'm', dataset: 'mllm_demo', output_dir: 'o' };
    const { config } = configFromObject(base);
    expect([config.media_dir, config.image_max_pixels, config.image_min_pixels]).toEqual([null, 768 * 768, 32 * 32]);
    const given = configFromObject({ ...base, media_dir: 'pics', image_max_pixels: 262144, image_min_pixels: 1024 }).config;
    expect([given.media_dir, given.image_max_pixels]).toEqual(['pics', 262144]);
  });
  it('image_max_pixels below image_min_pixels is an error; video keys are still refused', () => {
    const base = { model_name_or_path: 'm', dataset: 'mllm_demo', output_dir: 'o' };
    expect(() => configFromObject({ ...base, image_max_pixels: 100, image_min_pixels: 200 })).toThrow(/image_max_pixels \(100\) cannot be smaller than image_min_pixels \(200\)/);
    expect(() => configFromObject({ ...base, video_maxlen: 64 })).toThrow(/video_maxlen: 64 asks for video and audio inputs, which Crucible does not implement/);
  });
});

describe('data files without a dataset_info.json entry', () => {
  it('an images key is mapped when the columns are guessed, so the images are read and checked, not dropped', async () => {
    const files = { 'data/chat.json': JSON.stringify([chat('<image>What is it?', ['a.png'])]), 'data/a.png': PNG };
    const d = await load({ dataset: 'chat.json' }, files);
    expect(d.attr.columns.images).toBe('images');
    expect(d.aligned[0].images).toEqual(['data/a.png']);
    const msg = await loadError({ dataset: 'chat.json' }, { ...files, 'data/chat.json': JSON.stringify([chat('No placeholder', ['a.png'])]) });
    expect(msg).toContain('0 <image> placeholders in the messages but 1 image in "images"');
  });

  it('a videos key is mapped too, and refused', async () => {
    const files = { 'data/clips.jsonl': JSON.stringify({ instruction: '<video>Describe', output: 'A dog.', videos: ['a.mp4'] }) };
    expect(await loadError({ dataset: 'clips.jsonl' }, files)).toContain('videos are not supported yet');
  });
});
