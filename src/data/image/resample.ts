// Pillow's Image.resize(size, Image.BICUBIC) on 8-bit RGB, to the bit: Resample.c's
// antialiased convolution (the cubic a = -0.5 kernel, its support widened by the scale when
// shrinking), coefficients in 22-bit fixed point, a horizontal pass into an 8-bit image and
// then a vertical one. The one resampler both hosts use: plain TypeScript on typed arrays.
import type { RgbImage } from './types.ts';

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

export function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** Per output index: the first input index, how many inputs, and their fixed-point weights. */
export interface Coefficients {
  first: Int32Array;
  count: Int32Array;
  /** `ksize` weights per output index. */
  weights: Int32Array;
  ksize: number;
}

/** precompute_coeffs + normalize_coeffs_8bpc for a full-image box. */
export function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const inv = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates toward zero
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < n; x++) {
      k[x] = bicubic((x + xmin - center + 0.5) * inv);
      ww += k[x];
    }
    for (let x = 0; x < ksize; x++) {
      const w = x < n && ww !== 0 ? k[x] / ww : x < n ? k[x] : 0;
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    first[xx] = xmin;
    count[xx] = n;
  }
  return { first, count, weights, ksize };
}

/** Resample.c's clip8: the 22-bit fixed-point sum back to 0..255. */
function clip8(ss: number): number {
  const v = Math.floor(ss / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function horizontal(src: RgbImage, width: number): RgbImage {
  const { first, count, weights, ksize } = coefficients(src.width, width);
  const out = new Uint8Array(width * src.height * 3);
  for (let y = 0; y < src.height; y++) {
    const row = y * src.width * 3;
    for (let xx = 0; xx < width; xx++) {
      let s0 = HALF, s1 = HALF, s2 = HALF;
      const w0 = xx * ksize;
      for (let x = 0; x < count[xx]; x++) {
        const w = weights[w0 + x];
        const p = row + (first[xx] + x) * 3;
        s0 += src.data[p] * w;
        s1 += src.data[p + 1] * w;
        s2 += src.data[p + 2] * w;
      }
      const o = (y * width + xx) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return { width, height: src.height, data: out };
}

function vertical(src: RgbImage, height: number): RgbImage {
  const { first, count, weights, ksize } = coefficients(src.height, height);
  const stride = src.width * 3;
  const out = new Uint8Array(stride * height);
  for (let yy = 0; yy < height; yy++) {
    const w0 = yy * ksize;
    for (let i = 0; i < stride; i++) {
      let s = HALF;
      for (let y = 0; y < count[yy]; y++) s += src.data[(first[yy] + y) * stride + i] * weights[w0 + y];
      out[yy * stride + i] = clip8(s);
    }
  }
  return { width: src.width, height, data: out };
}

/** Image.resize((width, height), Image.BICUBIC) of an RGB image. */
export function resizeBicubic(img: RgbImage, width: number, height: number): RgbImage {
  if (!(width >= 1 && height >= 1)) throw new Error(`resize to ${width}x${height}: the size must be at least 1x1`);
  let out = img;
  if (width !== img.width) out = horizontal(out, width);
  if (height !== img.height) out = vertical(out, height);
  return out === img ? { width, height, data: img.data.slice() } : out;
}
