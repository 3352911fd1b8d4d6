// Qwen2-VL's image processing (src/data/image): Pillow's bicubic resize against an f64 reference
// written from the definition, smart_resize and LLaMA-Factory's pre-resize on hand-worked sizes,
// patch order on a tiny image worked out by hand, normalization, and the <image> expansion.
import { describe, expect, it } from 'vitest';
import { bicubic, coefficients, resizeBicubic } from '../src/data/image/resample.ts';
import {
  expandQwen2VLImages,
  llamafactorySizes,
  LLAMAFACTORY_PIXEL_LIMITS,
  patchify,
  processQwen2VLImage,
  qwen2vlGrid,
  qwen2vlImageConfig,
  QWEN2VL_DEFAULTS,
  roundHalfEven,
  smartResize,
  type Qwen2VLImageConfig,
} from '../src/data/image/qwen2vl.ts';
import type { RgbImage } from '../src/data/image/types.ts';
import { resizeBicubicRef } from './reference/resample.ts';

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** A picture with smooth parts and hard edges, from a seed. */
function picture(w: number, h: number, seed: number): RgbImage {
  const rand = seeded(seed);
  const data = new Uint8Array(w * h * 3);
  const fx = 0.05 + rand() * 0.4;
  const fy = 0.05 + rand() * 0.4;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      data[o] = Math.round(127.5 + 127.5 * Math.sin(x * fx + y * fy));
      data[o + 1] = (x * 7 + y * 3) % 256;
      data[o + 2] = rand() < 0.1 ? Math.floor(rand() * 256) : ((x >> 2) + (y >> 2)) % 2 ? 250 : 5;
    }
  }
  return { width: w, height: h, data };
}

describe("Pillow's bicubic resize", () => {
  it('the kernel is the a = -0.5 cubic: 1 at 0, 0 at whole numbers, 0.5625 at 0.5, -0.0625 at 1.5, nothing past 2', () => {
    expect([bicubic(0), bicubic(1), bicubic(2), bicubic(-1)].map((v) => v + 0)).toEqual([1, 0, 0, 0]);
    expect(bicubic(0.5)).toBeCloseTo(0.5625, 15);
    expect(bicubic(-1.5)).toBeCloseTo(-0.0625, 15);
    expect(bicubic(2.5)).toBe(0);
  });

  it('halving a row: taps worked out by hand (support widened to 4 input pixels each side)', () => {
    const c = coefficients(8, 4);
    expect(c.ksize).toBe(9);
    // output 0 is centred at input 1.0; inputs 0..4 at distances (i + 0.5 - 1) / 2
    expect([c.first[0], c.count[0]]).toEqual([0, 5]);
    const w = [-0.25, 0.25, 0.75, 1.25, 1.75].map((d) => bicubic(d));
    const sum = w.reduce((a, b) => a + b, 0);
    const fixed = w.map((x) => Math.round((x / sum) * 2 ** 22));
    expect(Array.from(c.weights.subarray(0, 5))).toEqual(fixed);
  });

  const sizes: Array<[number, number, number, number]> = [
    [40, 30, 17, 11], // shrink both ways, odd ratio
    [23, 19, 56, 28], // enlarge
    [64, 48, 28, 56], // shrink one way, enlarge the other
    [100, 7, 33, 7], // one axis only
    [31, 29, 31, 84],
    [200, 150, 56, 42], // strong shrink: wide support
  ];
  for (const [w, h, ow, oh] of sizes) {
    it(`${w}x${h} -> ${ow}x${oh}: noise resizes exactly as the f64 reference`, () => {
      const rand = seeded(w * 7 + h);
      const data = new Uint8Array(w * h * 3).map(() => Math.floor(rand() * 256));
      const out = resizeBicubic({ width: w, height: h, data }, ow, oh);
      expect([out.width, out.height]).toEqual([ow, oh]);
      expect(Array.from(out.data)).toEqual(Array.from(resizeBicubicRef(data, w, h, ow, oh)));
    });
    it(`${w}x${h} -> ${ow}x${oh}: a picture with ramps and flat blocks is within one level (exact halves go the way Pillow's fixed point sends them)`, () => {
      const img = picture(w, h, w * 1000 + h);
      const out = resizeBicubic(img, ow, oh);
      const ref = resizeBicubicRef(img.data, w, h, ow, oh);
      let worst = 0;
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(out.data[i] - ref[i]));
      expect(worst).toBeLessThanOrEqual(1);
    });
  }

  it('keeps a flat image flat and the same size unchanged (a copy)', () => {
    const flat: RgbImage = { width: 9, height: 5, data: new Uint8Array(9 * 5 * 3).fill(255) };
    expect(resizeBicubic(flat, 4, 13).data.every((v) => v === 255)).toBe(true);
    const img = picture(10, 6, 3);
    const same = resizeBicubic(img, 10, 6);
    expect(same.data).toEqual(img.data);
    expect(same.data).not.toBe(img.data);
  });

  it('clips overshoot at hard edges to 0..255 instead of wrapping', () => {
    const data = new Uint8Array(8 * 1 * 3);
    for (let x = 4; x < 8; x++) data.fill(255, x * 3, x * 3 + 3);
    const up = resizeBicubic({ width: 8, height: 1, data }, 29, 1);
    const ref = resizeBicubicRef(data, 8, 1, 29, 1);
    expect(Array.from(up.data)).toEqual(Array.from(ref));
  });
});

