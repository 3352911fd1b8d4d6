// Per-Gpu scratch buffers for kernels that need temporary storage but whose signature has no
// workspace argument (or where the caller left it out). One buffer per (Gpu, key), grown on
// demand and kept for the Gpu's lifetime; its contents are undefined between calls.
//
// A buffer that is replaced by a bigger one is freed at the next flush: commands recorded before
// the replacement may still use it and are not submitted yet.

import type { Gpu } from '../gpu/runtime';
import type { DType, Tensor } from '../gpu/tensor';

const cache = new WeakMap<Gpu, Map<string, Tensor>>();

/** A tensor of `elements` 4-byte values, valid until the next scratch() call with the same key. */
export function scratch(gpu: Gpu, key: string, elements: number, dtype: DType = 'f32'): Tensor {
  let map = cache.get(gpu);
  if (!map) cache.set(gpu, (map = new Map()));
  const n = Math.max(1, Math.ceil(elements));
  let t = map.get(key);
  if (!t || t.buffer.size < n * 4) {
    if (t) gpu.releaseAtFlush(t);
    // grow geometrically so that slowly growing requests do not reallocate every call
    const grown = t ? Math.min(Math.ceil((t.buffer.size / 4) * 1.5), Math.floor(gpu.caps.limits.maxBufferSize / 4)) : 0;
    t = gpu.tensor([Math.max(n, grown)], 'f32', `scratch:${key}`);
    map.set(key, t);
  }
  return { buffer: t.buffer, shape: [n], dtype, offset: 0 };
}
