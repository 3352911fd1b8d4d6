// PEFT's merge of a LoRA / DoRA adapter into a base weight, on the host (browser-safe: the CLI's
// export and the app's merged-model download share it):
//   W' = W + s·B·A   (s = alpha/r, or alpha/sqrt(r) with rsLoRA)
//   W' = m / ||W + s·B·A||_row · (W + s·B·A)   (DoRA, m = lora_magnitude_vector)

import { checkNotUnconvertedPissa } from '../model/adapter';
import { readF32, type SafetensorsFile } from '../model/safetensors';

export interface LoraDelta {
  A: Float32Array; // [r, K]
  B: Float32Array; // [N, r]
  r: number;
  scaling: number;
  magnitude?: Float32Array; // [N] (DoRA)
}

/** W + s·B·A, or DoRA's m / ||W + s·B·A||_row · (W + s·B·A), as PEFT's merge computes it. */
export function mergeLora(W: Float32Array, N: number, K: number, d: LoraDelta): Float32Array {
  const out = Float32Array.from(W);
  const { A, B, r, scaling: s } = d;
  const row = new Float64Array(K);
  for (let n = 0; n < N; n++) {
    row.fill(0);
    for (let j = 0; j < r; j++) {
      const b = B[n * r + j]! * s;
      if (b === 0) continue;
      for (let k = 0; k < K; k++) row[k]! += b * A[j * K + k]!;
    }
    let sq = 0;
    for (let k = 0; k < K; k++) {
      const v = W[n * K + k]! + row[k]!;
      out[n * K + k] = v;
      sq += v * v;
    }
    if (d.magnitude) {
      const g = d.magnitude[n]! / Math.sqrt(sq);
      for (let k = 0; k < K; k++) out[n * K + k]! *= g;
    }
  }
  return out;
}

/** A PEFT adapter on the host: its adapter_config.json and safetensors file. */
export interface AdapterOnHost {
  config: Record<string, unknown>;
  file: SafetensorsFile;
}

/** The delta for a base weight name ("model.layers.0.self_attn.q_proj.weight"), if the adapter has one. */
export async function deltaFor(ad: AdapterOnHost, weightName: string): Promise<LoraDelta | null> {
  const module = `base_model.model.${weightName.replace(/\.weight$/, '')}`;
  const aKey = `${module}.lora_A.weight`;
  if (!ad.file.tensors.has(aKey)) return null;
  checkNotUnconvertedPissa(ad.config, 'adapter_config.json');
  const r = Number(ad.config.r);
  const alpha = Number(ad.config.lora_alpha);
  const scaling = ad.config.use_rslora ? alpha / Math.sqrt(r) : alpha / r;
  const magKey = `${module}.lora_magnitude_vector`;
  return {
    A: await readF32(ad.file, aKey),
    B: await readF32(ad.file, `${module}.lora_B.weight`),
    r,
    scaling,
    ...(ad.config.use_dora ? { magnitude: await readF32(ad.file, ad.file.tensors.has(magKey) ? magKey : `${magKey}.weight`) } : {}),
  };
}

