// A component's samples (IDCT of its blocks) brought to the frame's full resolution as
// libjpeg-turbo's jdsample.c does: "fancy" triangle filters for 2x1, 1x2 and 2x2 subsampling,
// edge rows and columns replicated, plain replication otherwise.
import { idctBlock } from './jpeg-idct.ts';
import type { Component, Frame } from './jpeg-entropy.ts';
import { ImageError } from './types.ts';

function componentPlane(c: Component): { plane: Uint8Array; width: number } {
  const width = c.stride * 8;
  const rows = c.coefs.length / 64 / c.stride;
  const plane = new Uint8Array(width * rows * 8);
  const ws = new Float64Array(64);
  for (let by = 0; by < rows; by++) for (let bx = 0; bx < c.stride; bx++) idctBlock(c.coefs, (by * c.stride + bx) * 64, c.quant!, ws, plane, width, bx * 8, by * 8);
  return { plane, width };
}

/** Upsample a component to the frame's sampling as libjpeg-turbo's jdsample.c does (fancy where it applies). */
export function upsample(c: Component, frame: Frame): { data: Uint8Array; stride: number } {
  const { plane, width: pw } = componentPlane(c);
  const hx = frame.maxH / c.h;
  const vx = frame.maxV / c.v;
  if (hx === 1 && vx === 1) return { data: plane, stride: pw };
  if (!Number.isInteger(hx) || !Number.isInteger(vx)) throw new ImageError(`JPEG sampling factors ${c.h}x${c.v} of ${frame.maxH}x${frame.maxV} are not supported`);
  const dw = c.width;
  const dh = c.height;
  const outW = dw * hx;
  const outH = dh * vx;
  const out = new Uint8Array(outW * outH);
  const px = (x: number, y: number) => plane[Math.min(y, dh - 1) * pw + x];
  const fancy = (hx === 2 && vx === 1 && dw > 2) || (hx === 1 && vx === 2) || (hx === 2 && vx === 2 && dw > 2);
  if (!fancy) {
    for (let y = 0; y < outH; y++) for (let x = 0; x < outW; x++) out[y * outW + x] = plane[Math.floor(y / vx) * pw + Math.floor(x / hx)];
    return { data: out, stride: outW };
  }
  if (vx === 1) {
    for (let y = 0; y < dh; y++) {
      const o = y * outW;
      const i = y * pw;
      out[o] = plane[i];
      out[o + 1] = (plane[i] * 3 + plane[i + 1] + 2) >> 2;
      for (let x = 1; x < dw - 1; x++) {
        const v = plane[i + x] * 3;
        out[o + 2 * x] = (v + plane[i + x - 1] + 1) >> 2;
        out[o + 2 * x + 1] = (v + plane[i + x + 1] + 2) >> 2;
      }
      const last = dw - 1;
      out[o + 2 * last] = (plane[i + last] * 3 + plane[i + last - 1] + 1) >> 2;
      out[o + 2 * last + 1] = plane[i + last];
    }
    return { data: out, stride: outW };
  }
  for (let y = 0; y < dh; y++) {
    for (let half = 0; half < 2; half++) {
      const other = half === 0 ? Math.max(y - 1, 0) : y + 1;
      const o = (2 * y + half) * outW;
      const sum = (x: number) => px(x, y) * 3 + px(x, other);
      if (hx === 1) {
        const bias = half === 0 ? 1 : 2;
        for (let x = 0; x < dw; x++) out[o + x] = (sum(x) + bias) >> 2;
        continue;
      }
      let last = sum(0);
      let cur = last;
      let next = sum(1);
      out[o] = (cur * 4 + 8) >> 4;
      out[o + 1] = (cur * 3 + next + 7) >> 4;
      for (let x = 1; x < dw - 1; x++) {
        last = cur;
        cur = next;
        next = sum(x + 1);
        out[o + 2 * x] = (cur * 3 + last + 8) >> 4;
        out[o + 2 * x + 1] = (cur * 3 + next + 7) >> 4;
      }
      last = cur;
      cur = next;
      out[o + 2 * (dw - 1)] = (cur * 3 + last + 8) >> 4;
      out[o + 2 * (dw - 1) + 1] = (cur * 4 + 7) >> 4;
    }
  }
  return { data: out, stride: outW };
}
