// training_loss.png (plot_loss: true), as LLaMA-Factory writes it: the loss per logging step and
// an exponentially smoothed curve, eval loss as points. A small rasterizer and PNG encoder, so the
// CLI needs no plotting library.

import { crc32, deflateSync } from 'node:zlib';

type RGB = [number, number, number];

export function lossPlotPng(points: { step: number; loss?: number; eval_loss?: number }[], width = 640, height = 400): Uint8Array {
  const px = new Uint8Array(width * height * 3).fill(255);
  const train = points.filter((p) => p.loss !== undefined).map((p) => [p.step, p.loss!] as const);
  const evals = points.filter((p) => p.eval_loss !== undefined).map((p) => [p.step, p.eval_loss!] as const);
  const all = [...train, ...evals];
  const m = { l: 48, r: 16, t: 16, b: 32 };
  if (all.length > 0) {
    const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
    let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (y1 - y0 < 1e-6) { y0 -= 0.5; y1 += 0.5; }
    const X = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (width - m.l - m.r);
    const Y = (y: number) => height - m.b - ((y - y0) / (y1 - y0)) * (height - m.t - m.b);
    const set = (x: number, y: number, c: RGB) => {
      const xi = Math.round(x), yi = Math.round(y);
      if (xi < 0 || yi < 0 || xi >= width || yi >= height) return;
      px.set(c, (yi * width + xi) * 3);
    };
    const line = (a: readonly [number, number], b: readonly [number, number], c: RGB) => {
      const n = Math.max(1, Math.ceil(Math.hypot(X(b[0]) - X(a[0]), Y(b[1]) - Y(a[1]))));
      for (let i = 0; i <= n; i++) set(X(a[0]) + ((X(b[0]) - X(a[0])) * i) / n, Y(a[1]) + ((Y(b[1]) - Y(a[1])) * i) / n, c);
    };
    line([x0, y0], [x1, y0], [0, 0, 0]);
    line([x0, y0], [x0, y1], [0, 0, 0]);
    for (let i = 1; i < train.length; i++) line(train[i - 1]!, train[i]!, [160, 190, 230]);
    let s = train[0]?.[1] ?? 0;
    const smooth = train.map(([x, y]) => [x, (s = 0.9 * s + 0.1 * y)] as const);
    for (let i = 1; i < smooth.length; i++) line(smooth[i - 1]!, smooth[i]!, [31, 119, 180]);
    for (const [x, y] of evals) for (let d = -3; d <= 3; d++) { set(X(x) + d, Y(y), [214, 39, 40]); set(X(x), Y(y) + d, [214, 39, 40]); }
  }
  return encodePng(px, width, height);
}

function encodePng(rgb: Uint8Array, w: number, h: number): Uint8Array {
  const raw = new Uint8Array((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) raw.set(rgb.subarray(y * w * 3, (y + 1) * w * 3), y * (w * 3 + 1) + 1);
  const chunk = (type: string, data: Uint8Array) => {
    const out = new Uint8Array(12 + data.length);
    const v = new DataView(out.buffer);
    v.setUint32(0, data.length);
    out.set(new TextEncoder().encode(type), 4);
    out.set(data, 8);
    v.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
    return out;
  };
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, w);
  v.setUint32(4, h);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const parts = [Uint8Array.of(137, 80, 78, 71, 13, 10, 26, 10), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
