// A loaded model back to one Hugging Face model.safetensors (every tensor under its HF name, read
// from the GPU as it is now; quantized weights dequantized; no adapter merged). For large models
// use writeSharded(modelTensors(model)) from src/export, which never holds more than a shard.

import { modelTensors } from './model-tensors';
import type { Model } from '../model/model';
import { encodeSafetensors, type TensorToWrite } from '../model/safetensors';

export interface SaveOptions {
  /** Stored dtype (F32 by default; F16 / BF16 halve the file). */
  dtype?: 'F32' | 'F16' | 'BF16';
}

export async function saveModelSafetensors(model: Model, opts: SaveOptions = {}): Promise<Uint8Array> {
  const tensors: Record<string, TensorToWrite> = {};
  for (const t of modelTensors(model)) tensors[t.name] = { dtype: opts.dtype ?? 'F32', shape: t.shape, data: await t.read() };
  return encodeSafetensors(tensors, { format: 'pt' });
}
