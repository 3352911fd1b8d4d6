// One GPU per test file (vitest runs files in separate processes).
import { nodeGpu } from '../../src/gpu/node';
import type { Gpu } from '../../src/gpu/runtime';
import { numel, type Tensor } from '../../src/gpu/tensor';

let shared: Promise<Gpu> | null = null;

export function testGpu(): Promise<Gpu> {
  shared ??= nodeGpu({ warn: () => {} });
  return shared;
}

/** An f32 or f16 tensor filled with NaN, so any element a kernel fails to write shows up. */
export function poisoned(gpu: Gpu, shape: readonly number[], dtype: 'f32' | 'f16' = 'f32'): Tensor {
  const t = gpu.tensor(shape, dtype);
  gpu.write(t, dtype === 'f32' ? new Float32Array(numel(shape)).fill(NaN) : new Uint16Array(numel(shape)).fill(0x7e00));
  return t;
}
