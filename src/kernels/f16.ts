// f16 tensors on any device, shader-f16 or not: values are stored as pairs packed in u32 words and
// read or written with unpack2x16float / pack2x16float (core WGSL), math in f32. Kernels that read
// f16 weights (matmul, embedding, DoRA's row norms) bind them as array<u32> and select the f16
// reader with a variant constant; PiSSA writes its residual W - s·B·A into f16 base weights with
// addToF16 (src/model/pissa.ts).

import source from '../../shaders/f16.wgsl';
import type { Gpu } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';

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