describe('smart_resize', () => {
  const F = 28;
  it("rounds with Python's round (halves to even)", () => {
    expect([roundHalfEven(1.5), roundHalfEven(2.5), roundHalfEven(3.5), roundHalfEven(2.4999), roundHalfEven(2.5001)]).toEqual([2, 2, 4, 2, 3]);
    // 42 / 28 = 1.5 -> 2, 70 / 28 = 2.5 -> 2
    expect(smartResize(42, 70, F, 56 * 56, 28 * 28 * 1280)).toEqual([56, 56]);
    expect(smartResize(28, 56, F, 28 * 28, 28 * 28 * 1280)).toEqual([28, 56]);
  });
  it('multiples of the factor stay as they are', () => {
    expect(smartResize(224, 336, F, 56 * 56, 28 * 28 * 1280)).toEqual([224, 336]);
  });
  it('too many pixels: both sides floored after scaling by sqrt(h*w/max), never below the factor', () => {
    // 1000x1000 with max 200704 (256 tokens): beta = sqrt(1e6 / 200704) = 2.2321..., 1000 / beta / 28 = 16.0 -> 448
    expect(smartResize(1000, 1000, F, 56 * 56, 200704)).toEqual([448, 448]);
    // a 30x5000 strip: 5000 / beta floors to the cap, 30 / beta floors to 0 -> raised to 28
    const [h, w] = smartResize(30, 5000, F, 56 * 56, 28 * 28 * 64);
    expect(h).toBe(28);
    expect(w).toBe(Math.floor(5000 / Math.sqrt((30 * 5000) / (28 * 28 * 64)) / 28) * 28);
  });
  it('too few pixels: both sides ceiled after scaling by sqrt(min/(h*w))', () => {
    // 30x40 with min 3136: beta = sqrt(3136/1200) = 1.6166, 30*beta/28 = 1.73 -> 56, 40*beta/28 = 2.31 -> 84
    expect(smartResize(30, 40, F, 56 * 56, 28 * 28 * 1280)).toEqual([56, 84]);
  });
  it('an aspect ratio over 200 is an error that gives it', () => {
    expect(() => smartResize(28, 5629, F, 56 * 56, 28 * 28 * 1280)).toThrow(/absolute aspect ratio must be smaller than 200, got 201.03/);
    expect(smartResize(28, 5600, F, 28 * 28, 28 * 28 * 1280)).toEqual([28, 5600]);
  });
});

