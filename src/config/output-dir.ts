// Where a run writes, checked before anything loads (Node): output_dir (export_dir) must be a
// folder this process can write, and must not be a folder the command reads. Full fine-tuning
// saves model*.safetensors and config.json into output_dir, LoRA the tokenizer files beside its
// adapter, export the merged shards while it still reads the model's: in the model folder each
// would write over the base model. An output_dir inside the model folder is fine (models are read
// from the top of their folder only); a model inside output_dir is not when it sits in a folder
// the run writes or deletes (checkpoint-N, pissa_init).

import type { CrucibleConfig } from './schema';
import { ConfigError } from './load';

/** Tokenizer and config files copied next to a saved model, so the folder loads on its own. */
export const MODEL_SIDE_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja'];

/** Files a LoRA run writes at the top of output_dir (the base model's config.json is not copied). */
const LORA_OUTPUT_FILES = ['adapter_config.json', 'adapter_model.safetensors', ...MODEL_SIDE_FILES.filter((f) => f !== 'config.json')];

const WRITE_ERRORS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOENT: 'the file system does not let folders be created there',
  ENOSPC: 'no space left on the device',
};

/** Folders inside output_dir that a run writes or deletes (checkpoints, save_total_limit, overwrite_output_dir). */
const RUN_FOLDER = /^(checkpoint-\d+|pissa_init)$/;

export async function checkOutputDir(c: CrucibleConfig, command: 'train' | 'export'): Promise<void> {
  const { realpath, stat, readdir, mkdtemp, rmdir } = await import('node:fs/promises');
  const { dirname, join, relative, resolve, sep } = await import('node:path');
  const key = command === 'train' ? 'output_dir' : 'export_dir';
  const given = command === 'train' ? c.output_dir : c.export_dir;
  if (!given) return;
  const out = resolve(given);

  // The deepest folder of `out` that exists: where it gets created, and how symlinks resolve.
  let existing = out;
  for (;;) {
    const s = await stat(existing).catch(() => null);
    if (s?.isDirectory()) break;
    if (s) {
      throw new ConfigError([existing === out ? `${key} ${given} is a file, not a folder` : `cannot create ${key} ${given}: ${existing} is a file, not a folder`]);
    }
    if (dirname(existing) === existing) break;
    existing = dirname(existing);
  }
  try {
    await rmdir(await mkdtemp(join(existing, '.crucible-write-check-')));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = (code && WRITE_ERRORS[code]) ?? code ?? (e as Error).message;
    const where = existing === out ? '' : ` (it would be created in ${existing})`;
    throw new ConfigError([`${key} ${given} is not writable${where}: ${why}; choose a folder you can write to`]);
  }
  const outReal = join(await realpath(existing), relative(existing, out));

  const inputs: Array<[string, string]> = [['model_name_or_path', c.model_name_or_path ?? '']];
  if (command === 'train') inputs.push(['ref_model', c.ref_model ?? '']);
  else for (const a of c.adapter_name_or_path ?? []) inputs.push(['adapter_name_or_path', a]);
  for (const [inputKey, path] of inputs) {
    // Hub ids are read from the Hugging Face cache
    if (!path || !(await stat(path).then((s) => s.isDirectory(), () => false))) continue;
    const input = await realpath(path);
    if (input === outReal) {
      const problem = overwrites(command, c, await readdir(input));
      if (problem) throw new ConfigError([`${key} ${given} is the ${inputKey} folder ${path}: ${problem}; choose another ${key}`]);
    }
    // '' when the same folder, '..' when outside it
    const first = relative(outReal, input).split(sep)[0]!;
    if (command === 'train' && RUN_FOLDER.test(first)) {
      throw new ConfigError([`${inputKey} ${path} is inside ${key} ${given}, in ${first}, which this run writes or deletes; copy it out first or choose another ${key}`]);
    }
  }
}

/** What writing the command's output into the input folder would overwrite, or null for nothing. */
function overwrites(command: 'train' | 'export', c: CrucibleConfig, present: string[]): string | null {
  if (command === 'export') return 'the merged model would be written over the files it is read from';
  if (c.finetuning_type !== 'lora' && c.finetuning_type !== 'oft') return `${c.finetuning_type} fine-tuning would save the trained model over the model there`;
  const hit = LORA_OUTPUT_FILES.filter((f) => present.includes(f));
  return hit.length ? `the LoRA run would write over its ${hit.join(', ')}` : null;
}
