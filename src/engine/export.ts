// Merging as a job, whatever the host: a base model's tensors read one at a time, fully trained
// tensors (freeze / full fine-tuning) put in their place, each PEFT adapter's delta added
// (export/lora-merge.ts), and the result written in shards with the model's side files. The CLI
// writes a folder (export-node.ts); the app's Worker gathers the files in memory for a download.

import { MODEL_SIDE_FILES } from '../config';
import { withChatTemplate, type ChatTemplate } from '../data';
import { parseJsonFile } from '../data/json-file';
import { deltaFor, mergeLora, type AdapterOnHost } from '../export/lora-merge';
import { oftMerged } from '../export/oft-merge';
import { writeSharded, type TensorSource, type WriteFile } from '../export/shards';
import { openSafetensors, readF32, type ByteSource, type SafetensorsFile } from '../model/safetensors';
import { Checkpoint, type ModelFiles } from '../model/weights';
import type { RunHooks } from './jobs';

export interface MergeSources {
  base: ModelFiles;
  /** Fully trained tensors (HF names) in place of the base ones. */
  trained?: SafetensorsFile;
  /** PEFT LoRA / DoRA / OFT adapters, merged in order. */
  adapters: readonly AdapterOnHost[];
  /** The chat template the tokenizer files get (config `template:`), as LLaMA-Factory's export saves it. */
  template?: ChatTemplate;
}

/** A PEFT adapter (adapter_config.json + adapter_model.safetensors) ready to merge. */
export async function readAdapter(configJson: string, weights: ByteSource): Promise<AdapterOnHost> {
  const where = weights.name.replace(/[^/\\]*$/, 'adapter_config.json');
  const config = parseJsonFile<Record<string, unknown>>(configJson, where);
  if (config.peft_type !== 'LORA' && config.peft_type !== 'OFT') throw new Error(`${where}: adapter type ${String(config.peft_type)} is neither LORA nor OFT`);
  return { config, file: await openSafetensors(weights) };
}

/**
 * Writes the merged model through `write` in shards of at most `maxBytes`, stored as the base's
 * widest float type, then the base's side files; returns the paths written.
 */
export async function exportMerged(src: MergeSources, out: { write: WriteFile; maxBytes: number }, hooks: RunHooks = {}): Promise<string[]> {
  const ckpt = await Checkpoint.open(src.base);
  // LLaMA-Factory refuses this too ("Cannot merge adapters to a quantized model")
  if (ckpt.prequantized) throw new Error(`${src.base.name} is a ${ckpt.prequantized.method.toUpperCase()} checkpoint: merging into it would bake in its rounding; export from the unquantized model`);
  const names = ckpt.names().sort();
  const unused = new Set(src.adapters.flatMap((a) => [...a.file.tensors.keys()]));
  const sources: TensorSource[] = names.map((name) => {
    const info = ckpt.info(name);
    return {
      name,
      shape: info.shape,
      read: async () => {
        hooks.signal?.throwIfAborted();
        let w = src.trained?.tensors.has(name) ? await readF32(src.trained, name) : await ckpt.read(name);
        for (const ad of src.adapters) {
          const merged = ad.config.peft_type === 'OFT' ? await oftMerged(ad, name, w, info.shape) : null;
          if (merged) {
            w = merged;
            unused.delete(`base_model.model.${name.replace(/\.weight$/, '')}.oft_R.weight`);
            continue;
          }
          const d = await deltaFor(ad, name);
          if (!d) continue;
          const [N, K] = info.shape as [number, number];
          if (d.A.length !== d.r * K || d.B.length !== N * d.r) throw new Error(`adapter tensors for ${name} do not fit its shape [${N}, ${K}]`);
          w = mergeLora(w, N, K, d);
          for (const k of [...unused]) if (k.startsWith(`base_model.model.${name.replace(/\.weight$/, '')}.`)) unused.delete(k);
        }
        return w;
      },
    };
  });
  const dtypes = new Set(names.map((n) => ckpt.info(n).dtype));
  const dtype = dtypes.has('BF16') ? 'BF16' : dtypes.has('F16') ? 'F16' : 'F32';
  hooks.onStatus?.(`merging ${src.adapters.length} adapter(s) into ${names.length} tensors (${dtype})`);
  const written = await writeSharded(sources, out.write, { maxBytes: out.maxBytes, dtype });
  if (unused.size) throw new Error(`adapter tensors match no weight of ${src.base.name}: ${[...unused].slice(0, 3).join(', ')}`);
  for (const f of MODEL_SIDE_FILES) {
    if (await src.base.exists(f)) {
      const text = await src.base.readText(f);
      await out.write(f, src.template ? withChatTemplate(f, text, src.template) : text);
      written.push(f);
    }
  }
  return written;
}

/** Bytes of the base checkpoint's tensors as stored. */
export async function checkpointBytes(files: ModelFiles): Promise<number> {
  const ckpt = await Checkpoint.open(files);
  return ckpt.names().reduce((n, name) => {
    const info = ckpt.info(name);
    return n + info.end - info.begin;
  }, 0);
}
