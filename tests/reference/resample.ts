// f64 reference for Pillow's bicubic resize (src/data/image/resample.ts), written from the
// definition rather than from Resample.c's fixed point: for each output sample, the cubic
// convolution kernel (a = -0.5) stretched by the downscale factor, centred on the output pixel's
// centre in input coordinates, weights normalised to sum 1; rows first, then columns, each pass
// rounded to 8 bits as Pillow stores its intermediate image.

function kernel(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1;
  if (x < 2) return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a;
  return 0;
}

/** Weights of the input samples for output index `o` (of `outSize`) over `inSize` inputs. */
function taps(o: number, inSize: number, outSize: number): Array<[number, number]> {
  const scale = inSize / outSize;
  const stretch = Math.max(1, scale);
  const centre = (o + 0.5) * scale;
  const list: Array<[number, number]> = [];
  for (let i = 0; i < inSize; i++) {
    const w = kernel((i + 0.5 - centre) / stretch);
    if (w !== 0) list.push([i, w]);
  }
  const sum = list.reduce((s, [, w]) => s + w, 0);
  return list.map(([i, w]) => [i, w / sum]);
}

// halves round up, as Pillow's (sum + 2^21) >> 22 does; the 1e-9 absorbs f64 error on exact halves
const to8 = (v: number) => Math.min(255, Math.max(0, Math.floor(v + 0.5 + 1e-9)));

function pass(src: Float64Array, w: number, h: number, outW: number, outH: number, horizontal: boolean): Float64Array {
  const out = new Float64Array(outW * outH * 3);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const t = horizontal ? taps(x, w, outW) : taps(y, h, outH);
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (const [i, wt] of t) s += wt * src[((horizontal ? y : i) * w + (horizontal ? i : x)) * 3 + c];
        out[(y * outW + x) * 3 + c] = to8(s);
      }
    }
  }
  return out;
}

export function resizeBicubicRef(data: ArrayLike<number>, w: number, h: number, outW: number, outH: number): Float64Array {
  let cur: Float64Array = Float64Array.from(data);
  if (outW !== w) cur = pass(cur, w, h, outW, h, true);
  if (outH !== h) cur = pass(cur, outW, h, outW, outH, false);
  return cur;
}
