// Checkpoints that are already quantized (config.json `quantization_config`): GPTQ and AWQ linear
// layers are stored as packed integer codes (`qweight`), packed zero points (`qzeros`), f16
// `scales` per group of input columns and, for GPTQ, the group of each input column (`g_idx`).
// The Checkpoint shows each such layer as an ordinary `<name>.weight` [N, K] whose rows are
// dequantized on read (w = scale * (q - zero)), so loading, quantizing to Crucible's own q4/q8,
// merging and export need no second path. Every other method is refused by name.

import { DataError } from '../data/errors';
import type { TensorInfo } from './safetensors';

export interface PrequantizedScheme {
  method: 'gptq' | 'awq';
  bits: 2 | 4 | 8;
  /** Input columns per scale/zero group (the whole row when the checkpoint says -1). */
  groupSize: number;
  /** GPTQ's original ("v1") format stores every zero point minus one. */
  zeroMinusOne: boolean;
}

/** What each refused method is, for the message. */
const REFUSED: Record<string, string> = {
  aqlm: 'AQLM (additive vector codebooks)',
  hqq: 'HQQ (half-quadratic quantization)',
  eetq: 'EETQ (int8 weight-only CUDA kernels)',
  bitsandbytes: 'bitsandbytes (pre-quantized NF4/int8 weights)',
  fp8: 'FP8 weights',
  fbgemm_fp8: 'FBGEMM FP8 weights',
  'compressed-tensors': 'compressed-tensors (llm-compressor)',
  torchao: 'torchao',
  quanto: 'optimum-quanto',
  vptq: 'VPTQ (vector post-training quantization)',
  higgs: 'HIGGS',
  spqr: 'SpQR',
  bitnet: 'BitNet ternary weights',
  mxfp4: 'MXFP4 (gpt-oss)',
  'auto-round': 'AutoRound',
  exl2: 'ExLlamaV2 EXL2',
};

const SUPPORTED = 'Crucible loads GPTQ (2/4/8-bit) and AWQ (4-bit GEMM) pre-quantized checkpoints; use the unquantized model, with quantization_bit: 4 or 8 for QLoRA';

/** The checkpoint's pre-quantization, null when it has none; refuses what Crucible cannot read. */
export function prequantizedScheme(config: Record<string, unknown>, where: string): PrequantizedScheme | null {
  const q = config.quantization_config as Record<string, unknown> | undefined;
  if (q === undefined || q === null) return null;
  const at = `${where}: quantization_config`;
  if (typeof q !== 'object') throw new DataError(`${at} must be an object, got ${JSON.stringify(q)}`);
  const method = String(q.quant_method ?? '').toLowerCase();
  if (method in REFUSED) throw new DataError(`${at}: quant_method ${method}: ${REFUSED[method]} checkpoints are not supported. ${SUPPORTED}`);
  if (method !== 'gptq' && method !== 'awq') throw new DataError(`${at}: quant_method ${JSON.stringify(q.quant_method ?? null)} is not supported. ${SUPPORTED}`);
  const bits = Number(q.bits ?? q.w_bit);
  const group = Number(q.group_size ?? q.q_group_size ?? 128);
  if (!Number.isInteger(group) || (group < 1 && group !== -1)) throw new DataError(`${at}: group_size ${JSON.stringify(q.group_size)} is not a positive integer or -1`);
  if (method === 'awq') {
    const version = String(q.version ?? 'gemm').toLowerCase();
    if (version !== 'gemm') throw new DataError(`${at}: AWQ version ${version}: only the GEMM packing is supported (GEMV and Marlin layouts are not). ${SUPPORTED}`);
    if (bits !== 4) throw new DataError(`${at}: AWQ with ${q.bits ?? q.w_bit} bits: AWQ checkpoints are 4-bit. ${SUPPORTED}`);
    if (q.zero_point === false) throw new DataError(`${at}: AWQ without zero points (zero_point: false) is not supported. ${SUPPORTED}`);
    return { method, bits: 4, groupSize: group, zeroMinusOne: false };
  }
  if (bits !== 2 && bits !== 4 && bits !== 8) {
    throw new DataError(`${at}: GPTQ with ${q.bits} bits: ${bits === 3 ? '3-bit codes straddle 32-bit words, which is not supported' : 'not a GPTQ bit width'}. ${SUPPORTED}`);
  }
  const format = String(q.checkpoint_format ?? 'gptq').toLowerCase();
  if (format !== 'gptq' && format !== 'gptq_v2') throw new DataError(`${at}: GPTQ checkpoint_format ${format} (a kernel-specific repacking) is not supported. ${SUPPORTED}`);
  return { method, bits, groupSize: group, zeroMinusOne: format === 'gptq' };
}

/** The stored parts of one quantized linear layer. */
export interface PackedLinear {
  /** `<layer>.weight`, the name the layer shows. */
  name: string;
  N: number;
  K: number;
  qweight: TensorInfo;
  qzeros: TensorInfo;
  scales: TensorInfo;
  gIdx: TensorInfo | null;
}

const PARTS = ['qweight', 'qzeros', 'scales', 'g_idx'] as const;

