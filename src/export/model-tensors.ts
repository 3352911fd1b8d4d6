// The tensors of a model as a Hugging Face checkpoint names them, read back from the GPU (after
// full or freeze fine-tuning, the weights there are the trained ones).

import { dequantizeWeight } from '../model/dequant';
import type { LinearSite } from '../model/linear';
import { layerParams, type Model, type Param } from '../model/model';
import type { TensorSource } from './shards';

export function modelTensors(model: Model): TensorSource[] {
  const gpu = model.gpu;
  const out: TensorSource[] = [];
  const plain = (p: Param) => out.push({ name: p.name, shape: p.value.shape, read: () => gpu.readF32(p.value) });
  const { vocab: V, hidden: D } = model.spec;
  out.push({ name: model.embed.name, shape: [V, D], read: () => dequantizeWeight(gpu, model.embed.value, V, D) });
  for (const l of model.layers) for (const p of layerParams(l)) plain(p);
  // modules, not sites: Phi-3's qkv_proj / gate_up_proj are stacked back from their parts
  for (const m of model.modules()) {
    const stacked = (get: (site: LinearSite) => Promise<Float32Array>) => async () => concat(await Promise.all(m.parts.map((p) => get(p.site))));
    out.push({ name: `${m.name}.weight`, shape: [m.outFeatures, m.inFeatures], read: stacked((s) => dequantizeWeight(gpu, s.weight, s.outFeatures, s.inFeatures)) });
    if (m.parts[0]!.site.bias) out.push({ name: `${m.name}.bias`, shape: [m.outFeatures], read: stacked((s) => gpu.readF32(s.bias!)) });
  }
  plain(model.finalNorm);
  if (!model.lmHead.tied) out.push({ name: 'lm_head.weight', shape: [V, D], read: () => dequantizeWeight(gpu, model.lmHead.weight, V, D) });
  // a vision-language model's frozen tower and merger, as loaded
  for (const t of model.vision?.namedTensors() ?? []) out.push({ name: t.name, shape: t.shape, read: () => gpu.readF32(t.tensor) });
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

function concat(parts: Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
