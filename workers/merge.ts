// Merging a PEFT LoRA / DoRA adapter into its base model on the CPU (PEFT's merge_and_unload):
//   W' = W + s * B A                                   (s = alpha / r, or alpha / sqrt(r) with rsLoRA)
//   W' = m / ||W + s B A||_row * (W + s B A)           (DoRA: m is lora_magnitude_vector)
// Tensors keep their dtype (F32 / F16 / BF16). Also overlays fully trained weights (freeze / full
// fine-tuning checkpoints) on the base. The result is one model.safetensors held in memory, so this
// is offered only for models that fit.

import { encodeSafetensors, openSafetensors, readF32, type SafetensorsFile, type TensorToWrite } from '../src/model/safetensors';
import type { ModelFiles } from '../src/model/weights';
import { deltaFor, mergeLora } from '../src/export/lora-merge';

export interface MergeInput {
  base: ModelFiles;
  adapterConfig?: string;
  adapterWeights?: Uint8Array;
  /** Fully trained tensors (HF names) replacing the base ones. */
  trainedWeights?: Uint8Array;
}

async function shards(files: ModelFiles): Promise<SafetensorsFile[]> {
  if (await files.exists('model.safetensors.index.json')) {
    const idx = JSON.parse(await files.readText('model.safetensors.index.json')) as { weight_map: Record<string, string> };
    const names = [...new Set(Object.values(idx.weight_map))];
    return Promise.all(names.map(async (n) => openSafetensors(await files.open(n))));
  }
  return [await openSafetensors(await files.open('model.safetensors'))];
}

const memOf = (bytes: Uint8Array, name: string) => openSafetensors({ name, size: bytes.length, read: async (o, n) => bytes.subarray(o, o + n) });

/** Bytes of the base checkpoint (what a merge holds in memory, roughly twice). */
export async function baseBytes(files: ModelFiles): Promise<number> {
  return (await shards(files)).reduce((a, s) => a + s.source.size, 0);
}

export async function mergeModel(input: MergeInput): Promise<Uint8Array> {
  const out: Record<string, TensorToWrite> = {};
  const cfg = input.adapterConfig ? (JSON.parse(input.adapterConfig) as Record<string, unknown>) : null;
  const adapter = input.adapterWeights ? await memOf(input.adapterWeights, 'adapter_model.safetensors') : null;
  const trained = input.trainedWeights ? await memOf(input.trainedWeights, 'trained_weights.safetensors') : null;
  let merged = 0;
  for (const shard of await shards(input.base)) {
    for (const [name, info] of shard.tensors) {
      if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') throw new Error(`${name}: cannot merge a ${info.dtype} tensor`);
      let w = trained?.tensors.has(name) ? await readF32(trained, name) : await readF32(shard, name);
      const delta = adapter && cfg && name.endsWith('.weight') ? await deltaFor({ config: cfg, file: adapter }, name) : null;
      if (delta) {
        const [N, K] = info.shape as [number, number];
        w = mergeLora(w, N, K, delta);
        merged++;
      }
      out[name] = { dtype: info.dtype, shape: info.shape, data: w };
    }
  }
  if (adapter && merged === 0) throw new Error('the adapter matches no weight of the base model (wrong base model?)');
  return encodeSafetensors(out, { format: 'pt' });
}
