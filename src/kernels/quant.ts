// Block-quantized base weights for QLoRA (shaders/quant.wgsl): quantize on the GPU or the CPU,
// dequantize, and matrix products with dequantization fused into the tile loads.
//
// LAYOUT of a quantized tensor of logical shape [N, K], dtype 'q8' or 'q4', one buffer (byteSize()
// in src/gpu/tensor.ts):
//   - Each row is stored as Kp = quantRowWidth(K) values (K rounded up to a multiple of 32, the
//     extra values zero, so they quantize to code 0 and add nothing to any product). Stored values
//     are taken in row-major order, i = n * Kp + k; block b holds values 32b .. 32b + 31, i.e. 32
//     consecutive values of one row (block b = n * Kp/32 + k/32).
//   - Codes first. q8: one byte per value, byte i = code of value i (int8, two's complement),
//     so u32 word i/4 holds it at bits 8 * (i % 4). q4: one nibble per value, byte i/2 holds value
//     i in its low nibble when i is even, high nibble when odd (u32 word i/8, bits 4 * (i % 8)),
//     stored as code + 8 (0..15).
//   - Then one IEEE f16 scale per block, little endian, at byte codeBytes + 2b (u32 word
//     codeWords + b/2, low half for even b). codeBytes = N*Kp (q8) or N*Kp/2 (q4). The scale area is
//     padded to a multiple of 4 bytes with zeros (an odd block count leaves one zero half).
//   - value = code * scale, computed in f32; it is exact (a code has <= 8 bits, a scale 11), so
//     every kernel and dequantizeHost see bit-identical weights.
//
// ROUNDING (identical on GPU and CPU, bit for bit):
//   q8: scale32 = fround(absmax * fround(1/127)) (a multiplication: correctly rounded everywhere,
//       unlike WGSL's division), then f16 round-to-nearest-even by integer ops. code =
//       round(x / scale) half away from zero, clamped to [-127, 127].
//   q4: ggml Q4_0 style. m = the value of largest |x| with its sign (ties: the positive one),
//       scale = m / -8 (negative when m > 0) rounded to f16 AWAY from zero (|scale| >= |m|/8),
//       codes round(x / scale) clamped to [-8, 7]. The extreme value maps to -8, so all 16 levels
//       are used: the step is |m|/8 instead of |m|/7 for the plain symmetric form, i.e. ~21% lower
//       mean squared error on Gaussian weights (tested). The cost: values of the opposite sign
//       beyond 7.5 steps clamp to +7, with an error up to one step (never more, since |x| <= 8
//       steps) instead of half a step. Chosen as the better format at the same 4.5 bits/weight.
//   Both: the scale is rounded to f16 BEFORE the codes are computed. q8: if the nearest f16 pushed
//   the extreme past the last code (|absmax| > 127.5 |scale16|, which happens for f16-subnormal
//   scales, i.e. blocks with absmax below ~1e-3), the scale is raised by one f16 ulp, so
//   |x - deq| <= |scale|/2 for every value. q4 does the same with the threshold 8 (= rounding up).
//   The round(x / scale) is decided exactly: (q +- 0.5) * scale is exact in f32, so a comparison
//   settles it; the division only gives a first guess. Hence the GPU and CPU bytes are identical,
//   ties included (no platform-dependent rounding is used: not WGSL's division, not
//   pack2x16float's f32->f16 conversion, whose rounding the spec leaves open). All-zero blocks get
//   scale 0 and code 0. Scales are clamped to the f16 range (|w| up to ~8e6 for q8).
//
// NF4 (bitsandbytes' normal-float 4-bit, what PEFT QLoRA uses: 16 levels at normal quantiles
// times the block absmax, usually with blocks of 64 and double-quantized scales) is not
// implemented: it needs its own dtype (DType in src/gpu/tensor.ts has only q4/q8), a lookup table
// in codeAt() and a nearest-level search in encode(); the kernels are otherwise unchanged. Its
// levels are not integers, so dequantized values would no longer be exact products. Loading
// pre-quantized bnb-4bit checkpoints would also need their layout (blocks of 64 over the flattened
// weight, absmax per block, itself 8-bit quantized with double quantization) converted or read.
//
// qlinearForward() is the one entry point for y = x Wᵀ; matmul.ts's linear() routes q4/q8 weights
// (or weight parts) here. For T <= 4 (decode) it uses qlinear_forward_decode (memory bound: 64
// threads stream each weight row); otherwise the tiled qlinear_forward. qlinearBackwardInput() is
// tiled for all T.

