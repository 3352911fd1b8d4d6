// CPU references for the quant family (src/kernels/quant.ts), written independently of it: f64
// math, f16 by search over bit patterns, codes by f64 division, bytes parsed with a DataView.

/** f16 bits -> value (f64), from the IEEE definition. */
export function refHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31, m = h & 1023;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
}

/** Nearest f16 (ties to even bits), clamped to +-65504, by binary search over the bit patterns. */
export function refF16Bits(v: number): number {
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.min(Math.abs(v), 65504);
  let lo = 0, hi = 0x7bff; // largest bits with refHalf(bits) <= a
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (refHalf(mid) <= a) lo = mid;
    else hi = mid - 1;
  }
  let h = lo;
  if (h < 0x7bff) {
    const dLo = a - refHalf(h), dHi = refHalf(h + 1) - a;
    if (dHi < dLo || (dHi === dLo && (h & 1) === 1)) h += 1;
  }
  return sign | h;
}

export interface RefQuant {
  codes: Int32Array; // one per stored value: rows padded to whole blocks of 32
  scaleBits: Uint16Array; // one per block
}

/** Stored values per row: K rounded up to whole blocks. */
export const refRowWidth = (K: number): number => Math.ceil(K / 32) * 32;

/** Rows of [N, K] values padded with zeros to whole blocks, as they are stored. */
export function refPadRows(values: Float32Array, N: number, K: number): Float32Array {
  const Kp = refRowWidth(K), out = new Float32Array(N * Kp);
  for (let n = 0; n < N; n++) out.set(values.subarray(n * K, n * K + K), n * Kp);
  return out;
}

/** The documented quantization rules, straight from their definition. */
export function refQuantize(unpadded: Float32Array, N: number, K: number, dtype: 'q4' | 'q8'): RefQuant {
  const values = refPadRows(unpadded, N, K);
  const n = values.length, nb = n / 32;
  const codes = new Int32Array(n), scaleBits = new Uint16Array(nb);
  const [qmin, qmax] = dtype === 'q4' ? [-8, 7] : [-127, 127];
  for (let b = 0; b < nb; b++) {
    const blk = Array.from(values.subarray(b * 32, b * 32 + 32));
    const ext = Math.max(...blk.map(Math.abs));
    if (ext === 0) continue; // scale 0, codes 0
    let h: number;
    if (dtype === 'q8') h = refF16Bits(Math.fround(ext * Math.fround(1 / 127)));
    else {
      const m = blk.includes(ext) ? ext : -ext; // ties: the positive one
      h = refF16Bits(m / -8);
    }
    // q8: one f16 ulp up if the extreme would fall past the last code; q4: |scale| rounded up
    if (ext / Math.abs(refHalf(h)) > (dtype === 'q4' ? 8 : 127.5) && (h & 0x7fff) < 0x7bff) h += 1;
    scaleBits[b] = h;
    const s = refHalf(h);
    for (let i = 0; i < 32; i++) {
      const r = blk[i]! / s;
      const q = Math.sign(r) * Math.floor(Math.abs(r) + 0.5); // half away from zero
      codes[b * 32 + i] = Math.min(Math.max(q, qmin), qmax);
    }
  }
  return { codes, scaleBits };
}

/** Parses quantized bytes (layout of src/kernels/quant.ts) into codes and scales. */
export function refParse(bytes: Uint8Array, N: number, K: number, dtype: 'q4' | 'q8'): RefQuant {
  const n = N * refRowWidth(K), nb = n / 32;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const codes = new Int32Array(n), scaleBits = new Uint16Array(nb);
  const codeBytes = dtype === 'q4' ? n / 2 : n;
  for (let i = 0; i < n; i++) {
    if (dtype === 'q8') codes[i] = view.getInt8(i);
    else codes[i] = (i % 2 === 0 ? view.getUint8(i >> 1) & 15 : view.getUint8(i >> 1) >> 4) - 8;
  }
  for (let b = 0; b < nb; b++) scaleBits[b] = view.getUint16(codeBytes + 2 * b, true);
  return { codes, scaleBits };
}

/** The [N, K] values (padding dropped). */
export function refDequantize(q: RefQuant, N: number, K: number): Float64Array {
  const Kp = refRowWidth(K), out = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) out[n * K + k] = q.codes[n * Kp + k]! * refHalf(q.scaleBits[(n * Kp + k) >> 5]!);
  }
  return out;
}

/** y[T, N] = alpha x[T, K] Wᵀ + beta y0, f64. */
export function refLinear(x: ArrayLike<number>, w: ArrayLike<number>, T: number, N: number, K: number, alpha = 1, beta = 0, y0?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(T * N);
  for (let t = 0; t < T; t++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[t * K + k]! * w[n * K + k]!;
      y[t * N + n] = alpha * s + (beta ? beta * y0![t * N + n]! : 0);
    }
  return y;
}

/** dx[T, K] = alpha dy[T, N] W + beta dx0, f64. */
export function refLinearBackwardInput(dy: ArrayLike<number>, w: ArrayLike<number>, T: number, N: number, K: number, alpha = 1, beta = 0, dx0?: ArrayLike<number>): Float64Array {
  const dx = new Float64Array(T * K);
  for (let t = 0; t < T; t++)
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let n = 0; n < N; n++) s += dy[t * N + n]! * w[n * K + k]!;
      dx[t * K + k] = alpha * s + (beta ? beta * dx0![t * K + k]! : 0);
    }
  return dx;
}
