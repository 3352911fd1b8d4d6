// Decoding, resizing and Qwen2-VL's resize against Pillow itself (fixtures written by
// tests/fixtures/images/generators/gen_pillow_images.py with Pillow 12.3 / libjpeg-turbo 3.1):
// every byte must match.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../src/data/image/decode.ts';
import { llamafactorySizes, smartResize } from '../src/data/image/qwen2vl.ts';
import { resizeBicubic } from '../src/data/image/resample.ts';
import type { RgbImage } from '../src/data/image/types.ts';

const DIR = join(import.meta.dirname, 'fixtures', 'images', 'pillow');
interface Case {
  name: string;
  file: string;
  width: number;
  height: number;
  resizes: Array<[number, number]>;
  preresized: [number, number];
  qwen2vl: [number, number];
}
const META = JSON.parse(readFileSync(join(DIR, 'cases.json'), 'utf8')) as { image_max_pixels: number; image_min_pixels: number; min_pixels: number; max_pixels: number; cases: Case[] };
const rgb = (file: string) => new Uint8Array(readFileSync(join(DIR, file)));

function differing(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

describe.each(META.cases)('$file (Pillow)', (c) => {
  let decoded: RgbImage;
  it('decodes to the RGB of Image.open().convert("RGB")', async () => {
    decoded = await decodeImage(rgb(c.file));
    expect([decoded.width, decoded.height]).toEqual([c.width, c.height]);
    expect(differing(decoded.data, rgb(`${c.name}.rgb`))).toBe(0);
  });

  it("resizes as Image.resize(size, BICUBIC), to the byte", async () => {
    decoded ??= await decodeImage(rgb(c.file));
    for (const [w, h] of c.resizes) expect(differing(resizeBicubic(decoded, w, h).data, rgb(`${c.name}.${w}x${h}.rgb`)), `${w}x${h}`).toBe(0);
  });

  it("goes through LLaMA-Factory's pre-resize and smart_resize to the same size and pixels", async () => {
    decoded ??= await decodeImage(rgb(c.file));
    const limits = { maxPixels: META.image_max_pixels, minPixels: META.image_min_pixels };
    let cur = decoded;
    for (const [w, h] of llamafactorySizes(cur.width, cur.height, limits)) cur = resizeBicubic(cur, w, h);
    expect([cur.width, cur.height]).toEqual(c.preresized);
    const [h, w] = smartResize(cur.height, cur.width, 28, META.min_pixels, META.max_pixels);
    expect([w, h]).toEqual(c.qwen2vl);
    expect(differing(resizeBicubic(cur, w, h).data, rgb(`${c.name}.qwen2vl.rgb`))).toBe(0);
  });
});