import source from '../../shaders/quant.wgsl';
import { f32, halfToFloat, type Gpu } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { byteSize, numel, QUANT_BLOCK, quantCodeBytes, quantRowWidth, shapeStr, type Tensor } from '../gpu/tensor';

export type QuantDType = 'q4' | 'q8';

export const isQuantized = (t: Tensor): boolean => t.dtype === 'q4' || t.dtype === 'q8';

/** Largest T for which qlinearForward uses the decode (gemv) kernel. */
export const QGEMV_MAX_T = 4;

const Q8_MUL = Math.fround(1 / 127);
const Q4_MUL = -0.125;

const labelOf = (t: Tensor): string => t.buffer.label || 'tensor';
const rowsOf = (x: Tensor): number => x.shape.slice(0, -1).reduce((a, b) => a * b, 1);
const colsOf = (x: Tensor): number => x.shape[x.shape.length - 1]!;

function checkQuantShape(what: string, N: number, K: number, name: string): void {
  if (!Number.isInteger(N) || !Number.isInteger(K) || N < 1 || K < 1) {
    throw new Error(`${what}: ${name} has shape [${N}, ${K}]; expected a non-empty 2-D weight`);
  }
}

function quantTensorShape(what: string, q: Tensor): [number, number] {
  if (!isQuantized(q)) throw new Error(`${what}: ${labelOf(q)} is ${q.dtype}, expected q4 or q8`);
  if (q.shape.length !== 2) throw new Error(`${what}: ${labelOf(q)} ${shapeStr(q.shape)} must be 2-D [N, K]`);
  const [N, K] = q.shape as [number, number];
  checkQuantShape(what, N, K, labelOf(q));
  return [N, K];
}

const codesPerWord = (dtype: QuantDType): number => (dtype === 'q4' ? 8 : 4);
const codeWords = (n: number, dtype: QuantDType): number => quantCodeBytes(n, dtype) / 4;

type Entry = 'quantize' | 'dequantize' | 'qlinear_forward' | 'qlinear_forward_decode' | 'qlinear_backward_input';

function pipeline(gpu: Gpu, entry: Entry, dtype: QuantDType): GPUComputePipeline {
  return gpu.pipeline(`${entry}:${dtype}`, () => shaderVariant(source, entry, { Q4: dtype === 'q4' }));
}

// ---- quantize / dequantize ---------------------------------------------------------------------

/** Quantizes an f32 [N, K] tensor on the GPU (one thread per pair of blocks) into a new tensor. */
export function quantize(gpu: Gpu, w: Tensor, dtype: QuantDType, label?: string): Tensor {
  const name = label ?? labelOf(w);
  if (w.dtype !== 'f32') throw new Error(`quantize: ${name} is ${w.dtype}, expected f32`);
  if (dtype !== 'q4' && dtype !== 'q8') throw new Error(`quantize: ${name}: unknown quantized dtype ${String(dtype)}`);
  if (w.shape.length !== 2) throw new Error(`quantize: ${name} ${shapeStr(w.shape)} must be 2-D [N, K]`);
  const [N, K] = w.shape as [number, number];
  checkQuantShape('quantize', N, K, name);
  const q = gpu.tensor([N, K], dtype, label ?? (w.buffer.label ? `${w.buffer.label}.${dtype}` : undefined));
  const Kp = quantRowWidth(K);
  const nblk = (N * Kp) / QUANT_BLOCK;
  gpu.dispatch(
    pipeline(gpu, 'quantize', dtype),
    [w, q],
    gpu.grid(Math.ceil(Math.ceil(nblk / 2) / 64)),
    [nblk, codeWords(N * Kp, dtype), f32(dtype === 'q4' ? Q4_MUL : Q8_MUL), K, Kp],
  );
  return q;
}

/** out[N, K] (f32) = the dequantized weight. */
export function dequantize(gpu: Gpu, q: Tensor, out: Tensor): void {
  const [N, K] = quantTensorShape('dequantize', q);
  if (out.dtype !== 'f32' || numel(out.shape) !== N * K || colsOf(out) !== K) {
    throw new Error(`dequantize: output ${labelOf(out)} ${shapeStr(out.shape)} ${out.dtype} must be f32 [${N}, ${K}]`);
  }
  const Kp = quantRowWidth(K);
  const words = codeWords(N * Kp, q.dtype as QuantDType);
  gpu.dispatch(pipeline(gpu, 'dequantize', q.dtype as QuantDType), [q, out], gpu.grid(Math.ceil(words / 256)), [words, K, Kp]);
}

