// JPEG decoding (baseline and progressive Huffman) to 8-bit RGB with the arithmetic of
// libjpeg-turbo's defaults, which Pillow uses: the "islow" integer IDCT, fancy (triangle)
// chroma upsampling, and the fixed-point YCbCr -> RGB tables. Matching them makes the pixels
// identical to Image.open(...).convert("RGB"), not merely close.
import { buildHuffman, BitReader, decodeScan, ZIGZAG, type Component, type Frame, type Huffman, type Scan } from './jpeg-entropy.ts';
import { upsample } from './jpeg-upsample.ts';
import { checkPixelCount, ImageError, type ImageInfo, type RgbImage } from './types.ts';

export function isJpeg(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

// jdcolor.c's YCbCr -> RGB tables (16-bit fixed point)
const SCALEBITS = 16;
const ONE_HALF = 1 << (SCALEBITS - 1);
const fix = (x: number) => Math.floor(x * (1 << SCALEBITS) + 0.5);
const CR_R = new Int32Array(256);
const CB_B = new Int32Array(256);
const CR_G = new Float64Array(256);
const CB_G = new Float64Array(256);
for (let i = 0; i < 256; i++) {
  const x = i - 128;
  CR_R[i] = Math.floor((fix(1.402) * x + ONE_HALF) / (1 << SCALEBITS));
  CB_B[i] = Math.floor((fix(1.772) * x + ONE_HALF) / (1 << SCALEBITS));
  CR_G[i] = -fix(0.71414) * x;
  CB_G[i] = -fix(0.34414) * x + ONE_HALF;
}
const clamp8 = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : v);

interface Parsed {
  frame: Frame;
  adobeTransform?: number;
  jfif: boolean;
}

function readFrame(bytes: Uint8Array, at: number, progressive: boolean): Frame {
  const precision = bytes[at];
  if (precision !== 8) throw new ImageError(`${precision}-bit JPEGs are not supported (8-bit only)`);
  const height = (bytes[at + 1] << 8) | bytes[at + 2];
  const width = (bytes[at + 3] << 8) | bytes[at + 4];
  const n = bytes[at + 5];
  if (!width || !height) throw new ImageError(`JPEG frame has no pixels (${width}x${height})`);
  checkPixelCount(width, height);
  if (n === 4) throw new ImageError('CMYK/YCCK JPEGs are not supported yet; convert the image to RGB');
  if (n !== 1 && n !== 3) throw new ImageError(`JPEG with ${n} colour components is not supported (1 or 3)`);
  const components: Component[] = [];
  for (let i = 0; i < n; i++) {
    const o = at + 6 + i * 3;
    const h = bytes[o + 1] >> 4;
    const v = bytes[o + 1] & 15;
    if (h < 1 || h > 4 || v < 1 || v > 4) throw new ImageError(`JPEG sampling factor ${h}x${v} is not valid`);
    components.push({ id: bytes[o], h, v, tq: bytes[o + 2], width: 0, height: 0, blocksPerLine: 0, blocksPerColumn: 0, stride: 0, coefs: new Int32Array(0), pred: 0 });
  }
  const maxH = Math.max(...components.map((c) => c.h));
  const maxV = Math.max(...components.map((c) => c.v));
  const mcusPerLine = Math.ceil(width / (8 * maxH));
  const mcusPerColumn = Math.ceil(height / (8 * maxV));
  for (const c of components) {
    c.width = Math.ceil((width * c.h) / maxH);
    c.height = Math.ceil((height * c.v) / maxV);
    c.blocksPerLine = Math.ceil(c.width / 8);
    c.blocksPerColumn = Math.ceil(c.height / 8);
    // one component alone is coded block by block, several by MCU
    c.stride = n === 1 ? c.blocksPerLine : mcusPerLine * c.h;
    const rows = n === 1 ? c.blocksPerColumn : mcusPerColumn * c.v;
    c.coefs = new Int32Array(c.stride * rows * 64);
  }
  return { progressive, width, height, maxH, maxV, mcusPerLine, mcusPerColumn, components };
}

