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
  // an optimizer's arena takes the place of the tensors: the model then reads and frees its views
  const moved = (old: readonly (Tensor | null)[], place: (v: Tensor, g: Tensor) => void) => (v: Tensor, g: Tensor) => {
    place(v, g);
    gpu.release(...old);
  };
  const param = (p: Param) => {
    p.grad ??= gpu.tensor(p.value.shape, 'f32', `${p.name}.grad`);
    const tiedHead = p === model.embed && model.lmHead.tied;
    const t: TrainableTensor = {
      name: p.name, value: p.value, grad: p.grad, decay: !/norm|bias/.test(p.name), lrScale: 1,
      relocate: moved([p.value, p.grad], (v, g) => {
        p.value = v;
        p.grad = g;
        if (tiedHead) Object.assign(model.lmHead, { weight: v, grad: model.lmHead.grad ? g : null });
      }),
      setGradEnabled: (on) => {
        p.grad = on ? t.grad : null;
        if (tiedHead) model.lmHead.grad = p.grad;
      },
    };
    out.push(t);
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
      const weight: TrainableTensor = {
        name: `${s.name}.weight`, value: w, grad: s.weightGrad, decay: true, lrScale: 1,
        relocate: moved([w, s.weightGrad], (v, g) => Object.assign(s, { weight: v, weightGrad: g })),
        setGradEnabled: (on) => { s.weightGrad = on ? weight.grad : null; },
      };
      out.push(weight);
      if (s.bias) {
        s.biasGrad ??= gpu.tensor(s.bias.shape, 'f32', `${s.name}.bias.grad`);
        const bias: TrainableTensor = {
          name: `${s.name}.bias`, value: s.bias, grad: s.biasGrad, decay: false, lrScale: 1,
          relocate: moved([s.bias, s.biasGrad], (v, g) => Object.assign(s, { bias: v, biasGrad: g })),
          setGradEnabled: (on) => { s.biasGrad = on ? bias.grad : null; },
        };
        out.push(bias);
      }
    }
  }
  if (embeddings) {
    param(model.finalNorm);
    if (!model.lmHead.tied) {
      const w = weightParts(model.lmHead.weight)[0] as Tensor;
      const grad = gpu.tensor(w.shape, 'f32', 'lm_head.weight.grad');
      model.lmHead.grad = grad;
      const head: TrainableTensor = {
        name: 'lm_head.weight', value: w, grad, decay: true, lrScale: 1,
        relocate: moved([w, grad], (v, g) => Object.assign(model.lmHead, { weight: v, grad: g })),
        setGradEnabled: (on) => { model.lmHead.grad = on ? head.grad : null; },
      };
      out.push(head);
    } else {
      model.lmHead.grad = model.embed.grad;
    }
  }
  return out;
}
