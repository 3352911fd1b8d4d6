// `crucible export`: merge a PEFT LoRA/DoRA adapter into its base model on the host, tensor by
// tensor, and write a Hugging Face model folder (safetensors shards of export_size GB, config,
// tokenizer files), as `llamafactory-cli export`. Adapters trained elsewhere (PEFT,
// LLaMA-Factory) merge the same way.

import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MODEL_SIDE_FILES, type CrucibleConfig } from '../config';
import type { ExportHooks, ExportRunResult } from './jobs';
import { parseJsonFile } from '../data/json-file';
import { resolveModelFiles } from './node-model';
import { openSafetensors } from '../model/safetensors';
import { deltaFor, mergeLora, type AdapterOnHost } from '../export/lora-merge';
import { Checkpoint, type ModelFiles } from '../model/weights';
import { writeSharded, type TensorSource } from '../export/shards';
import { writeFileAtomic } from '../files/atomic-node';

async function readAdapter(files: ModelFiles): Promise<AdapterOnHost> {
  const config = parseJsonFile<Record<string, unknown>>(await files.readText('adapter_config.json'), `${files.name}/adapter_config.json`);
  if (config.peft_type !== 'LORA') throw new Error(`${files.name}: adapter type ${String(config.peft_type)} is not LORA`);
  return { config, file: await openSafetensors(await files.open('adapter_model.safetensors')) };
}

export async function exportModel(config: CrucibleConfig, hooks: ExportHooks): Promise<ExportRunResult> {
  const status = hooks.onStatus ?? (() => {});
  if (!config.model_name_or_path) throw new Error('model_name_or_path is required');
  if (!config.export_dir) throw new Error('export_dir is required');
  if (config.quantization_bit) throw new Error('quantization_bit: merging into a quantized base would bake in its rounding; export from the unquantized model');
  const adapters = config.adapter_name_or_path ?? [];
  const out = config.export_dir;
  await mkdir(out, { recursive: true });
  const base = await resolveModelFiles(config.model_name_or_path, { onStatus: status, revision: config.model_revision, cacheDir: config.cache_dir });
  const ckpt = await Checkpoint.open(base);
  const loaded = await Promise.all(adapters.map(async (a) => readAdapter(await resolveModelFiles(a, { onStatus: status }))));

  if (hooks.adapterOnly) {
    if (adapters.length !== 1) throw new Error('an adapter-only export needs exactly one adapter_name_or_path');
    const dir = adapters[0]!;
    const ad = loaded[0]!;
    for (const key of ad.file.tensors.keys()) {
      const weight = key.replace(/^base_model\.model\./, '').replace(/\.(lora_A|lora_B)\.weight$|\.lora_magnitude_vector(\.weight)?$/, '.weight');
      if (!ckpt.has(weight)) throw new Error(`${dir}: ${key} adapts ${weight}, which ${config.model_name_or_path} does not have`);
    }
    const written: string[] = [];
    for (const f of await readdir(dir)) {
      if (f === 'adapter_config.json' || f === 'adapter_model.safetensors' || MODEL_SIDE_FILES.includes(f)) {
        await writeFileAtomic(join(out, f), await readFile(join(dir, f)));
        written.push(join(out, f));
      }
    }
    return { exportDir: out, files: written };
  }

  const names = ckpt.names().sort();
  const unused = new Set(loaded.flatMap((a) => [...a.file.tensors.keys()]));
  const sources: TensorSource[] = names.map((name) => {
    const info = ckpt.info(name);
    return {
      name,
      shape: info.shape,
      read: async () => {
        hooks.signal?.throwIfAborted();
        let w = await ckpt.read(name);
        for (const ad of loaded) {
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
  status(`merging ${loaded.length} adapter(s) into ${names.length} tensors (${dtype})`);
  const written = await writeSharded(sources, (p, d) => writeFileAtomic(join(out, p), d), { maxBytes: (config.export_size ?? 5) * 1e9, dtype });
  if (unused.size) throw new Error(`adapter tensors match no weight of ${config.model_name_or_path}: ${[...unused].slice(0, 3).join(', ')}`);
  for (const f of MODEL_SIDE_FILES) {
    if (await base.exists(f)) {
      await writeFileAtomic(join(out, f), await base.readText(f));
      written.push(f);
    }
  }
  return { exportDir: out, files: written.map((f) => join(out, f)) };
}
