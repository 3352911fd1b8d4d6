// PNG decoding to 8-bit RGB the way Pillow opens a PNG and converts it with convert("RGB"):
// grey depths 1/2/4 are scaled to 0..255, 16-bit RGB keeps the high byte, alpha is dropped (not
// composited), palettes are looked up, tRNS is ignored. zlib comes from DecompressionStream, which
// Node (18+) and browsers both have.
import { checkPixelCount, ImageError, type ImageInfo, type RgbImage } from './types.ts';

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && SIGNATURE.every((b, i) => bytes[i] === b);
}

interface Header {
  width: number;
  height: number;
  depth: number;
  colorType: number;
  interlaced: boolean;
}

/** Samples per pixel of each PNG colour type. */
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };

function u32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

function readHeader(bytes: Uint8Array): Header {
  if (!isPng(bytes)) throw new ImageError('not a PNG file');
  if (bytes.length < 33 || String.fromCharCode(...bytes.subarray(12, 16)) !== 'IHDR') throw new ImageError('PNG file without an IHDR chunk (truncated or corrupt)');
  const h: Header = { width: u32(bytes, 16), height: u32(bytes, 20), depth: bytes[24], colorType: bytes[25], interlaced: bytes[28] === 1 };
  if (!(h.colorType in CHANNELS)) throw new ImageError(`PNG colour type ${h.colorType} is not valid`);
  if (!DEPTHS[h.colorType].includes(h.depth)) throw new ImageError(`PNG bit depth ${h.depth} is not valid for colour type ${h.colorType}`);
  if (h.width === 0 || h.height === 0) throw new ImageError(`PNG image has no pixels (${h.width}x${h.height})`);
  checkPixelCount(h.width, h.height);
  if (bytes[28] > 1) throw new ImageError(`PNG interlace method ${bytes[28]} is not valid`);
  if (h.colorType === 0 && h.depth === 16) throw new ImageError('16-bit greyscale PNGs are not supported yet (convert the image to 8 bits)');
  return h;
}

export function pngInfo(bytes: Uint8Array): ImageInfo {
  const h = readHeader(bytes);
  return { format: 'png', width: h.width, height: h.height };
}

async function inflate(data: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream('deflate'));
  try {
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new ImageError(`PNG image data is corrupt (zlib: ${(e as Error).message})`);
  }
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Undo the scanline filters of one (sub)image in place; returns its rows without filter bytes. */
function unfilter(data: Uint8Array, at: number, rowBytes: number, rows: number, bpp: number): { rows: Uint8Array; end: number } {
  const out = new Uint8Array(rowBytes * rows);
  for (let y = 0; y < rows; y++) {
    if (at >= data.length) throw new ImageError('PNG image data is truncated');
    const filter = data[at++];
    const line = y * rowBytes;
    const prev = line - rowBytes;
    if (at + rowBytes > data.length) throw new ImageError('PNG image data is truncated');
    for (let x = 0; x < rowBytes; x++) {
      const raw = data[at + x];
      const a = x >= bpp ? out[line + x - bpp] : 0;
      const b = y > 0 ? out[prev + x] : 0;
      const c = x >= bpp && y > 0 ? out[prev + x - bpp] : 0;
      let v: number;
      switch (filter) {
        case 0: v = raw; break;
        case 1: v = raw + a; break;
        case 2: v = raw + b; break;
        case 3: v = raw + ((a + b) >> 1); break;
        case 4: v = raw + paeth(a, b, c); break;
        default: throw new ImageError(`PNG scanline filter ${filter} is not valid (row ${y})`);
      }
      out[line + x] = v & 255;
    }
    at += rowBytes;
  }
  return { rows: out, end: at };
}

