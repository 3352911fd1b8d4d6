// A small PNG writer for tests: any colour type and bit depth, every scanline filter in turn,
// optionally Adam7-interlaced, so the decoder meets each path with pixels the test chose.
import { deflateSync } from 'node:zlib';

export interface PngSpec {
  width: number;
  height: number;
  colorType: 0 | 2 | 3 | 4 | 6;
  depth: 1 | 2 | 4 | 8 | 16;
  /** Samples per pixel in the file's own units (palette indices for type 3), row-major. */
  samples: number[];
  palette?: number[];
  interlace?: boolean;
  /** Split the zlib stream over this many IDAT chunks. */
  idatChunks?: number;
}

const CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as const;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, body.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(body, 8);
  v.setUint32(8 + body.length, crc(out.subarray(4, 8 + body.length)));
  return out;
}

function packRow(s: PngSpec, pixels: number[][]): Uint8Array {
  const ch = CHANNELS[s.colorType];
  const bits = ch * s.depth * pixels.length;
  const row = new Uint8Array(Math.ceil(bits / 8));
  let bit = 0;
  for (const px of pixels) {
    for (let c = 0; c < ch; c++) {
      const v = px[c];
      if (s.depth === 16) {
        row[bit >> 3] = v >> 8;
        row[(bit >> 3) + 1] = v & 255;
      } else if (s.depth === 8) row[bit >> 3] = v;
      else row[bit >> 3] |= v << (8 - s.depth - (bit & 7));
      bit += s.depth;
    }
  }
  return row;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Filter rows with filter type (row index + offset) % 5. */
function filterRows(rows: Uint8Array[], bpp: number, offset: number): Uint8Array {
  const out: number[] = [];
  rows.forEach((row, y) => {
    const f = (y + offset) % 5;
    const prev = y > 0 ? rows[y - 1] : new Uint8Array(row.length);
    out.push(f);
    for (let x = 0; x < row.length; x++) {
      const a = x >= bpp ? row[x - bpp] : 0;
      const b = prev[x];
      const c = x >= bpp ? prev[x - bpp] : 0;
      const pred = [0, a, b, (a + b) >> 1, paeth(a, b, c)][f];
      out.push((row[x] - pred) & 255);
    }
  });
  return Uint8Array.from(out);
}

const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]];

export function encodePng(s: PngSpec): Uint8Array {
  const ch = CHANNELS[s.colorType];
  const bpp = Math.max(1, (ch * s.depth) >> 3);
  const pixel = (x: number, y: number) => s.samples.slice((y * s.width + x) * ch, (y * s.width + x + 1) * ch);
  const parts: Uint8Array[] = [];
  if (!s.interlace) {
    const rows = [];
    for (let y = 0; y < s.height; y++) rows.push(packRow(s, Array.from({ length: s.width }, (_, x) => pixel(x, y))));
    parts.push(filterRows(rows, bpp, 0));
  } else {
    ADAM7.forEach(([x0, y0, dx, dy], pass) => {
      const rows = [];
      for (let y = y0; y < s.height; y += dy) {
        const px = [];
        for (let x = x0; x < s.width; x += dx) px.push(pixel(x, y));
        if (px.length) rows.push(packRow(s, px));
      }
      if (rows.length) parts.push(filterRows(rows, bpp, pass));
    });
  }
  const raw = Buffer.concat(parts);
  const z = new Uint8Array(deflateSync(raw));
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, s.width);
  v.setUint32(4, s.height);
  ihdr.set([s.depth, s.colorType, 0, 0, s.interlace ? 1 : 0], 8);
  const out: Uint8Array[] = [Uint8Array.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr)];
  if (s.palette) out.push(chunk('PLTE', Uint8Array.from(s.palette)));
  const n = s.idatChunks ?? 1;
  const step = Math.ceil(z.length / n);
  for (let i = 0; i < z.length; i += step) out.push(chunk('IDAT', z.subarray(i, i + step)));
  out.push(chunk('IEND', new Uint8Array(0)));
  return new Uint8Array(Buffer.concat(out));
}
