// `crucible export`: merge a PEFT LoRA/DoRA adapter into its base model on the host, tensor by
// tensor (export.ts), and write a Hugging Face model folder (safetensors shards of export_size GB, config,
// tokenizer files), as `llamafactory-cli export`. Adapters trained elsewhere (PEFT,
// LLaMA-Factory) merge the same way.

import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MODEL_SIDE_FILES, type CrucibleConfig } from '../config';
import type { ExportHooks, ExportRunResult } from './jobs';
import { Checkpoint, type ModelFiles } from '../model/weights';
import { writeFileAtomic } from '../files/atomic-node';
import { exportMerged, readAdapter } from './export';
import { resolveModelFiles } from './node-model';
import { loadModelTokenizer } from './session';
import { templateFromConfig } from '../data';

const adapterIn = async (files: ModelFiles) => readAdapter(await files.readText('adapter_config.json'), await files.open('adapter_model.safetensors'));

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
  const loaded = await Promise.all(adapters.map(async (a) => adapterIn(await resolveModelFiles(a, { onStatus: status }))));

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

  // `template:` (checked before any merging) goes into the tokenizer files, as LLaMA-Factory's export does
  const template = config.template ? templateFromConfig(config, await loadModelTokenizer(base)) : undefined;
  const written = await exportMerged({ base, adapters: loaded, ...(template ? { template } : {}) }, { write: (p, d) => writeFileAtomic(join(out, p), d), maxBytes: (config.export_size ?? 5) * 1e9 }, hooks);
  return { exportDir: out, files: written.map((f) => join(out, f)) };
}