/** One sample (as 0..255) of unfiltered rows. */
function sample(rows: Uint8Array, rowBytes: number, depth: number, x: number, y: number, channels: number, c: number, scale: boolean): number {
  const line = y * rowBytes;
  if (depth === 8) return rows[line + x * channels + c];
  if (depth === 16) return rows[line + (x * channels + c) * 2];
  const perByte = 8 / depth;
  const byte = rows[line + Math.floor(x / perByte)];
  const v = (byte >> (8 - depth * ((x % perByte) + 1))) & ((1 << depth) - 1);
  return scale ? (v * 255) / ((1 << depth) - 1) : v;
}

const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
];

export async function decodePng(bytes: Uint8Array): Promise<RgbImage> {
  const h = readHeader(bytes);
  const idat: Uint8Array[] = [];
  let palette: Uint8Array | undefined;
  let at = 8;
  while (at + 8 <= bytes.length) {
    const len = u32(bytes, at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const body = at + 8;
    if (body + len > bytes.length) throw new ImageError(`PNG chunk ${type} is truncated`);
    if (type === 'IDAT') idat.push(bytes.subarray(body, body + len));
    else if (type === 'PLTE') palette = bytes.subarray(body, body + len);
    else if (type === 'IEND') break;
    at = body + len + 4;
  }
  if (!idat.length) throw new ImageError('PNG file has no image data (IDAT)');
  if (h.colorType === 3 && !palette) throw new ImageError('palette PNG without a PLTE chunk');
  const joined = new Uint8Array(idat.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of idat) {
    joined.set(c, off);
    off += c.length;
  }
  const data = await inflate(joined);

  const channels = CHANNELS[h.colorType];
  const bitsPerPixel = channels * h.depth;
  const bpp = Math.max(1, bitsPerPixel >> 3);
  const { width: W, height: H } = h;
  const rgb = new Uint8Array(W * H * 3);
  const put = (rows: Uint8Array, rowBytes: number, sx: number, sy: number, dx: number, dy: number) => {
    const o = (dy * W + dx) * 3;
    if (h.colorType === 3) {
      const i = sample(rows, rowBytes, h.depth, sx, sy, 1, 0, false);
      for (let c = 0; c < 3; c++) rgb[o + c] = 3 * i + c < palette!.length ? palette![3 * i + c] : 0;
    } else if (h.colorType === 0 || h.colorType === 4) {
      rgb[o] = rgb[o + 1] = rgb[o + 2] = sample(rows, rowBytes, h.depth, sx, sy, channels, 0, true);
    } else {
      for (let c = 0; c < 3; c++) rgb[o + c] = sample(rows, rowBytes, h.depth, sx, sy, channels, c, true);
    }
  };
  if (!h.interlaced) {
    const rowBytes = Math.ceil((W * bitsPerPixel) / 8);
    const { rows } = unfilter(data, 0, rowBytes, H, bpp);
    if (h.depth === 8 && h.colorType !== 3) {
      // the common case, without the per-sample unpacking
      const grey = h.colorType === 0 || h.colorType === 4;
      for (let p = 0, i = 0; p < W * H; p++, i += channels) {
        rgb[3 * p] = rows[i];
        rgb[3 * p + 1] = rows[grey ? i : i + 1];
        rgb[3 * p + 2] = rows[grey ? i : i + 2];
      }
    } else for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) put(rows, rowBytes, x, y, x, y);
  } else {
    let pos = 0;
    for (const [x0, y0, dx, dy] of ADAM7) {
      const pw = Math.ceil((W - x0) / dx);
      const ph = Math.ceil((H - y0) / dy);
      if (pw <= 0 || ph <= 0) continue;
      const rowBytes = Math.ceil((pw * bitsPerPixel) / 8);
      const pass = unfilter(data, pos, rowBytes, ph, bpp);
      pos = pass.end;
      for (let y = 0; y < ph; y++) for (let x = 0; x < pw; x++) put(pass.rows, rowBytes, x, y, x0 + x * dx, y0 + y * dy);
    }
  }
  return { width: W, height: H, data: rgb };
}