const segLen = (b: Uint8Array, at: number) => (b[at] << 8) | b[at + 1];

function sofInfo(marker: number): { progressive: boolean } | string | undefined {
  if (marker === 0xc0 || marker === 0xc1) return { progressive: false };
  if (marker === 0xc2) return { progressive: true };
  if (marker === 0xc3 || (marker >= 0xc5 && marker <= 0xc7) || (marker >= 0xc9 && marker <= 0xcb) || (marker >= 0xcd && marker <= 0xcf)) {
    return marker === 0xc3 || marker === 0xc7 || marker === 0xcb || marker === 0xcf ? 'lossless JPEG' : marker >= 0xc9 ? 'arithmetic-coded JPEG' : 'hierarchical JPEG';
  }
  return undefined;
}

export function jpegInfo(bytes: Uint8Array): ImageInfo {
  if (!isJpeg(bytes)) throw new ImageError('not a JPEG file');
  let at = 2;
  while (at + 4 <= bytes.length) {
    if (bytes[at] !== 0xff) throw new ImageError(`JPEG is corrupt (no marker at byte ${at})`);
    const marker = bytes[at + 1];
    if (marker === 0xff) {
      at++;
      continue;
    }
    const sof = sofInfo(marker);
    if (typeof sof === 'string') throw new ImageError(`${sof} is not supported (baseline and progressive Huffman only)`);
    if (sof) {
      const f = readFrame(bytes, at + 4, sof.progressive);
      return { format: 'jpeg', width: f.width, height: f.height };
    }
    at += 2 + segLen(bytes, at + 2);
  }
  throw new ImageError('JPEG has no frame header (truncated or corrupt)');
}