describe("LLaMA-Factory's pre-resize (Qwen2VLPlugin._preprocess_image)", () => {
  it('shrinks to image_max_pixels with int() truncation, grows to image_min_pixels, then lifts sides under 28', () => {
    // 1000x800 over 768*768: f = sqrt(589824 / 800000) = 0.85865..., int(858.65) = 858, int(686.9) = 686
    expect(llamafactorySizes(1000, 800, LLAMAFACTORY_PIXEL_LIMITS)).toEqual([[858, 686]]);
    // 10x50 = 500 < 1024: f = 1.4311, int(14.31) = 14, int(71.55) = 71; then 14 < 28 -> 28x71
    expect(llamafactorySizes(10, 50, LLAMAFACTORY_PIXEL_LIMITS)).toEqual([[14, 71], [28, 71]]);
    expect(llamafactorySizes(300, 200, LLAMAFACTORY_PIXEL_LIMITS)).toEqual([]);
  });
  it('cuts an aspect ratio over 200 to 180', () => {
    expect(llamafactorySizes(6000, 28, { maxPixels: 10 ** 9, minPixels: 1 })).toEqual([[5040, 28]]);
    expect(llamafactorySizes(30, 7000, { maxPixels: 10 ** 9, minPixels: 1 })).toEqual([[30, 5400]]);
  });
  it('qwen2vlGrid counts patches from the size alone', () => {
    // 1000x800 -> 858x686 -> smart_resize(686, 858): 24.5 -> 24 (even), 30.64 -> 31 => 672x868
    expect(qwen2vlGrid(1000, 800, QWEN2VL_DEFAULTS, LLAMAFACTORY_PIXEL_LIMITS)).toEqual([1, 672 / 14, 868 / 14]);
  });
});

describe('patchify', () => {
  // patch 2, merge 2, temporal 2, no rescale or normalization: values are the raw bytes
  const tiny: Qwen2VLImageConfig = { patchSize: 2, mergeSize: 2, temporalPatchSize: 2, minPixels: 1, maxPixels: 10 ** 9, rescaleFactor: 1, mean: [0, 0, 0], std: [1, 1, 1] };
  // 8 wide, 4 high; R = 10y + x, G = 100 + 10y + x, B = 200 + y
  const img: RgbImage = { width: 8, height: 4, data: new Uint8Array(8 * 4 * 3) };
  for (let y = 0; y < 4; y++) for (let x = 0; x < 8; x++) img.data.set([10 * y + x, 100 + 10 * y + x, 200 + y], (y * 8 + x) * 3);

  it('rows go merge window by merge window (row-major inside each), columns channel, time, patch row, patch column', () => {
    const { pixelValues, grid } = patchify(img, tiny);
    expect(grid).toEqual([1, 2, 4]);
    const cols = 3 * 2 * 2 * 2;
    expect(pixelValues.length).toBe(8 * cols);
    const row = (r: number) => Array.from(pixelValues.subarray(r * cols, (r + 1) * cols));
    // row 0: the patch at (x 0-1, y 0-1); each channel's 4 pixels twice (the frame repeated in time)
    expect(row(0)).toEqual([0, 1, 10, 11, 0, 1, 10, 11, 100, 101, 110, 111, 100, 101, 110, 111, 200, 200, 201, 201, 200, 200, 201, 201]);
    // row 1: its right neighbour inside the first 2x2 merge window (x 2-3, y 0-1)
    expect(row(1).slice(0, 4)).toEqual([2, 3, 12, 13]);
    // row 2: the window's lower-left patch (x 0-1, y 2-3)
    expect(row(2).slice(0, 4)).toEqual([20, 21, 30, 31]);
    expect(row(2).slice(16, 20)).toEqual([202, 202, 203, 203]);
    // row 3: lower-right (x 2-3, y 2-3); row 4: the next merge window starts at x 4
    expect(row(3).slice(0, 4)).toEqual([22, 23, 32, 33]);
    expect(row(4).slice(0, 4)).toEqual([4, 5, 14, 15]);
    expect(row(7).slice(8, 12)).toEqual([126, 127, 136, 137]);
  });

  it('rescales by 1/255 and normalizes with the CLIP mean and std in float32, as transformers does', () => {
    const cfg = { ...tiny, rescaleFactor: 1 / 255, mean: QWEN2VL_DEFAULTS.mean, std: QWEN2VL_DEFAULTS.std };
    const flat: RgbImage = { width: 4, height: 4, data: new Uint8Array(48) };
    for (let i = 0; i < 16; i++) flat.data.set([0, 255, 128], i * 3);
    const { pixelValues } = patchify(flat, cfg);
    const f = Math.fround;
    const norm = (v: number, c: number) => f(f(f(v / 255) - f(cfg.mean[c])) / f(cfg.std[c]));
    expect(pixelValues[0]).toBe(norm(0, 0));
    expect(pixelValues[8]).toBe(norm(255, 1));
    expect(pixelValues[16]).toBe(norm(128, 2));
    expect(pixelValues[0]).toBeCloseTo(-1.7922626, 6);
    expect(pixelValues[8]).toBeCloseTo((1 - 0.4578275) / 0.26130258, 6);
  });

  it('refuses a size that is not a multiple of patch x merge', () => {
    expect(() => patchify({ width: 6, height: 4, data: new Uint8Array(72) }, tiny)).toThrow(/6x4 is not a multiple of 4/);
  });
});

