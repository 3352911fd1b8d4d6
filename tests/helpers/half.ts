// Random values rounded to f16, for kernels that read f16: the bits to upload and the exact values
// they hold (what the CPU reference should see).
import { halfToFloat } from '../../src/gpu/runtime';
import { floatToHalf } from '../../src/model/safetensors';
import type { Rng } from './check';

export function randomHalf(rng: Rng, n: number, scale = 1): { bits: Uint16Array; values: Float32Array } {
  const bits = Uint16Array.from(rng.randn(n, scale), floatToHalf);
  return { bits, values: Float32Array.from(bits, halfToFloat) };
}
