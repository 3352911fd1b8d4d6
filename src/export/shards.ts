// Writing a Hugging Face checkpoint in shards of at most `maxBytes` (export_size), with
// model.safetensors.index.json when there is more than one, as save_pretrained does. Tensors are
// produced one at a time and each shard is written before the next is gathered, so the host holds
// at most one shard.

import { encodeSafetensors, type TensorToWrite } from '../model/safetensors';

export interface TensorSource {
  name: string;
  shape: readonly number[];
  read(): Promise<Float32Array>;
}

export type WriteFile = (path: string, data: Uint8Array | string) => Promise<void>;

/** export_size is in GB (10^9 bytes), as LLaMA-Factory's `export_size`. */
export async function writeSharded(sources: readonly TensorSource[], write: WriteFile, opts: { maxBytes: number; dtype: 'F32' | 'F16' | 'BF16' }): Promise<string[]> {
  const bpe = opts.dtype === 'F32' ? 4 : 2;
  const groups: TensorSource[][] = [[]];
  let size = 0;
  for (const s of sources) {
    const bytes = s.shape.reduce((a, b) => a * b, 1) * bpe;
    if (size > 0 && size + bytes > opts.maxBytes) {
      groups.push([]);
      size = 0;
    }
    groups[groups.length - 1]!.push(s);
    size += bytes;
  }
  const n = groups.length;
  const names = groups.map((_, i) => (n === 1 ? 'model.safetensors' : `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`));
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let i = 0; i < n; i++) {
    const tensors: Record<string, TensorToWrite> = {};
    for (const s of groups[i]!) {
      tensors[s.name] = { dtype: opts.dtype, shape: s.shape, data: await s.read() };
      weightMap[s.name] = names[i]!;
      total += s.shape.reduce((a, b) => a * b, 1) * bpe;
    }
    await write(names[i]!, encodeSafetensors(tensors, { format: 'pt' }));
  }
  if (n > 1) {
    await write('model.safetensors.index.json', JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
    names.push('model.safetensors.index.json');
  }
  return names;
}
