// JPEG decoding (baseline and progressive Huffman) to 8-bit RGB with the arithmetic of
// libjpeg-turbo's defaults, which Pillow uses: the "islow" integer IDCT, fancy (triangle)
// chroma upsampling, and the fixed-point YCbCr -> RGB tables. Matching them makes the pixels
// identical to Image.open(...).convert("RGB"), not merely close.
import { ImageError, type ImageInfo, type RgbImage } from './types.ts';

export function isJpeg(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/** Natural-order position of the k-th zigzag coefficient. */
const ZIGZAG = new Uint8Array([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29,
  22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]);

interface Huffman {
  /** Largest code of each length (-1: none), and the index of its first symbol. */
  maxcode: Int32Array;
  valptr: Int32Array;
  mincode: Int32Array;
  symbols: Uint8Array;
}

interface Component {
  id: number;
  h: number;
  v: number;
  tq: number;
  /** Samples of the component before upsampling. */
  width: number;
  height: number;
  blocksPerLine: number;
  blocksPerColumn: number;
  /** Blocks stored a line (padded to whole MCUs). */
  stride: number;
  coefs: Int32Array;
  quant?: Int32Array;
  dcTable?: Huffman;
  acTable?: Huffman;
  pred: number;
}

interface Frame {
  progressive: boolean;
  width: number;
  height: number;
  maxH: number;
  maxV: number;
  mcusPerLine: number;
  mcusPerColumn: number;
  components: Component[];
}

function buildHuffman(counts: Uint8Array, symbols: Uint8Array): Huffman {
  const maxcode = new Int32Array(18).fill(-1);
  const valptr = new Int32Array(17);
  const mincode = new Int32Array(17);
  let code = 0;
  let k = 0;
  for (let len = 1; len <= 16; len++) {
    const n = counts[len - 1];
    if (n) {
      valptr[len] = k;
      mincode[len] = code;
      code += n;
      k += n;
      maxcode[len] = code - 1;
    }
    code <<= 1;
  }
  maxcode[17] = 0x7fffffff;
  return { maxcode, valptr, mincode, symbols };
}

/** Entropy-coded data: bits MSB first, 0xFF00 stuffing, and zeros once a marker is reached (as libjpeg does). */
class BitReader {
  private acc = 0;
  private bits = 0;
  /** A marker stopped the reading. */
  marker = false;
  constructor(
    private readonly bytes: Uint8Array,
    public pos: number,
  ) {}

  private fill(): void {
    let byte = 0;
    if (!this.marker && this.pos < this.bytes.length) {
      byte = this.bytes[this.pos];
      if (byte === 0xff) {
        const next = this.bytes[this.pos + 1];
        if (next === 0x00) this.pos += 2;
        else {
          this.marker = true;
          byte = 0;
        }
      } else this.pos++;
    } else this.marker = true;
    this.acc = ((this.acc << 8) | byte) & 0xffffff;
    this.bits += 8;
  }

  bit(): number {
    if (this.bits === 0) this.fill();
    this.bits--;
    return (this.acc >> this.bits) & 1;
  }

  receive(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v = (v << 1) | this.bit();
    return v;
  }

  /** receive(n) as a signed value (JPEG's EXTEND). */
  extend(n: number): number {
    if (n === 0) return 0;
    const v = this.receive(n);
    return v < 1 << (n - 1) ? v - (1 << n) + 1 : v;
  }

  decode(t: Huffman): number {
    let code = this.bit();
    let len = 1;
    while (code > t.maxcode[len]) {
      code = (code << 1) | this.bit();
      len++;
      if (len > 16) throw new ImageError('JPEG data is corrupt (bad Huffman code)');
    }
    return t.symbols[t.valptr[len] + code - t.mincode[len]];
  }

  /** Drop the bits left in the current byte and move past an RSTn marker. */
  restart(): void {
    this.acc = 0;
    this.bits = 0;
    this.marker = false;
    while (this.pos + 1 < this.bytes.length && !(this.bytes[this.pos] === 0xff && this.bytes[this.pos + 1] >= 0xd0 && this.bytes[this.pos + 1] <= 0xd7)) this.pos++;
    if (this.pos + 1 < this.bytes.length) this.pos += 2;
  }
}

interface Scan {
  components: Component[];
  ss: number;
  se: number;
  ah: number;
  al: number;
}

function decodeScan(frame: Frame, scan: Scan, r: BitReader, restartInterval: number): void {
  const { ss, se, ah, al } = scan;
  let eobrun = 0;
  const baseline = !frame.progressive;
  const block = (c: Component, row: number, col: number) => {
    const coefs = c.coefs;
    const at = (row * c.stride + col) * 64;
    if (baseline) {
      const t = r.decode(c.dcTable!);
      c.pred += t === 0 ? 0 : r.extend(t);
      coefs[at] = c.pred;
      for (let k = 1; k < 64; k++) {
        const rs = r.decode(c.acTable!);
        const s = rs & 15;
        const run = rs >> 4;
        if (s === 0) {
          if (run === 15) {
            k += 15;
            continue;
          }
          break;
        }
        k += run;
        if (k > 63) break;
        coefs[at + ZIGZAG[k]] = r.extend(s);
      }
      return;
    }
    if (ss === 0) {
      if (ah === 0) {
        const t = r.decode(c.dcTable!);
        c.pred += t === 0 ? 0 : r.extend(t);
        coefs[at] = c.pred * (1 << al);
      } else if (r.bit()) coefs[at] |= 1 << al;
      return;
    }
    if (ah === 0) {
      if (eobrun > 0) {
        eobrun--;
        return;
      }
      for (let k = ss; k <= se; k++) {
        const rs = r.decode(c.acTable!);
        const s = rs & 15;
        const run = rs >> 4;
        if (s === 0) {
          if (run < 15) {
            eobrun = (1 << run) - 1;
            if (run) eobrun += r.receive(run);
            break;
          }
          k += 15;
          continue;
        }
        k += run;
        if (k > 63) break;
        coefs[at + ZIGZAG[k]] = r.extend(s) * (1 << al);
      }
      return;
    }
    // AC refinement (libjpeg's decode_mcu_AC_refine)
    const p1 = 1 << al;
    const m1 = -1 << al;
    let k = ss;
    const correct = (pos: number) => {
      if (r.bit() && (coefs[pos] & p1) === 0) coefs[pos] += coefs[pos] >= 0 ? p1 : m1;
    };
    if (eobrun === 0) {
      for (; k <= se; k++) {
        const rs = r.decode(c.acTable!);
        let run = rs >> 4;
        let s = rs & 15;
        if (s) s = r.bit() ? p1 : m1;
        else if (run !== 15) {
          eobrun = 1 << run;
          if (run) eobrun += r.receive(run);
          break;
        }
        do {
          const pos = at + ZIGZAG[k];
          if (coefs[pos] !== 0) correct(pos);
          else if (--run < 0) break;
          k++;
        } while (k <= se);
        if (s && k <= 63) coefs[at + ZIGZAG[k]] = s;
      }
    }
    if (eobrun > 0) {
      for (; k <= se; k++) {
        const pos = at + ZIGZAG[k];
        if (coefs[pos] !== 0) correct(pos);
      }
      eobrun--;
    }
  };

  const comps = scan.components;
  const single = comps.length === 1;
  const total = single ? comps[0].blocksPerLine * comps[0].blocksPerColumn : frame.mcusPerLine * frame.mcusPerColumn;
  for (let n = 0; n < total; n++) {
    if (restartInterval && n > 0 && n % restartInterval === 0) {
      r.restart();
      eobrun = 0;
      for (const c of comps) c.pred = 0;
    }
    if (single) {
      const c = comps[0];
      block(c, Math.floor(n / c.blocksPerLine), n % c.blocksPerLine);
    } else {
      const mr = Math.floor(n / frame.mcusPerLine);
      const mc = n % frame.mcusPerLine;
      for (const c of comps) for (let v = 0; v < c.v; v++) for (let h = 0; h < c.h; h++) block(c, mr * c.v + v, mc * c.h + h);
    }
  }
}

// islow IDCT constants (13-bit fixed point) and libjpeg's post-IDCT range limiting.
const CONST_BITS = 13;
const PASS1_BITS = 2;
const F0_298 = 2446, F0_390 = 3196, F0_541 = 4433, F0_765 = 6270, F0_899 = 7373, F1_175 = 9633;
const F1_501 = 12299, F1_847 = 15137, F1_961 = 16069, F2_053 = 16819, F2_562 = 20995, F3_072 = 25172;

const RANGE_LIMIT = (() => {
  const t = new Uint8Array(1024);
  for (let i = 0; i < 1024; i++) t[i] = i < 128 ? i + 128 : i < 512 ? 255 : i < 896 ? 0 : i - 896;
  return t;
})();

const descale = (x: number, n: number) => Math.floor((x + 2 ** (n - 1)) / 2 ** n);

/** One 8x8 block through libjpeg's jpeg_idct_islow, into `out` at (x, y) of a plane `stride` wide. */
function idctBlock(coefs: Int32Array, at: number, quant: Int32Array, ws: Float64Array, out: Uint8Array, stride: number, x0: number, y0: number): void {
  for (let c = 0; c < 8; c++) {
    const q = (i: number) => coefs[at + i * 8 + c] * quant[i * 8 + c];
    if (coefs[at + 8 + c] === 0 && coefs[at + 16 + c] === 0 && coefs[at + 24 + c] === 0 && coefs[at + 32 + c] === 0 && coefs[at + 40 + c] === 0 && coefs[at + 48 + c] === 0 && coefs[at + 56 + c] === 0) {
      const dc = q(0) * (1 << PASS1_BITS);
      for (let i = 0; i < 8; i++) ws[i * 8 + c] = dc;
      continue;
    }
    const r = odd1d(q(0), q(1), q(2), q(3), q(4), q(5), q(6), q(7), CONST_BITS - PASS1_BITS);
    for (let i = 0; i < 8; i++) ws[i * 8 + c] = r[i];
  }
  for (let row = 0; row < 8; row++) {
    const w = (i: number) => ws[row * 8 + i];
    const r = odd1d(w(0), w(1), w(2), w(3), w(4), w(5), w(6), w(7), CONST_BITS + PASS1_BITS + 3);
    const o = (y0 + row) * stride + x0;
    for (let i = 0; i < 8; i++) out[o + i] = RANGE_LIMIT[r[i] & 1023];
  }
}

const tmpOut = [0, 0, 0, 0, 0, 0, 0, 0];
/** The islow 1-D transform of (d0..d7), descaled by `shift` bits. */
function odd1d(d0: number, d1: number, d2: number, d3: number, d4: number, d5: number, d6: number, d7: number, shift: number): number[] {
  let z1 = (d2 + d6) * F0_541;
  let tmp2 = z1 - d6 * F1_847;
  let tmp3 = z1 + d2 * F0_765;
  let tmp0 = (d0 + d4) * (1 << CONST_BITS);
  let tmp1 = (d0 - d4) * (1 << CONST_BITS);
  const t10 = tmp0 + tmp3;
  const t13 = tmp0 - tmp3;
  const t11 = tmp1 + tmp2;
  const t12 = tmp1 - tmp2;
  tmp0 = d7;
  tmp1 = d5;
  tmp2 = d3;
  tmp3 = d1;
  z1 = tmp0 + tmp3;
  let z2 = tmp1 + tmp2;
  let z3 = tmp0 + tmp2;
  let z4 = tmp1 + tmp3;
  const z5 = (z3 + z4) * F1_175;
  tmp0 *= F0_298;
  tmp1 *= F2_053;
  tmp2 *= F3_072;
  tmp3 *= F1_501;
  z1 *= -F0_899;
  z2 *= -F2_562;
  z3 = z3 * -F1_961 + z5;
  z4 = z4 * -F0_390 + z5;
  tmp0 += z1 + z3;
  tmp1 += z2 + z4;
  tmp2 += z2 + z3;
  tmp3 += z1 + z4;
  const o = tmpOut;
  o[0] = descale(t10 + tmp3, shift);
  o[7] = descale(t10 - tmp3, shift);
  o[1] = descale(t11 + tmp2, shift);
  o[6] = descale(t11 - tmp2, shift);
  o[2] = descale(t12 + tmp1, shift);
  o[5] = descale(t12 - tmp1, shift);
  o[3] = descale(t13 + tmp0, shift);
  o[4] = descale(t13 - tmp0, shift);
  return o;
}

/** The component's samples, (stride*8) wide and (rows*8) high. */
function componentPlane(c: Component): { plane: Uint8Array; width: number } {
  const width = c.stride * 8;
  const rows = c.coefs.length / 64 / c.stride;
  const plane = new Uint8Array(width * rows * 8);
  const ws = new Float64Array(64);
  for (let by = 0; by < rows; by++) for (let bx = 0; bx < c.stride; bx++) idctBlock(c.coefs, (by * c.stride + bx) * 64, c.quant!, ws, plane, width, bx * 8, by * 8);
  return { plane, width };
}

/** Upsample a component to the frame's sampling as libjpeg-turbo's jdsample.c does (fancy where it applies). */
function upsample(c: Component, frame: Frame): { data: Uint8Array; stride: number } {
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
  if (n !== 1 && n !== 3) throw new ImageError(`JPEG with ${n} components (CMYK/YCCK) is not supported yet; convert it to RGB`);
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
