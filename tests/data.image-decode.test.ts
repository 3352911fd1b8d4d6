// PNG and JPEG decoding (src/data/image): JPEGs against the RGB libjpeg-turbo decodes them to
// (the library Pillow uses; fixtures from tests/fixtures/images/generators/gen_jpeg.c), PNGs
// written by tests/helpers/png-encode.ts from pixels chosen here, and the refusals.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeImage, imageInfo } from '../src/data/image/decode.ts';
import { encodePng, type PngSpec } from './helpers/png-encode.ts';

const JPEG_DIR = join(import.meta.dirname, 'fixtures', 'images', 'jpeg');
const JPEGS = [
  ['baseline-420', 37, 29],
  ['baseline-422', 30, 17],
  ['baseline-444', 19, 21],
  ['baseline-440', 18, 26],
  ['grey', 23, 14],
  ['progressive-420', 41, 35],
  ['progressive-grey', 26, 19],
  ['restart-420', 40, 24],
  ['progressive-restart-444', 33, 20],
] as const;

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('JPEG', () => {
  for (const [name, w, h] of JPEGS) {
    it(`${name} decodes to libjpeg-turbo's pixels exactly`, async () => {
      const bytes = new Uint8Array(readFileSync(join(JPEG_DIR, `${name}.jpg`)));
      const expected = new Uint8Array(readFileSync(join(JPEG_DIR, `${name}.rgb`)));
      expect(imageInfo(bytes)).toEqual({ format: 'jpeg', width: w, height: h });
      const img = await decodeImage(bytes);
      expect([img.width, img.height]).toEqual([w, h]);
      expect(img.data.length).toBe(expected.length);
      let mismatches = 0;
      for (let i = 0; i < expected.length; i++) if (img.data[i] !== expected[i]) mismatches++;
      expect(mismatches).toBe(0);
    });
  }

  it('a JPEG cut short inside its header is an error, not a picture', async () => {
    const bytes = new Uint8Array(readFileSync(join(JPEG_DIR, 'baseline-420.jpg'))).slice(0, 100);
    await expect(decodeImage(bytes)).rejects.toThrow(/JPEG .*truncated/);
  });

  it('a JPEG whose image data stops early still decodes (libjpeg fills the rest), at its full size', async () => {
    const full = new Uint8Array(readFileSync(join(JPEG_DIR, 'baseline-444.jpg')));
    const sos = full.findIndex((b, i) => b === 0xff && full[i + 1] === 0xda);
    const img = await decodeImage(full.slice(0, sos + 40));
    expect([img.width, img.height]).toEqual([19, 21]);
  });
});

/** The RGB Pillow's convert("RGB") gives for the spec's samples. */
function expectedRgb(s: PngSpec): number[] {
  const ch = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[s.colorType];
  const out: number[] = [];
  const scale = (v: number) => (s.depth === 16 ? v >> 8 : s.depth < 8 ? (v * 255) / (2 ** s.depth - 1) : v);
  for (let p = 0; p < s.width * s.height; p++) {
    const px = s.samples.slice(p * ch, p * ch + ch);
    if (s.colorType === 3) out.push(...s.palette!.slice(px[0] * 3, px[0] * 3 + 3));
    else if (s.colorType === 0 || s.colorType === 4) out.push(scale(px[0]), scale(px[0]), scale(px[0]));
    else out.push(scale(px[0]), scale(px[1]), scale(px[2]));
  }
  return out;
}

function randomSpec(colorType: PngSpec['colorType'], depth: PngSpec['depth'], w: number, h: number, seed: number, interlace = false): PngSpec {
  const rand = seeded(seed);
  const ch = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType];
  const colours = colorType === 3 ? Math.min(2 ** depth, 7) : 2 ** depth;
  const samples = Array.from({ length: w * h * ch }, () => Math.floor(rand() * colours));
  const palette = colorType === 3 ? Array.from({ length: colours * 3 }, () => Math.floor(rand() * 256)) : undefined;
  return { width: w, height: h, colorType, depth, samples, palette, interlace, idatChunks: 3 };
}

