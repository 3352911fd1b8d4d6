// Full and freeze fine-tuning: give base weights gradients and list them for the optimizer, with
// HF Trainer's grouping (no weight decay on biases and norm weights).

import type { TrainableTensor } from './adapter';
import type { Model, Param } from './model';
import { weightParts } from '../kernels/matmul';
import type { Tensor } from '../gpu/tensor';
import { layerParams, SITE_KINDS } from './model';

/**
 * Makes the given layers trainable (all of them for full fine-tuning); with `embeddings`, also the
 * embedding table, final norm and output head (LLaMA-Factory's full mode trains everything).
 */
export function makeTrainable(model: Model, layers: readonly number[], embeddings: boolean): TrainableTensor[] {
  const gpu = model.gpu;
  const out: TrainableTensor[] = [];
  const param = (p: Param) => {
    p.grad ??= gpu.tensor(p.value.shape, 'f32', `${p.name}.grad`);
    out.push({ name: p.name, value: p.value, grad: p.grad, decay: !/norm|bias/.test(p.name), lrScale: 1 });
  };
  if (embeddings) param(model.embed);
  const wanted = new Set(layers);
  for (const l of model.layers) {
    if (!wanted.has(l.index)) continue;
    for (const p of layerParams(l)) param(p);
    for (const kind of SITE_KINDS) {
      const s = l.sites[kind];
      if (!s) continue;
      const parts = weightParts(s.weight);
      const w = parts[0]!;
      if (parts.length !== 1 || w.dtype !== 'f32') {
        const quantized = w.dtype === 'q4' || w.dtype === 'q8' ? ': a quantized base (quantization_bit, or a GPTQ/AWQ checkpoint) trains with finetuning_type: lora' : '';
        throw new Error(`${s.name}: full/freeze training needs f32 weights in one binding (this one is ${w.dtype}${parts.length > 1 ? ', split' : ''})${quantized}`);
      }
      s.weightGrad ??= gpu.tensor(w.shape, 'f32', `${s.name}.weight.grad`);
      out.push({ name: `${s.name}.weight`, value: w, grad: s.weightGrad, decay: true, lrScale: 1 });
      if (s.bias) {
        s.biasGrad ??= gpu.tensor(s.bias.shape, 'f32', `${s.name}.bias.grad`);
        out.push({ name: `${s.name}.bias`, value: s.bias, grad: s.biasGrad, decay: false, lrScale: 1 });
      }
    }
  }
  if (embeddings) {
    param(model.finalNorm);
    if (!model.lmHead.tied) {
      const w = weightParts(model.lmHead.weight)[0] as Tensor;
      const grad = gpu.tensor(w.shape, 'f32', 'lm_head.weight.grad');
      model.lmHead.grad = grad;
      out.push({ name: 'lm_head.weight', value: w, grad, decay: true, lrScale: 1 });
    } else {
      model.lmHead.grad = model.embed.grad;
    }
  }
  return out;
}
