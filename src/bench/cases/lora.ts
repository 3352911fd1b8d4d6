// LoRA / DoRA layer cases, one list for both uses: tests/kernels.lora.test.ts checks the small ones
// (forward and backward) against the f64 reference, the kernel benchmark times the real ones
// (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { loraBackward, loraForward, loraSavedShapes, type LoraSaved, type LoraWeights } from '../../kernels/lora';
import type { QuantDType } from '../../kernels/quant';
import { filler, type Scale, type Timed } from './timed';

export interface LoraCase {
  name: string;
  /** x [T, K], base weight [N, K], rank r. */
  T: number;
  K: number;
  N: number;
  r: number;
  alpha: number;
  rsLora?: boolean;
  bias: boolean;
  dora: boolean;
  dropout: boolean;
  accDx?: boolean;
  accG?: boolean;
  /** Row split of the base weight into binding parts. */
  parts?: number[];
  workspace?: boolean;
  noDx?: boolean;
  f16?: boolean;
  /** Quantized base weight (K % 32 == 0). */
  quant?: QuantDType;
  bench?: boolean;
}

const ODD = { T: 7, K: 24, N: 40 };
const Q = { T: 7, K: 64, N: 40 };
// Qwen2.5-0.5B's gate_proj at 8 x 512 tokens, rank 16
const REAL = { T: 4096, K: 896, N: 4864, r: 16, alpha: 32, bias: false, dropout: false, bench: true };

export const LORA_CASES: readonly LoraCase[] = [
  { name: 'r3 bias', ...ODD, r: 3, alpha: 8, bias: true, dora: false, dropout: false },
  { name: 'r16 rsLoRA split', ...ODD, r: 16, alpha: 16, rsLora: true, bias: false, dora: false, dropout: false, parts: [17, 23] },
  { name: 'r3 accumulate', ...ODD, r: 3, alpha: 6, bias: true, dora: false, dropout: false, accDx: true, accG: true },
  { name: 'r16 dropout', ...ODD, r: 16, alpha: 32, bias: true, dora: false, dropout: true, accG: true },
  { name: 'one row, no dx', T: 1, K: 24, N: 40, r: 3, alpha: 3, bias: false, dora: false, dropout: false, noDx: true },
  { name: 'DoRA r3 bias', ...ODD, r: 3, alpha: 8, bias: true, dora: true, dropout: false },
  { name: 'DoRA r16 accumulate workspace', ...ODD, r: 16, alpha: 16, rsLora: true, bias: false, dora: true, dropout: false, accDx: true, accG: true, workspace: true },
  { name: 'DoRA r3 dropout bias', ...ODD, r: 3, alpha: 8, bias: true, dora: true, dropout: true, accG: true },
  { name: 'DoRA r16 dropout split', ...ODD, r: 16, alpha: 32, bias: false, dora: true, dropout: true, accDx: true, parts: [16, 24] },
  { name: 'DoRA one row', T: 1, K: 40, N: 33, r: 17, alpha: 17, bias: true, dora: true, dropout: false },
  { name: 'DoRA several tiles', T: 37, K: 24, N: 40, r: 17, alpha: 8, bias: true, dora: true, dropout: true, accDx: true, accG: true },
  { name: 'DoRA q8', ...Q, r: 3, alpha: 8, bias: true, dora: true, dropout: false, quant: 'q8' },
  { name: 'DoRA q4 split dropout', ...Q, r: 16, alpha: 16, bias: false, dora: true, dropout: true, quant: 'q4', parts: [24, 16], accG: true },
  { name: 'LoRA q4', ...Q, r: 16, alpha: 16, bias: true, dora: false, dropout: false, quant: 'q4', accDx: true },
  { name: 'DoRA f16 W', ...ODD, r: 16, alpha: 16, bias: true, dora: true, dropout: false, f16: true },
  { name: 'LoRA f16 W dropout', ...ODD, r: 3, alpha: 16, bias: false, dora: false, dropout: true, f16: true },
  // enough tokens that dA and dB take split-K (700 is no multiple of its chunk)
  { name: 'r16 many tokens accumulate', T: 700, K: 24, N: 40, r: 16, alpha: 32, bias: true, dora: false, dropout: false, accDx: true, accG: true },
  { name: 'DoRA r3 many tokens dropout', T: 700, K: 24, N: 40, r: 3, alpha: 8, bias: false, dora: true, dropout: true },
  { name: 'LoRA', ...REAL, dora: false },
  { name: 'DoRA', ...REAL, dora: true },
];

/** The layer's forward, or its backward (saved tensors from one forward). */
export function loraTimed(gpu: Gpu, c: LoraCase, n: Scale, backward: boolean): Timed {
  const [T, K, N] = [n(c.T), n(c.K), n(c.N)], r = c.r;
  const x = gpu.upload(filler(T * K), [T, K]), w = gpu.upload(filler(N * K), [N, K]), y = gpu.tensor([T, N]);
  const lora: LoraWeights = {
    A: gpu.upload(filler(r * K), [r, K]), B: gpu.upload(filler(N * r), [N, r]), scaling: c.alpha / r,
    ...(c.dora ? { magnitude: gpu.upload(filler(N), [N]) } : {}),
  };
  const saved = Object.fromEntries(Object.entries(loraSavedShapes(T, N, r, c.dora)).map(([k, s]) => [k, gpu.tensor(s)])) as unknown as LoraSaved;
  const dx = gpu.tensor([T, K]), grads = { dA: gpu.tensor([r, K]), dB: gpu.tensor([N, r]), ...(c.dora ? { dMagnitude: gpu.tensor([N]) } : {}) };
  loraForward(gpu, x, w, null, lora, y, saved);
  const base = 2 * T * N * K, adapter = 2 * T * r * (N + K);
  return {
    kernel: `${c.dora ? 'DoRA' : 'LoRA'} linear ${backward ? 'backward' : 'forward'}`,
    shape: `T=${T} ${N}x${K} r=${r}`,
    flops: backward ? base + 2 * adapter : base + adapter,
    run: backward ? () => loraBackward(gpu, y, x, w, lora, saved, dx, grads) : () => loraForward(gpu, x, w, null, lora, y, saved),
    release: () => gpu.release(x, w, y, dx, lora.A, lora.B, lora.magnitude, ...Object.values(saved), ...Object.values(grads)),
  };
}
