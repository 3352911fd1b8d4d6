// The tensors of a model as a Hugging Face checkpoint names them, read back from the GPU (after
// full or freeze fine-tuning, the weights there are the trained ones).

import { dequantizeWeight } from '../model/dequant';
import { SITE_KINDS, type Model } from '../model/model';
import type { TensorSource } from './shards';

export function modelTensors(model: Model): TensorSource[] {
  const gpu = model.gpu;
  const out: TensorSource[] = [];
  const plain = (p: { name: string; value: { shape: readonly number[] } & object }) =>
    out.push({ name: p.name, shape: p.value.shape, read: () => gpu.readF32(p.value as never) });
  const { vocab: V, hidden: D } = model.spec;
  out.push({ name: model.embed.name, shape: [V, D], read: () => dequantizeWeight(gpu, model.embed.value, V, D) });
  for (const l of model.layers) {
    for (const p of [l.attnNorm, l.qNorm, l.kNorm, l.attnPostNorm, l.mlpNorm, l.mlpPostNorm]) if (p) plain(p);
    for (const kind of SITE_KINDS) {
      const s = l.sites[kind];
      out.push({ name: `${s.name}.weight`, shape: [s.outFeatures, s.inFeatures], read: () => dequantizeWeight(gpu, s.weight, s.outFeatures, s.inFeatures) });
      if (s.bias) out.push({ name: `${s.name}.bias`, shape: s.bias.shape, read: () => gpu.readF32(s.bias!) });
    }
  }
  plain(model.finalNorm);
  if (!model.lmHead.tied) out.push({ name: 'lm_head.weight', shape: [V, D], read: () => dequantizeWeight(gpu, model.lmHead.weight, V, D) });
  return out.sort((a, b) => a.name.localeCompare(b.name));
}
