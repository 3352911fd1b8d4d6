// The image pipeline (src/data/image) in a real browser (headless Chromium): the same JPEG and
// PNG bytes decode, resize and patch to the same numbers as in Node, with the browser's own
// DecompressionStream under the PNG decoder. Skipped where there is no Chromium.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { decodeImage } from '../src/data/image/decode.ts';
import { LLAMAFACTORY_PIXEL_LIMITS, processQwen2VLImage, QWEN2VL_DEFAULTS } from '../src/data/image/qwen2vl.ts';

const CHROMIUM = '/usr/bin/chromium';
const IMAGES = join(import.meta.dirname, 'fixtures', 'images');
const FILES = ['jpeg/progressive-420.jpg', 'jpeg/baseline-422.jpg', 'pillow/rgb.png', 'pillow/grey.png'];

type Page = import('playwright-core').Page;
type Browser = import('playwright-core').Browser;

/** What the pipeline gives for one file: the decoded RGB and the patches, as plain arrays. */
async function inNode(bytes: Uint8Array) {
  const img = await decodeImage(bytes);
  const p = processQwen2VLImage(img, QWEN2VL_DEFAULTS, LLAMAFACTORY_PIXEL_LIMITS);
  return { rgb: Array.from(img.data), grid: p.grid, pixels: Array.from(p.pixelValues) };
}

describe.skipIf(!existsSync(CHROMIUM))('image pipeline in Chromium', () => {
  let dir: string;
  let site: Server;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'crucible-image-page-'));
    await writeFile(join(dir, 'index.html'), '<!doctype html><html><body><script type="module" src="./main.ts"></script></body></html>');
    await writeFile(
      join(dir, 'main.ts'),
      `import * as decode from ${JSON.stringify(resolve('src/data/image/decode.ts'))};\nimport * as qwen from ${JSON.stringify(resolve('src/data/image/qwen2vl.ts'))};\n(globalThis as any).image = { ...decode, ...qwen };\n`,
    );
    const { build } = await import('vite');
    await build({ root: dir, configFile: false, logLevel: 'silent', build: { outDir: join(dir, 'dist'), target: 'es2022' } });
    site = createServer(async (req, res) => {
      const p = join(dir, 'dist', new URL(req.url ?? '/', 'http://x').pathname.replace(/^\/$/, '/index.html'));
      try {
        const body = await readFile(p);
        res.writeHead(200, { 'content-type': extname(p) === '.js' ? 'text/javascript' : 'text/html' });
        res.end(body);
      } catch {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((r) => site.listen(0, '127.0.0.1', () => r()));
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] });
    page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${(site.address() as AddressInfo).port}/`);
    await page.waitForFunction(() => 'image' in globalThis);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((r) => (site ? site.close(() => r()) : r()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const file of FILES) {
    it(`${file}: the same RGB, grid and pixel_values as in Node`, async () => {
      const bytes = new Uint8Array(readFileSync(join(IMAGES, file)));
      const browserSide = await page.evaluate(async (b) => {
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