// CPU twin of the quantize kernel (same operations, so the same bytes).

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

/** f16 bits of an f32 value: round to nearest even, clamped to the finite range. */
export function f32ToHalfBits(v: number): number {
  f32Scratch[0] = Math.min(Math.max(v, -65504), 65504);
  const b = u32Scratch[0]!;
  const sign = (b >>> 16) & 0x8000;
  const a = b & 0x7fffffff;
  if (a < 0x38800000) {
    u32Scratch[0] = a;
    return sign | roundHalfEven(f32Scratch[0]! * 16777216);
  }
  const r = a - 0x38000000;
  return sign | ((r + 0xfff + ((r >>> 13) & 1)) >>> 13);
}

/** Bytes of an [N, K] quantized tensor, exactly as quantize() writes them on the GPU. */
export function quantizeHost(values: Float32Array, N: number, K: number, dtype: QuantDType): Uint8Array {
  checkQuantShape('quantizeHost', N, K, 'values');
  if (values.length !== N * K) throw new Error(`quantizeHost: ${values.length} values for shape [${N}, ${K}]`);
  const out = new Uint8Array(byteSize([N, K], dtype));
  const scales = new DataView(out.buffer, quantCodeBytes(N * quantRowWidth(K), dtype));
  const q4 = dtype === 'q4';
  const [qmin, qmax, limit, mul] = q4 ? [-8, 7, 8, Q4_MUL] : [-127, 127, 127.5, Q8_MUL];
  const codes = new Int32Array(QUANT_BLOCK);
  const Kp = quantRowWidth(K);
  const nblk = (N * Kp) / QUANT_BLOCK;
  // value i of block b: the row's padding reads as zero
  const block = new Float32Array(QUANT_BLOCK);
  for (let b = 0; b < nblk; b++) {
    const base = b * QUANT_BLOCK;
    const row = Math.floor(base / Kp), col = base % Kp;
    for (let i = 0; i < QUANT_BLOCK; i++) block[i] = col + i < K ? values[row * K + col + i]! : 0;
    let ext = 0, best = 0;
    for (let i = 0; i < QUANT_BLOCK; i++) {
      const x = block[i]!;
      const a = Math.abs(x);
      if (a > ext || (a === ext && x > best)) {
        ext = a;
        best = x;
      }
    }
    let h = 0;
    if (ext > 0) {
      h = f32ToHalfBits(Math.fround((q4 ? best : ext) * mul));
      const mag = h & 0x7fff;
      if (ext > limit * halfToFloat(mag) && mag < 0x7bff) h += 1;
    }
    scales.setUint16(2 * b, h, true);
    const s = halfToFloat(h);
    const as = Math.abs(s);
    if (as === 0) {
      codes.fill(0);
    } else {
      // round(|x| / |s|) half up, then the sign: round half away from zero. Exact in f64 without
      // the shader's correction step: for f32 x and f16 s, |x|/|s| is either a half-integer or at
      // least 2^-24 (relative) away from one, and this product errs by ~2^-52.
      const inv = 1 / as;
      const flip = s < 0 ? -1 : 0;
      for (let i = 0; i < QUANT_BLOCK; i++) {
        const x = block[i]!;
        const m = Math.min(Math.floor(Math.abs(x) * inv + 0.5), 255) | 0;
        const sg = (x < 0 ? -1 : 0) ^ flip; // -1: negative code
        const q = (m ^ sg) - sg;
        codes[i] = q < qmin ? qmin : q > qmax ? qmax : q;
      }
    }
    if (q4) {
      for (let i = 0; i < QUANT_BLOCK; i += 2) out[(base + i) >> 1] = (codes[i]! + 8) | ((codes[i + 1]! + 8) << 4);
    } else {
      for (let i = 0; i < QUANT_BLOCK; i++) out[base + i] = codes[i]! & 0xff;
    }
  }
  return out;
}

/** The f32 values of quantized bytes (what every kernel computes with). */
export function dequantizeHost(bytes: Uint8Array, N: number, K: number, dtype: QuantDType): Float32Array {
  checkQuantShape('dequantizeHost', N, K, 'bytes');
  if (bytes.length < byteSize([N, K], dtype)) throw new Error(`dequantizeHost: ${bytes.length} bytes, [${N}, ${K}] ${dtype} needs ${byteSize([N, K], dtype)}`);
  const Kp = quantRowWidth(K);
  const out = new Float32Array(N * K);
  const scales = new DataView(bytes.buffer, bytes.byteOffset + quantCodeBytes(N * Kp, dtype));
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const i = n * Kp + k;
      const c = dtype === 'q4' ? ((bytes[i >> 1]! >> ((i & 1) * 4)) & 15) - 8 : (bytes[i]! << 24) >> 24;
      out[n * K + k] = c * halfToFloat(scales.getUint16(2 * Math.floor(i / QUANT_BLOCK), true));
    }
  }
  return out;
}

