// Qwen2-VL's image pipeline against transformers' own processor, on the fixture
// tests/fixtures/generators/gen_qwen2vl_processor.py writes on the GPU machine (transformers +
// Pillow + torchvision) into tests/fixtures/images/qwen2vl/. Until that fixture is committed this
// file has nothing to compare and is skipped.
//
// Tolerances: decoding, LLaMA-Factory's pre-resize and the resize to smart_resize's size are
// byte-exact with Pillow (as tests/data.image-pillow.test.ts checks on Pillow's own output), and
// grids and image token counts equal. pixel_values: within 1e-5 of the Pillow backend
// (Qwen2VLImageProcessorPil; the same float32 rescale and normalize); within one 8-bit level
// after normalization (1/255/std: at most 0.0147 with the CLIP std, 0.0078 with Qwen3-VL's 0.5)
// of the torchvision backend, which transformers 5 uses by default and LLaMA-Factory loads
// (use_fast), because torchvision's antialiased bicubic is its own code, not Pillow's fixed point.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../src/data/image/decode.ts';
import { imageTokenCount, llamafactorySizes, processQwen2VLImage, qwen2vlImageConfig, smartResize } from '../src/data/image/qwen2vl.ts';
import { resizeBicubic } from '../src/data/image/resample.ts';
import { openSafetensors, readBytes, readF32, type SafetensorsFile } from '../src/model/safetensors.ts';

const DIR = join(import.meta.dirname, 'fixtures', 'images', 'qwen2vl');
const present = existsSync(join(DIR, 'processor.json'));

interface Entry {
  name: string;
  file: string;
  width: number;
  height: number;
  preresized: [number, number];
  [key: string]: unknown;
}

interface Meta {
  image_max_pixels: number;
  image_min_pixels: number;
  models: Record<string, { preprocessor_config: Record<string, unknown>; processors: Record<string, string> }>;
  images: Entry[];
}

async function fixture(): Promise<{ meta: Meta; st: SafetensorsFile }> {
  const meta = JSON.parse(readFileSync(join(DIR, 'processor.json'), 'utf8'));
  const bytes = new Uint8Array(readFileSync(join(DIR, 'processor.safetensors')));
  const st = await openSafetensors({ name: 'processor.safetensors', size: bytes.length, read: async (o, l) => bytes.slice(o, o + l) });
  return { meta, st };
}

/** How many bytes differ (the lengths must agree). */
function differing(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

describe.skipIf(!present)("transformers' Qwen2-VL image processor (Qwen2-VL and Qwen3-VL settings)", () => {
  it('decoding, pre-resize and resize are byte-exact; grids and token counts equal; pixel_values within the stated tolerance', async () => {
    const { meta, st } = await fixture();
    const limits = { maxPixels: meta.image_max_pixels, minPixels: meta.image_min_pixels };
    for (const e of meta.images) {
      const img = await decodeImage(new Uint8Array(readFileSync(join(DIR, e.file))));
      expect(differing(img.data, await readBytes(st, `${e.name}.rgb`)), `${e.name}: decoded RGB`).toBe(0);
      let cur = img;
      for (const [w, h] of llamafactorySizes(img.width, img.height, limits)) cur = resizeBicubic(cur, w, h);
      expect([cur.width, cur.height], `${e.name}: pre-resize`).toEqual(e.preresized);
      for (const [model, { preprocessor_config, processors }] of Object.entries(meta.models)) {
        const cfg = qwen2vlImageConfig(preprocessor_config);
        const [rh, rw] = smartResize(cur.height, cur.width, cfg.patchSize * cfg.mergeSize, cfg.minPixels, cfg.maxPixels);
        expect(differing(resizeBicubic(cur, rw, rh).data, await readBytes(st, `${e.name}.${model}.resized`)), `${e.name} ${model}: resized RGB`).toBe(0);
        const ours = processQwen2VLImage(img, cfg, limits);
        for (const key of Object.keys(processors)) {
          expect(ours.grid, `${e.name} ${model}: grid (${key})`).toEqual(e[`${model}.grid.${key}`]);
          expect(imageTokenCount(ours.grid, cfg.mergeSize)).toBe(e[`${model}.image_tokens.${key}`]);
          const ref = await readF32(st, `${e.name}.${model}.pixel_values.${key}`);
          expect(ours.pixelValues.length).toBe(ref.length);
          let worst = 0;
          for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(ours.pixelValues[i] - ref[i]));
          expect(worst, `${e.name} ${model}: pixel_values vs ${key}`).toBeLessThanOrEqual(key === 'pil' ? 1e-5 : 1 / 255 / Math.min(...cfg.std) + 1e-5);
        }
      }
    }
  });
});
