// Merging a PEFT LoRA / DoRA adapter into its base model on the CPU (PEFT's merge_and_unload):
//   W' = W + s * B A                                   (s = alpha / r, or alpha / sqrt(r) with rsLoRA)
//   W' = m / ||W + s B A||_row * (W + s B A)           (DoRA: m is lora_magnitude_vector)
// Tensors keep their dtype (F32 / F16 / BF16). Also overlays fully trained weights (freeze / full
// fine-tuning checkpoints) on the base. The result is one model.safetensors held in memory, so this
// is offered only for models that fit.

import { encodeSafetensors, openSafetensors, readF32, type SafetensorsFile, type TensorToWrite } from '../src/model/safetensors';
import type { ModelFiles } from '../src/model/weights';

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
  const cfg = input.adapterConfig ? (JSON.parse(input.adapterConfig) as { r: number; lora_alpha: number; use_rslora?: boolean; use_dora?: boolean }) : null;
  const adapter = input.adapterWeights ? await memOf(input.adapterWeights, 'adapter_model.safetensors') : null;
  const trained = input.trainedWeights ? await memOf(input.trainedWeights, 'trained_weights.safetensors') : null;
  const scale = cfg ? (cfg.use_rslora ? cfg.lora_alpha / Math.sqrt(cfg.r) : cfg.lora_alpha / cfg.r) : 0;
  let merged = 0;
  for (const shard of await shards(input.base)) {
    for (const [name, info] of shard.tensors) {
      if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') throw new Error(`${name}: cannot merge a ${info.dtype} tensor`);
      let w = trained?.tensors.has(name) ? await readF32(trained, name) : await readF32(shard, name);
      const key = `base_model.model.${name.replace(/\.weight$/, '')}`;
      if (adapter && cfg && name.endsWith('.weight') && adapter.tensors.has(`${key}.lora_A.weight`)) {
        const A = await readF32(adapter, `${key}.lora_A.weight`);
        const B = await readF32(adapter, `${key}.lora_B.weight`);
        const [N, K] = info.shape as [number, number];
        const r = A.length / K;
        const magKey = `${key}.lora_magnitude_vector`;
        const m = cfg.use_dora ? await readF32(adapter, adapter.tensors.has(magKey) ? magKey : `${magKey}.weight`) : null;
        const mergedW = new Float32Array(w.length);
        const row = new Float64Array(K);
        for (let n = 0; n < N; n++) {
          row.fill(0);
          for (let j = 0; j < r; j++) {
            const b = scale * B[n * r + j]!;
            if (b === 0) continue;
            for (let k = 0; k < K; k++) row[k]! += b * A[j * K + k]!;
          }
          let ss = 0;
          for (let k = 0; k < K; k++) {
            const v = w[n * K + k]! + row[k]!;
            mergedW[n * K + k] = v;
            ss += v * v;
          }
          if (m) {
            const f = m[n]! / Math.sqrt(ss);
            for (let k = 0; k < K; k++) mergedW[n * K + k]! *= f;
          }
        }
        w = mergedW;
        merged++;
      }
      out[name] = { dtype: info.dtype, shape: info.shape, data: w };
    }
  }
  if (adapter && merged === 0) throw new Error('the adapter matches no weight of the base model (wrong base model?)');
  return encodeSafetensors(out, { format: 'pt' });
}
