// JPEG entropy decoding (Huffman, baseline and progressive scans) into each component's
// coefficient blocks, with libjpeg's rules for markers met inside the data (zeros from there on),
// restart intervals and progressive refinement (decode_mcu_AC_refine).
import { ImageError } from './types.ts';

/** Natural-order position of the k-th zigzag coefficient. */
export const ZIGZAG = new Uint8Array([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29,
  22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]);

export interface Huffman {
  /** Largest code of each length (-1: none), and the index of its first symbol. */
  maxcode: Int32Array;
  valptr: Int32Array;
  mincode: Int32Array;
  symbols: Uint8Array;
  /** By the next 8 bits: (code length << 8) | symbol for codes of at most 8 bits, else 0. */
  lookup: Uint16Array;
}

export interface Component {
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

export interface Frame {
  progressive: boolean;
  width: number;
  height: number;
  maxH: number;
  maxV: number;
  mcusPerLine: number;
  mcusPerColumn: number;
  components: Component[];
}

export function buildHuffman(counts: Uint8Array, symbols: Uint8Array): Huffman {
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
  const lookup = new Uint16Array(256);
  for (let len = 1, k = 0, code = 0; len <= 8; len++, code <<= 1) {
    for (let i = 0; i < counts[len - 1]; i++, k++, code++) {
      const first = code << (8 - len);
      lookup.fill((len << 8) | symbols[k], first, first + (1 << (8 - len)));
    }
  }
  return { maxcode, valptr, mincode, symbols, lookup };
}

/** Entropy-coded data: bits MSB first, 0xFF00 stuffing, and zeros once a marker is reached (as libjpeg does). */
export class BitReader {
  private acc = 0;
  private bits = 0;
  /** A marker stopped the reading. */
  private marker = false;
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

  /** The next n (at most 16) bits as an unsigned number. */
  receive(n: number): number {
    while (this.bits < n) this.fill();
    this.bits -= n;
    return (this.acc >> this.bits) & ((1 << n) - 1);
  }

  /** receive(n) as a signed value (JPEG's EXTEND). */
  extend(n: number): number {
    if (n === 0) return 0;
    const v = this.receive(n);
    return v < 1 << (n - 1) ? v - (1 << n) + 1 : v;
  }

  decode(t: Huffman): number {
    // codes up to 8 bits come from the lookup table; longer ones bit by bit
    while (this.bits < 8) this.fill();
    const hit = t.lookup[(this.acc >> (this.bits - 8)) & 255];
    if (hit) {
      this.bits -= hit >> 8;
      return hit & 255;
    }
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

export interface Scan {
  components: Component[];
  ss: number;
  se: number;
  ah: number;
  al: number;
}

export function decodeScan(frame: Frame, scan: Scan, r: BitReader, restartInterval: number): void {
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
