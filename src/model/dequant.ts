// A base weight back on the host as f32, whatever its GPU format (DoRA init, merging, export).

import type { Gpu } from '../gpu/runtime';
import { weightParts, type Weight } from '../kernels/matmul';
import { dequantize } from '../kernels/quant';

export async function dequantizeWeight(gpu: Gpu, w: Weight, N: number, K: number): Promise<Float32Array> {
  const out = new Float32Array(N * K);
  let row = 0;
  for (const part of weightParts(w)) {
    const n = part.shape[0]!;
    let data: Float32Array;
    if (part.dtype === 'q4' || part.dtype === 'q8') {
      const f = gpu.tensor([n, K], 'f32');
      dequantize(gpu, part, f);
      data = await gpu.readF32(f);
      gpu.release(f);
    } else data = await gpu.readF32(part);
    out.set(data, row * K);
    row += n;
  }
  return out;
}