// ---- fused products ------------------------------------------------------------------------------

/**
 * y[T, N] (=|+=) scale · x[T, K] · deq(Q)ᵀ, Q [N, K]. opts.ldc / opts.offC place the N output
 * columns inside a wider y (a weight in row parts): y[t, offC + n] at t * ldc + offC + n.
 */
export function qlinearForward(
  gpu: Gpu, x: Tensor, q: Tensor, y: Tensor, accumulate = false, scale = 1,
  opts: { ldc?: number; offC?: number } = {},
): void {
  const [N, K] = quantTensorShape('qlinearForward', q);
  if (x.dtype !== 'f32' || y.dtype !== 'f32') throw new Error(`qlinearForward: input ${labelOf(x)} and output ${labelOf(y)} must be f32`);
  const T = rowsOf(x);
  if (colsOf(x) !== K) throw new Error(`qlinearForward: weight ${labelOf(q)} [${N}, ${K}] has ${K} columns, input ${shapeStr(x.shape)} has ${colsOf(x)}`);
  const ldc = opts.ldc ?? colsOf(y), offC = opts.offC ?? 0;
  if (rowsOf(y) !== T || colsOf(y) !== ldc || offC + N > ldc) {
    throw new Error(`qlinearForward: output ${shapeStr(y.shape)} cannot hold [${T}, ${N}] at column ${offC} (ldc ${ldc}) for input ${shapeStr(x.shape)} and weight ${labelOf(q)} [${N}, ${K}]`);
  }
  if (T === 0) return;
  const dtype = q.dtype as QuantDType;
  const Kp = quantRowWidth(K);
  const params = [T, N, K, Kp, codeWords(N * Kp, dtype), K, ldc, 0, offC, f32(scale), f32(accumulate ? 1 : 0)];
  if (T <= QGEMV_MAX_T) {
    gpu.dispatch(pipeline(gpu, 'qlinear_forward_decode', dtype), [x, q, y], gpu.grid(Math.ceil(N / 4)), params);
  } else {
    gpu.dispatch(pipeline(gpu, 'qlinear_forward', dtype), [x, q, y], [Math.ceil(N / 64), Math.ceil(T / 64)], params);
  }
}

/**
 * dx[T, K] (=|+=) scale · dy[T, N] · deq(Q), Q [N, K]. opts.lda / opts.offA read the N gradient
 * columns from a wider dy (a weight in row parts): dy[t, offA + n] at t * lda + offA + n.
 */
export function qlinearBackwardInput(
  gpu: Gpu, dy: Tensor, q: Tensor, dx: Tensor, accumulate = false, scale = 1,
  opts: { lda?: number; offA?: number } = {},
): void {
  const [N, K] = quantTensorShape('qlinearBackwardInput', q);
  if (dy.dtype !== 'f32' || dx.dtype !== 'f32') throw new Error(`qlinearBackwardInput: ${labelOf(dy)} and ${labelOf(dx)} must be f32`);
  const T = rowsOf(dy);
  const lda = opts.lda ?? colsOf(dy), offA = opts.offA ?? 0;
  if (colsOf(dy) !== lda || offA + N > lda) {
    throw new Error(`qlinearBackwardInput: gradient ${shapeStr(dy.shape)} has no ${N} columns at ${offA} (lda ${lda}) for weight ${labelOf(q)} [${N}, ${K}]`);
  }
  if (rowsOf(dx) !== T || colsOf(dx) !== K) {
    throw new Error(`qlinearBackwardInput: input gradient ${shapeStr(dx.shape)} must be [${T}, ${K}] for weight ${labelOf(q)} [${N}, ${K}]`);
  }
  if (T === 0) return;
  const dtype = q.dtype as QuantDType;
  gpu.dispatch(
    pipeline(gpu, 'qlinear_backward_input', dtype),
    [dy, q, dx],
    [Math.ceil(K / 64), Math.ceil(T / 64)],
    [T, K, N, quantRowWidth(K), codeWords(N * quantRowWidth(K), dtype), lda, K, offA, 0, f32(scale), f32(accumulate ? 1 : 0)],
  );
}
