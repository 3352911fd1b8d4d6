// f16 tensors on any device, shader-f16 or not: values are stored as pairs packed in u32 words and
// read or written with unpack2x16float / pack2x16float (core WGSL), math in f32. Kernels that read
// f16 weights (matmul, embedding, DoRA's row norms) bind them as array<u32> and select the f16
// reader with a variant constant; PiSSA writes its residual W - s·B·A into f16 base weights with
// addToF16 (src/model/pissa.ts); the f16 tier's products take their activation and gradient
// operands from toScaledF16.

import source from '../../shaders/f16.wgsl';
import type { Gpu } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';
import { scratch } from './scratch';

const WG = 256;

/** w = f16(w + delta), elementwise; w f16, delta f32 of the same size. */
export function addToF16(gpu: Gpu, w: Tensor, delta: Tensor): void {
  if (w.dtype !== 'f16') throw new Error(`addToF16: w must be f16, not ${w.dtype}`);
  if (delta.dtype !== 'f32') throw new Error(`addToF16: delta must be f32, not ${delta.dtype}`);
  const n = numel(w.shape);
  if (numel(delta.shape) !== n) throw new Error(`addToF16: w ${shapeStr(w.shape)} and delta ${shapeStr(delta.shape)} differ in size`);
  if (w.buffer === delta.buffer) throw new Error('addToF16: w must not share a buffer with delta');
  if (n === 0) return;
  gpu.dispatch(gpu.pipeline('add_to_f16', () => shaderVariant(source, 'add_to_f16')), [w, delta], gpu.grid(Math.ceil(Math.ceil(n / 2) / WG)), [n]);
}

/** An f16 copy of an f32 tensor scaled by 2^e, and a one-element f32 view holding 2^-e (on the GPU). */
export interface ScaledF16 {
  value: Tensor;
  descale: Tensor;
}

/** Index of the inverse scale in the stats scratch (DESCALE in f16.wgsl), 1 KiB in: a valid binding offset. */
const DESCALE = 256;

/**
 * f16(x · 2^e), e chosen on the GPU so that max |x| · 2^e lies in [2^14, 2^15): no readback, and
 * gradients of any size keep f16's 11 significant bits. The result lives in per-device scratch
 * under `key` (valid until the next call with that key; the GPU runs calls in order).
 */
export function toScaledF16(gpu: Gpu, x: Tensor, key: string): ScaledF16 {
  if (x.dtype !== 'f32') throw new Error(`toScaledF16: x must be f32, not ${x.dtype}`);
  const n = numel(x.shape);
  // whole vec4s of halves: the f16 GEMM reads its operands four at a time
  const value: Tensor = { ...scratch(gpu, `f16.${key}`, Math.ceil(n / 4) * 2, 'f16'), shape: [...x.shape] };
  const stats = scratch(gpu, `f16.${key}.stats`, DESCALE + 1);
  const descale: Tensor = { buffer: stats.buffer, shape: [1], dtype: 'f32', offset: DESCALE * 4 };
  if (n === 0) return { value, descale };
  const groups = Math.min(WG, Math.ceil(n / WG));
  gpu.dispatch(gpu.pipeline('absmax_partial', () => shaderVariant(source, 'absmax_partial')), [x, stats], [groups], [n, groups]);
  gpu.dispatch(gpu.pipeline('to_f16_scaled', () => shaderVariant(source, 'to_f16_scaled')), [x, stats, value],
    gpu.grid(Math.ceil(Math.ceil(n / 2) / WG)), [n, groups]);
  return { value, descale };
}
