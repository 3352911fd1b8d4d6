// The image pipeline (src/data/image) in a real browser (headless Chromium): the same JPEG and
// PNG bytes decode, resize and patch to the same numbers as in Node, with the browser's own
// DecompressionStream under the PNG decoder. Skipped where there is no Chromium.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeImage } from '../src/data/image/decode.ts';
import { LLAMAFACTORY_PIXEL_LIMITS, processQwen2VLImage, QWEN2VL_DEFAULTS } from '../src/data/image/qwen2vl.ts';
import { hasChromium, openModulePage, type ModulePage } from './helpers/module-page.ts';

const IMAGES = join(import.meta.dirname, 'fixtures', 'images');
const FILES = ['jpeg/progressive-420.jpg', 'jpeg/baseline-422.jpg', 'pillow/rgb.png', 'pillow/grey.png'];

/** What the pipeline gives for one file: the decoded RGB and the patches, as plain arrays. */
async function inNode(bytes: Uint8Array) {
  const img = await decodeImage(bytes);
  const p = processQwen2VLImage(img, QWEN2VL_DEFAULTS, LLAMAFACTORY_PIXEL_LIMITS);
  return { rgb: Array.from(img.data), grid: p.grid, pixels: Array.from(p.pixelValues) };
}

describe.skipIf(!hasChromium)('image pipeline in Chromium', () => {
  let browserPage: ModulePage;

  beforeAll(async () => {
    browserPage = await openModulePage('image', ['src/data/image/decode.ts', 'src/data/image/qwen2vl.ts']);
  }, 120_000);

  afterAll(async () => {
    await browserPage?.close();
  });

  for (const file of FILES) {
    it(`${file}: the same RGB, grid and pixel_values as in Node`, async () => {
      const bytes = new Uint8Array(readFileSync(join(IMAGES, file)));
      const browserSide = await browserPage.page.evaluate(async (b) => {
        const m = (globalThis as any).image;
        const img = await m.decodeImage(Uint8Array.from(b));
        const p = m.processQwen2VLImage(img, m.QWEN2VL_DEFAULTS, m.LLAMAFACTORY_PIXEL_LIMITS);
        return { rgb: Array.from(img.data as Uint8Array), grid: p.grid, pixels: Array.from(p.pixelValues as Float32Array) };
      }, Array.from(bytes));
      const nodeSide = await inNode(bytes);
      expect(browserSide.grid).toEqual(nodeSide.grid);
      expect(browserSide.rgb).toEqual(nodeSide.rgb);
      expect(browserSide.pixels).toEqual(nodeSide.pixels);
    });
  }
});