describe('processQwen2VLImage', () => {
  it('a 100x60 picture: resized to smart_resize (56x112) by the bicubic resize, then patched', () => {
    const img = picture(100, 60, 5);
    const out = processQwen2VLImage(img, QWEN2VL_DEFAULTS, LLAMAFACTORY_PIXEL_LIMITS);
    expect(out.grid).toEqual([1, 4, 8]);
    expect(out.pixelValues.length).toBe(32 * 3 * 2 * 14 * 14);
    const resized = resizeBicubic(img, 112, 56);
    expect(Array.from(out.pixelValues)).toEqual(Array.from(patchify(resized, QWEN2VL_DEFAULTS).pixelValues));
  });

  it('reads preprocessor_config.json: min/max pixels from size or the old keys, Qwen3-VL patch 16 and 0.5 mean/std', () => {
    expect(qwen2vlImageConfig({ size: { shortest_edge: 3136, longest_edge: 12845056 } })).toMatchObject({ minPixels: 3136, maxPixels: 12845056, patchSize: 14 });
    expect(qwen2vlImageConfig({ min_pixels: 100, max_pixels: 200, size: { shortest_edge: 1, longest_edge: 2 } })).toMatchObject({ minPixels: 100, maxPixels: 200 });
    expect(qwen2vlImageConfig({ patch_size: 16, merge_size: 2, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5] })).toMatchObject({ patchSize: 16, mean: [0.5, 0.5, 0.5] });
  });
});

describe('<image> expansion (Qwen2VLPlugin.process_messages)', () => {
  it('each placeholder, in order across messages, becomes vision_start + t*h*w/merge^2 image_pad + vision_end', () => {
    const msgs = [
      { role: 'user', content: '<image>Who are they?' },
      { role: 'assistant', content: 'Players.' },
      { role: 'user', content: 'And here?<image>' },
    ];
    const out = expandQwen2VLImages(msgs, [[1, 4, 8], [1, 2, 2]], 2);
    expect(out[0].content).toBe(`<|vision_start|>${'<|image_pad|>'.repeat(8)}<|vision_end|>Who are they?`);
    expect(out[1]).toEqual(msgs[1]);
    expect(out[2].content).toBe('And here?<|vision_start|><|image_pad|><|vision_end|>');
    expect(msgs[0].content).toBe('<image>Who are they?');
  });
  it('a count mismatch is an error with both counts', () => {
    expect(() => expandQwen2VLImages([{ content: '<image><image>' }], [[1, 2, 2]], 2)).toThrow('2 <image> placeholders for 1 image');
  });
});
