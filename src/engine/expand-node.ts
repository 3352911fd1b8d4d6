// `crucible expand`: LLaMA Pro block expansion of a local or Hub model into a new folder that
// loads on its own (weights, config.json with the new layer count, the tokenizer files).

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MODEL_SIDE_FILES } from '../config';
import { expandBlocks, type ExpansionResult } from '../export/block-expansion';
import { writeFileAtomic } from '../files/atomic-node';
import { resolveModelFiles } from './node-model';

export interface ExpandOptions {
  numExpand: number;
  /** Shard size in GB (10^9 bytes), as export_size. */
  shardGb: number;
  onStatus?: (message: string) => void;
}

export async function expandModel(model: string, outputDir: string, opts: ExpandOptions): Promise<ExpansionResult & { outputDir: string }> {
  const base = await resolveModelFiles(model, { onStatus: opts.onStatus });
  await mkdir(outputDir, { recursive: true });
  const write = (p: string, d: Uint8Array | string) => writeFileAtomic(join(outputDir, p), d);
  opts.onStatus?.(`expanding ${model} by ${opts.numExpand} layers`);
  const result = await expandBlocks(base, opts.numExpand, write, { maxBytes: opts.shardGb * 1e9 });
  for (const f of MODEL_SIDE_FILES) {
    if (f === 'config.json' || !(await base.exists(f))) continue;
    await write(f, await base.readText(f));
    result.files.push(f);
  }
  return { ...result, outputDir };
}
