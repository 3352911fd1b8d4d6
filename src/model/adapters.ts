// Which PEFT adapter a saved adapter_config.json holds: LoRA / DoRA (adapter.ts) or OFT
// (oft-adapter.ts), loaded onto a model.

import { parseJsonFile } from '../data/json-file';
import { Adapter, type PeftAdapter } from './adapter';
import type { Model } from './model';
import { OftAdapter } from './oft-adapter';
import type { ByteSource } from './safetensors';

export async function loadAdapter(model: Model, configJson: string, weights: ByteSource): Promise<PeftAdapter> {
  const cfg = parseJsonFile<Record<string, unknown>>(configJson, weights.name.replace(/[^/\\]*$/, 'adapter_config.json'));
  if (cfg.peft_type === 'OFT') return OftAdapter.load(model, cfg, weights);
  if (cfg.peft_type !== 'LORA') throw new Error(`${weights.name}: adapter type ${String(cfg.peft_type)} is not supported (LORA and OFT are)`);
  return Adapter.load(model, configJson, weights);
}
