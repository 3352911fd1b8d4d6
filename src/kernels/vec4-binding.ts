// Binding an f32 or f16 tensor as an array of 4-element vectors (kernels that load whole vectors
// when the layout allows and single elements otherwise): the range is rounded up to whole vectors,
// so the last elements of a tensor whose size is no multiple of 4 stay addressable.

import type { Binding } from '../gpu/runtime';
import { numel, type Tensor } from '../gpu/tensor';

export function vec4Binding(t: Tensor): Binding {
  if (t.dtype !== 'f32' && t.dtype !== 'f16') throw new Error(`vec4Binding: ${t.dtype} tensors are not bound as vectors`);
  const size = Math.ceil(numel(t.shape) / 4) * 4 * (t.dtype === 'f16' ? 2 : 4);
  return { buffer: t.buffer, offset: t.offset, size: Math.min(size, t.buffer.size - t.offset) };
}

/** Whether every row of both operands starts on a vector and holds whole vectors. */
export function vec4Aligned(...sizes: number[]): boolean {
  return sizes.every((x) => x % 4 === 0);
}
