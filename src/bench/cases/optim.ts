// Optimizer cases: the tensor sizes one update or gradient norm runs over, one list for both uses:
// tests/kernels.optim.test.ts checks the small ones against torch's formulas, the kernel benchmark
// times the real ones (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { adamw, gradNormSquared } from '../../kernels/optim';
import { filler, type Scale, type Timed } from './timed';

export interface OptimCase {
  kernel: 'adamw' | 'adamw clipped' | 'gradNormSquared';
  /** Element counts of the tensors (each one AdamW dispatch; one norm over all). */
  sizes: number[];
  bench?: boolean;
}

/** LoRA r16 on every linear layer of Qwen2.5-0.5B: 24 layers of q, k, v, o, gate, up, down (A then B). */
const QWEN_LORA: number[] = Array.from({ length: 24 }, () =>
  [[896, 896], [128, 896], [128, 896], [896, 896], [4864, 896], [4864, 896], [896, 4864]].flatMap(([N, K]) => [16 * K!, N! * 16])).flat();

export const OPTIM_CASES: readonly OptimCase[] = [
  { kernel: 'adamw', sizes: [1, 1000, 4099] },
  { kernel: 'adamw clipped', sizes: [7, 300, 2049] },
  { kernel: 'gradNormSquared', sizes: [1, 255, 257, 4097, 12345, 4_200_001] }, // the last one hits the workgroup cap
  { kernel: 'adamw', sizes: QWEN_LORA, bench: true },
  { kernel: 'gradNormSquared', sizes: QWEN_LORA, bench: true },
];

export const optimCase = (kernel: OptimCase['kernel']): OptimCase => OPTIM_CASES.find((c) => c.kernel === kernel && !c.bench)!;

export function optimTimed(gpu: Gpu, c: OptimCase, n: Scale): Timed {
  const sizes = c.sizes.map(n);
  const total = sizes.reduce((a, b) => a + b, 0);
  const grads = sizes.map((s) => gpu.upload(filler(s), [s]));
  const shape = `${sizes.length} tensors, ${total} values`;
  if (c.kernel === 'gradNormSquared') {
    const out = gpu.tensor([1]);
    return { kernel: c.kernel, shape, flops: 2 * total, bytes: 4 * total, run: () => gradNormSquared(gpu, grads, out), release: () => gpu.release(out, ...grads) };
  }
  const state = sizes.map((s) => [gpu.upload(filler(s), [s]), gpu.tensor([s]), gpu.tensor([s])] as const);
  for (const [, m, v] of state) {
    gpu.zero(m);
    gpu.zero(v);
  }
  const opts = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };
  return {
    kernel: c.kernel,
    shape,
    flops: 12 * total,
    bytes: 7 * 4 * total, // reads p, g, m, v; writes p, m, v
    run: () => state.forEach(([p, m, v], i) => adamw(gpu, p, grads[i]!, m, v, opts)),
    release: () => gpu.release(...grads, ...state.flat()),
  };
}
