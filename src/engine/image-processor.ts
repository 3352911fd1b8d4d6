// The image processor of a vision-language checkpoint: its preprocessor_config.json (patch_size,
// merge_size, temporal_patch_size, min/max pixels, mean/std) when present, else Qwen2-VL's defaults
// with the tower's own patch sizes. The patches must be what the tower reads: a mismatch is an error.
import { qwen2vlImageConfig, type Qwen2VLImageConfig } from '../data/image/qwen2vl';
import { parseJsonFile } from '../data/json-file';
import { specFromConfig, type VisionSpec } from '../model/spec';
import type { ModelFiles } from '../model/weights';

export async function loadImageProcessor(files: ModelFiles, vision: VisionSpec | null): Promise<Qwen2VLImageConfig | null> {
  if (!vision) return null;
  const name = 'preprocessor_config.json';
  const json = (await files.exists(name)) ? parseJsonFile<Record<string, unknown>>(await files.readText(name), `${files.name}/${name}`) : {};
  const cfg = qwen2vlImageConfig({ patch_size: vision.patchSize, merge_size: vision.mergeSize, temporal_patch_size: vision.temporalPatch, ...json });
  const pairs: [string, number, number][] = [
    ['patch_size', cfg.patchSize, vision.patchSize],
    ['merge_size', cfg.mergeSize, vision.mergeSize],
    ['temporal_patch_size', cfg.temporalPatchSize, vision.temporalPatch],
  ];
  for (const [key, got, want] of pairs) {
    if (got !== want) throw new Error(`${files.name}/${name}: ${key} ${got} does not match the vision tower's ${want} (config.json vision_config)`);
  }
  return cfg;
}

/** The image processor from the checkpoint's config.json alone (no weights loaded): for the data preview. */
export async function imageProcessorOf(files: ModelFiles): Promise<Qwen2VLImageConfig | null> {
  if (!(await files.exists('config.json'))) return null;
  const config = parseJsonFile<Record<string, unknown>>(await files.readText('config.json'), `${files.name}/config.json`);
  if (config.vision_config === undefined) return null;
  return loadImageProcessor(files, specFromConfig(config).vision);
}
