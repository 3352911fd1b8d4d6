// `crucible preview`: a config's examples as training will see them. Needs only the tokenizer
// (no GPU): the model folder is resolved for its tokenizer files.

import type { CrucibleConfig } from '../config';
import type { PreviewOptions, PreviewResult } from './jobs';
import { nodeFileAccess } from '../data/node';
import { hubDatasetAccess } from '../hub/datasets';
import { previewWindow } from '../data/preview';
import { imageProcessorOf } from './image-processor';
import { resolveModelFiles } from './node-model';
import { loadModelTokenizer } from './session';

export async function previewDataset(config: CrucibleConfig, opts: PreviewOptions): Promise<PreviewResult> {
  if (!config.model_name_or_path) throw new Error('model_name_or_path is required (its tokenizer renders the examples)');
  const files = await resolveModelFiles(config.model_name_or_path, {
    ...(opts.onStatus ? { onStatus: opts.onStatus } : {}),
    revision: config.model_revision,
    cacheDir: config.cache_dir,
  });
  const tokenizer = await loadModelTokenizer(files);
  const preview = await previewWindow(
    config,
    { tokenizer, imageProcessor: await imageProcessorOf(files), ...nodeFileAccess(), ...hubDatasetAccess(), ...(opts.onStatus ? { log: opts.onStatus } : {}) },
    { offset: opts.offset, count: opts.count },
  );
  opts.onStatus?.(`data: ${preview.total} training examples`);
  return { examples: preview.examples, total: preview.total };
}