/** Whether a stored tensor is a part of a packed layer (hidden behind its `.weight`). */
export const isPackedPart = (name: string): boolean => PARTS.some((p) => name.endsWith(`.${p}`));

/**
 * The packed layers among a checkpoint's tensors, with their shapes checked against the scheme
 * (a mismatch is a corrupt or mislabelled checkpoint).
 */
export function packedLinears(scheme: PrequantizedScheme, tensors: Map<string, TensorInfo>, origin: string): Map<string, PackedLinear> {
  const out = new Map<string, PackedLinear>();
  const perWord = 32 / scheme.bits;
  for (const [name, qweight] of tensors) {
    if (!name.endsWith('.qweight')) continue;
    const layer = name.slice(0, -'.qweight'.length);
    const part = (p: string): TensorInfo => {
      const t = tensors.get(`${layer}.${p}`);
      if (!t) throw new DataError(`${origin}: ${layer} has a qweight but no ${p}: a ${scheme.method.toUpperCase()} layer needs qweight, qzeros and scales`);
      return t;
    };
    const qzeros = part('qzeros'), scales = part('scales');
    const gIdx = tensors.get(`${layer}.g_idx`) ?? null;
    for (const t of [qweight, qzeros]) if (t.dtype !== 'I32') throw new DataError(`${origin}: ${t.name} is ${t.dtype}; packed codes are I32`);
    if (scales.dtype !== 'F16' && scales.dtype !== 'BF16' && scales.dtype !== 'F32') throw new DataError(`${origin}: ${scales.name} is ${scales.dtype}; scales are floating point`);
    const [a = 0, b = 0] = qweight.shape;
    // GPTQ packs along the input (K) dimension, AWQ along the output (N) dimension
    const [N, K] = scheme.method === 'gptq' ? [b, a * perWord] : [b * perWord, a];
    const groups = scheme.groupSize === -1 ? 1 : Math.ceil(K / scheme.groupSize);
    const expect = (t: TensorInfo, shape: number[]) => {
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new DataError(`${origin}: ${t.name} has shape [${t.shape}], expected [${shape}] for a ${scheme.bits}-bit ${scheme.method.toUpperCase()} layer [${N}, ${K}] with group_size ${scheme.groupSize}`);
      }
    };
    if (scheme.method === 'gptq' && gIdx) expect(gIdx, [K]);
    const gptqGroups = scheme.method === 'gptq' && gIdx ? scales.shape[0]! : groups;
    expect(scales, [gptqGroups, N]);
    expect(qzeros, [gptqGroups, N / perWord]);
    out.set(`${layer}.weight`, { name: `${layer}.weight`, N, K, qweight, qzeros, scales, gIdx });
  }
  return out;
}

/** The stored bytes of a packed layer's parts, as read from the file. */
export interface PackedData {
  qweight: Int32Array;
  qzeros: Int32Array;
  scales: Float32Array;
  gIdx: Int32Array | null;
}

/** Rows [r0, r1) of the layer's weight [N, K], dequantized to f32. */
export function dequantizeRows(scheme: PrequantizedScheme, layer: PackedLinear, data: PackedData, r0: number, r1: number): Float32Array {
  const { N, K } = layer;
  const { bits } = scheme;
  const perWord = 32 / bits, mask = (1 << bits) - 1;
  const nWords = N / perWord;
  const zeroOffset = scheme.zeroMinusOne ? 1 : 0;
  // AWQ's GEMM packing interleaves the 8 nibbles of a word: nibble i holds column 8c + AWQ_ORDER[i]
  const shiftOf = scheme.method === 'awq' ? (n: number) => 4 * AWQ_NIBBLE[n % 8]! : (n: number) => bits * (n % perWord);
  const groupOf = (k: number) => (data.gIdx ? data.gIdx[k]! : scheme.groupSize === -1 ? 0 : Math.floor(k / scheme.groupSize));
  const out = new Float32Array((r1 - r0) * K);
  for (let n = r0; n < r1; n++) {
    const zShift = shiftOf(n);
    const row = out.subarray((n - r0) * K, (n - r0 + 1) * K);
    for (let k = 0; k < K; k++) {
      const g = groupOf(k);
      const z = ((data.qzeros[g * nWords + Math.floor(n / perWord)]! >>> zShift) & mask) + zeroOffset;
      const q = scheme.method === 'gptq'
        ? (data.qweight[Math.floor(k / perWord) * N + n]! >>> (bits * (k % perWord))) & mask
        : (data.qweight[k * nWords + Math.floor(n / perWord)]! >>> zShift) & mask;
      row[k] = data.scales[g * N + n]! * (q - z);
    }
  }
  return out;
}

/** For column 8c + j, the nibble of the AWQ word that holds it (the inverse of AWQ's order 0,2,4,6,1,3,5,7). */
const AWQ_NIBBLE = [0, 4, 1, 5, 2, 6, 3, 7];

/** Interpret raw little-endian I32 tensor bytes. */
export function int32s(bytes: Uint8Array): Int32Array {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Int32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
}