describe('PNG', () => {
  const cases: Array<[string, PngSpec['colorType'], PngSpec['depth']]> = [
    ['grey 1-bit', 0, 1],
    ['grey 2-bit', 0, 2],
    ['grey 4-bit', 0, 4],
    ['grey 8-bit', 0, 8],
    ['RGB 8-bit', 2, 8],
    ['RGB 16-bit (high byte kept)', 2, 16],
    ['palette 1-bit', 3, 1],
    ['palette 4-bit', 3, 4],
    ['palette 8-bit', 3, 8],
    ['grey+alpha 8-bit (alpha dropped)', 4, 8],
    ['grey+alpha 16-bit', 4, 16],
    ['RGBA 8-bit (alpha dropped, not composited)', 6, 8],
    ['RGBA 16-bit', 6, 16],
  ];
  cases.forEach(([name, type, depth], i) => {
    for (const interlace of [false, true]) {
      it(`${name}${interlace ? ', Adam7-interlaced' : ''}: every filter type, pixels as Pillow's convert("RGB")`, async () => {
        const spec = randomSpec(type, depth, 13, 11, 100 + i, interlace);
        const bytes = encodePng(spec);
        expect(imageInfo(bytes)).toEqual({ format: 'png', width: 13, height: 11 });
        const img = await decodeImage(bytes);
        expect([img.width, img.height]).toEqual([13, 11]);
        expect(Array.from(img.data)).toEqual(expectedRgb(spec));
      });
    }
  });

  it('a 1x1 image and an image narrower than the Adam7 grid decode', async () => {
    for (const [w, h] of [[1, 1], [3, 2], [1, 9]]) {
      const spec = randomSpec(2, 8, w, h, w * 10 + h, true);
      expect(Array.from((await decodeImage(encodePng(spec))).data)).toEqual(expectedRgb(spec));
    }
  });

  it('16-bit greyscale is refused by name (Pillow clips it rather than scaling)', async () => {
    const bytes = encodePng({ width: 2, height: 2, colorType: 0, depth: 16, samples: [0, 1000, 40000, 65535] });
    await expect(decodeImage(bytes)).rejects.toThrow(/16-bit greyscale PNGs are not supported yet/);
  });

  it('corrupt image data is an error that says so', async () => {
    const bytes = encodePng(randomSpec(2, 8, 8, 8, 7));
    const idat = bytes.findIndex((b, i) => String.fromCharCode(b, bytes[i + 1], bytes[i + 2], bytes[i + 3]) === 'IDAT');
    const broken = bytes.slice();
    broken.fill(0xff, idat + 6, idat + 30);
    await expect(decodeImage(broken)).rejects.toThrow(/PNG image data is (corrupt|truncated)|scanline filter/);
    await expect(decodeImage(bytes.slice(0, 20))).rejects.toThrow(/IHDR/);
  });
});

describe('other formats', () => {
  const riff = (kind: string) => Uint8Array.from([...'RIFF'].map((c) => c.charCodeAt(0)).concat([0, 0, 0, 0], [...kind].map((c) => c.charCodeAt(0)), [0, 0, 0, 0]));
  it('WebP, GIF and BMP are refused by name; unknown bytes and empty files say what they are', async () => {
    await expect(decodeImage(riff('WEBP'))).rejects.toThrow('WebP images are not supported yet (PNG and JPEG are); convert the image to PNG or JPEG');
    expect(() => imageInfo(new TextEncoder().encode('GIF89a......'))).toThrow(/GIF images are not supported yet/);
    expect(() => imageInfo(new TextEncoder().encode('BM..........'))).toThrow(/BMP images are not supported yet/);
    expect(() => imageInfo(new TextEncoder().encode('hello world'))).toThrow('not a PNG or JPEG image (unrecognised file header)');
    expect(() => imageInfo(new Uint8Array(0))).toThrow('the image file is empty');
  });
});

describe('limits and layouts that are refused', () => {
  it("an image over Pillow's decompression-bomb limit is refused from its header, before any pixel is decoded", () => {
    const png = encodePng({ width: 1, height: 1, colorType: 0, depth: 8, samples: [0] });
    const big = new Uint8Array(png);
    const header = new DataView(big.buffer, big.byteOffset);
    header.setUint32(16, 20000);
    header.setUint32(20, 10000);
    expect(() => imageInfo(big)).toThrow('image is 20000x10000 = 200000000 pixels, over the 178956970-pixel limit');
    const jpeg = new Uint8Array(readFileSync(join(JPEG_DIR, 'baseline-444.jpg')));
    const sof = jpeg.findIndex((b, i) => b === 0xff && jpeg[i + 1] === 0xc0);
    const huge = jpeg.slice();
    huge.set([0xff, 0xff, 0xff, 0xff], sof + 5);
    expect(() => imageInfo(huge)).toThrow('image is 65535x65535');
  });

  it('a CMYK JPEG (four components) is refused by name', () => {
    const jpeg = new Uint8Array(readFileSync(join(JPEG_DIR, 'baseline-444.jpg')));
    const sof = jpeg.findIndex((b, i) => b === 0xff && jpeg[i + 1] === 0xc0);
    const cmyk = jpeg.slice();
    cmyk[sof + 9] = 4;
    expect(() => imageInfo(cmyk)).toThrow('CMYK/YCCK JPEGs are not supported yet');
  });
});