function parseAndDecode(bytes: Uint8Array): Parsed {
  const quant: Array<Int32Array | undefined> = [];
  const dcTables: Array<Huffman | undefined> = [];
  const acTables: Array<Huffman | undefined> = [];
  let frame: Frame | undefined;
  let restartInterval = 0;
  let adobeTransform: number | undefined;
  let jfif = false;
  let at = 2;
  for (;;) {
    if (at + 2 > bytes.length) {
      if (frame) break; // no EOI: libjpeg warns and uses what was decoded
      throw new ImageError('JPEG is truncated before its image data');
    }
    if (bytes[at] !== 0xff) {
      at++;
      continue;
    }
    const marker = bytes[at + 1];
    if (marker === 0xff || marker === 0x00 || (marker >= 0xd0 && marker <= 0xd7)) {
      at += marker === 0xff ? 1 : 2;
      continue;
    }
    if (marker === 0xd9) break;
    const len = segLen(bytes, at + 2);
    const body = at + 4;
    const end = at + 2 + len;
    if (end > bytes.length) throw new ImageError(`JPEG segment 0xFF${marker.toString(16).toUpperCase()} is truncated`);
    const sof = sofInfo(marker);
    if (typeof sof === 'string') throw new ImageError(`${sof} is not supported (baseline and progressive Huffman only)`);
    if (sof) frame = readFrame(bytes, body, sof.progressive);
    else if (marker === 0xdb) {
      for (let p = body; p < end; ) {
        const pq = bytes[p] >> 4;
        const tq = bytes[p] & 15;
        const t = new Int32Array(64);
        for (let k = 0; k < 64; k++) t[ZIGZAG[k]] = pq ? (bytes[p + 1 + 2 * k] << 8) | bytes[p + 2 + 2 * k] : bytes[p + 1 + k];
        quant[tq] = t;
        p += 1 + 64 * (pq ? 2 : 1);
      }
    } else if (marker === 0xc4) {
      for (let p = body; p < end; ) {
        const tc = bytes[p] >> 4;
        const th = bytes[p] & 15;
        const counts = bytes.subarray(p + 1, p + 17);
        const n = counts.reduce((a, b) => a + b, 0);
        const table = buildHuffman(counts, bytes.slice(p + 17, p + 17 + n));
        (tc === 0 ? dcTables : acTables)[th] = table;
        p += 17 + n;
      }
    } else if (marker === 0xdd) restartInterval = segLen(bytes, body);
    else if (marker === 0xe0 && String.fromCharCode(...bytes.subarray(body, body + 4)) === 'JFIF') jfif = true;
    else if (marker === 0xee && String.fromCharCode(...bytes.subarray(body, body + 5)) === 'Adobe') adobeTransform = bytes[body + 11];
    else if (marker === 0xda) {
      if (!frame) throw new ImageError('JPEG scan before its frame header');
      const f = frame;
      const ns = bytes[body];
      const comps: Component[] = [];
      for (let i = 0; i < ns; i++) {
        const id = bytes[body + 1 + 2 * i];
        const tables = bytes[body + 2 + 2 * i];
        const c = f.components.find((x) => x.id === id);
        if (!c) throw new ImageError(`JPEG scan names component ${id}, which the frame does not have`);
        c.dcTable = dcTables[tables >> 4];
        c.acTable = acTables[tables & 15];
        c.quant ??= quant[c.tq];
        if (!c.quant) throw new ImageError(`JPEG quantization table ${c.tq} is missing`);
        c.pred = 0;
        comps.push(c);
      }
      const o = body + 1 + 2 * ns;
      const scan: Scan = { components: comps, ss: bytes[o], se: bytes[o + 1], ah: bytes[o + 2] >> 4, al: bytes[o + 2] & 15 };
      const needDc = !f.progressive || (scan.ss === 0 && scan.ah === 0);
      const needAc = !f.progressive || scan.ss > 0;
      for (const c of comps) {
        if ((needDc && !c.dcTable) || (needAc && !c.acTable)) throw new ImageError('JPEG scan uses a Huffman table that is not defined');
      }
      const r = new BitReader(bytes, end);
      decodeScan(f, scan, r, restartInterval);
      at = r.pos;
      continue;
    }
    at = end;
  }
  if (!frame) throw new ImageError('JPEG has no frame header');
  return { frame, adobeTransform, jfif };
}

export function decodeJpeg(bytes: Uint8Array): RgbImage {
  if (!isJpeg(bytes)) throw new ImageError('not a JPEG file');
  const { frame, adobeTransform, jfif } = parseAndDecode(bytes);
  const { width: W, height: H } = frame;
  const rgb = new Uint8Array(W * H * 3);
  const planes = frame.components.map((c) => upsample(c, frame));
  if (planes.length === 1) {
    const { data, stride } = planes[0];
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) rgb.fill(data[y * stride + x], (y * W + x) * 3, (y * W + x) * 3 + 3);
    return { width: W, height: H, data: rgb };
  }
  // libjpeg's guess of the colour space (jdapimin.c): JFIF means YCbCr, Adobe says, ids 'R','G','B' mean RGB
  const ids = frame.components.map((c) => c.id);
  const isRgb = !jfif && (adobeTransform !== undefined ? adobeTransform === 0 : ids[0] === 82 && ids[1] === 71 && ids[2] === 66);
  const [p0, p1, p2] = planes;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const a = p0.data[y * p0.stride + x];
      const b = p1.data[y * p1.stride + x];
      const c = p2.data[y * p2.stride + x];
      const o = (y * W + x) * 3;
      if (isRgb) {
        rgb[o] = a;
        rgb[o + 1] = b;
        rgb[o + 2] = c;
      } else {
        rgb[o] = clamp8(a + CR_R[c]);
        rgb[o + 1] = clamp8(a + Math.floor((CB_G[b] + CR_G[c]) / (1 << SCALEBITS)));
        rgb[o + 2] = clamp8(a + CB_B[b]);
      }
    }
  }
  return { width: W, height: H, data: rgb };
}
