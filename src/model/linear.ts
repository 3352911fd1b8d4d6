// One linear layer of the model as training sees it: a frozen or trainable base weight (f32,
// f16 or quantized), an optional bias, and an optional LoRA/DoRA or OFT adapter. Forward and
// backward side by side; activations the backward needs are kept in `saved`.

import type { Gpu } from '../gpu/runtime';
import type { Tensor } from '../gpu/tensor';
import { gemm, linear, linearBackwardInput, linearBackwardWeight, weightParts, type Weight } from '../kernels/matmul';
import { loraBackward, loraForward, loraSavedShapes, type LoraDropout, type LoraGrads, type LoraSaved, type LoraWeights } from '../kernels/lora';
import { oftBackward, oftForward, oftSavedShapes, type OftGrads, type OftSaved, type OftWeights } from '../kernels/oft';

export interface LinearSite {
  /** HF module path, e.g. "model.layers.0.self_attn.q_proj". */
  name: string;
  inFeatures: number;
  outFeatures: number;
  weight: Weight;
  bias: Tensor | null;
  lora: LoraWeights | null;
  loraGrads: LoraGrads | null;
  /** OFT: the input rotated block by block before the base weight (never together with lora). */
  oft: OftWeights | null;
  oftGrads: OftGrads | null;
  /** Full fine-tuning / freeze: gradients of the base weight and bias. */
  weightGrad: Tensor | null;
  biasGrad: Tensor | null;
}

/** Per-site activations kept from forward for backward. */
export type SiteSaved = LoraSaved | OftSaved | null;

export function allocSiteSaved(gpu: Gpu, site: LinearSite, T: number): SiteSaved {
  if (!site.lora && !site.oft) return null;
  const shapes = site.lora
    ? loraSavedShapes(T, site.outFeatures, site.lora.A.shape[0]!, !!site.lora.magnitude)
    : oftSavedShapes(site.inFeatures, site.oft!.blockSize);
  const saved: Record<string, Tensor> = {};
  for (const [k, shape] of Object.entries(shapes)) saved[k] = gpu.tensor(shape, 'f32', `${site.name}.${k}`);
  return saved as unknown as SiteSaved;
}

/** A [T] vector of ones, for bias broadcast (y += 1·bᵀ) and bias gradients (db = 1ᵀ·dY) as products. */
export function onesFor(gpu: Gpu, T: number): Tensor {
  return gpu.upload(new Float32Array(T).fill(1), [T, 1]);
}

/**
 * y = x·Wᵀ + b (+ LoRA), or (x·R)·Wᵀ + b with OFT; `dropout` (training only) applies to the LoRA
 * input, as PEFT's lora_dropout. `withBias` false leaves the bias to the caller's next kernel (RoPE adds q/k's).
 */
export function siteForward(
  gpu: Gpu, site: LinearSite, x: Tensor, y: Tensor, saved: SiteSaved, ones: Tensor, dropout?: LoraDropout, withBias = true,
): void {
  const bias = withBias ? site.bias : null;
  if (site.lora) {
    loraForward(gpu, x, site.weight, bias, site.lora, y, saved as LoraSaved, { dropout });
    return;
  }
  if (site.oft) oftForward(gpu, x, site.weight, site.oft, y, saved as OftSaved);
  else linear(gpu, x, site.weight, y);
  if (bias) {
    const T = x.shape[0]!;
    gemm(gpu, { a: ones, b: bias, c: y, M: T, N: site.outFeatures, K: 1, beta: 1 });
  }
}

/**
 * dx (=|+=) dY·W (+ LoRA); adapter and base gradients accumulated into their grad tensors when
 * `accumulateGrads` (gradient accumulation), else overwritten. `dropout`: the forward's.
 */
export function siteBackward(
  gpu: Gpu,
  site: LinearSite,
  x: Tensor,
  dy: Tensor,
  dx: Tensor | null,
  saved: SiteSaved,
  ones: Tensor,
  opts: { accumulateDx: boolean; accumulateGrads: boolean; dropout?: LoraDropout | undefined },
): void {
  if (site.lora) {
    loraBackward(gpu, dy, x, site.weight, site.lora, saved as LoraSaved, dx, site.loraGrads!, opts);
  } else if (site.oft) {
    oftBackward(gpu, dy, x, site.weight, site.oft, saved as OftSaved, dx, site.oftGrads!, opts);
  } else if (dx) {
    linearBackwardInput(gpu, dy, site.weight, dx, opts.accumulateDx);
  }
  if (site.weightGrad) {
    if (weightParts(site.weight).length !== 1) throw new Error(`${site.name}: training a weight split across bindings is not supported`);
    linearBackwardWeight(gpu, dy, x, site.weightGrad, opts.accumulateGrads);
  }
  if (site.biasGrad) {
    const T = x.shape[0]!;
    gemm(gpu, { a: ones, b: dy, c: site.biasGrad, M: 1, N: site.outFeatures, K: T, transA: true, lda: 1, beta: opts.accumulateGrads ? 1 : 0 });
  }
}
