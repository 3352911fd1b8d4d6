// Where a run writes: output_dir must be writable and must not be the model folder it reads
// (full fine-tuning would overwrite the base model), checked before anything loads.
import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkOutputDir, configFromObject, ConfigError } from '../src/config';
import { main } from '../src/cli/main';
import { Readable } from 'node:stream';

/** A model folder as a full fine-tune or a Hub download leaves it. */
function modelFolder(files = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']): string {
  const dir = mkdtempSync(join(tmpdir(), 'model-'));
  for (const f of files) writeFileSync(join(dir, f), '{}');
  return dir;
}

const config = (extra: Record<string, unknown>) => configFromObject({ do_train: true, dataset: 'a', ...extra }).config;

async function problem(c: ReturnType<typeof config>, command: 'train' | 'export' = 'train'): Promise<string> {
  try {
    await checkOutputDir(c, command);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('output_dir and the model folder', () => {
  it('full and freeze fine-tuning into the model folder are refused', async () => {
    const model = modelFolder();
    expect(await problem(config({ model_name_or_path: model, finetuning_type: 'full', output_dir: model }))).toBe(
      `output_dir ${model} is the model_name_or_path folder ${model}: full fine-tuning would save the trained model over the model there; choose another output_dir`,
    );
    expect(await problem(config({ model_name_or_path: model, finetuning_type: 'freeze', output_dir: `${model}/./` }))).toMatch(/freeze fine-tuning would save the trained model over the model there/);
  });

  it('the same folder through a symlink or a relative path', async () => {
    const model = modelFolder();
    const link = join(mkdtempSync(join(tmpdir(), 'links-')), 'out');
    symlinkSync(model, link);
    expect(await problem(config({ model_name_or_path: model, finetuning_type: 'full', output_dir: link }))).toMatch(/is the model_name_or_path folder/);
    const parent = join(model, '..');
    const cwd = process.cwd();
    process.chdir(parent);
    try {
      expect(await problem(config({ model_name_or_path: model, finetuning_type: 'full', output_dir: model.slice(parent.length + 1) }))).toMatch(/is the model_name_or_path folder/);
    } finally {
      process.chdir(cwd);
    }
  });

  it('LoRA into the model folder is refused when it would write over its files', async () => {
    const model = modelFolder();
    expect(await problem(config({ model_name_or_path: model, output_dir: model }))).toMatch(/the LoRA run would write over its tokenizer\.json, tokenizer_config\.json; choose another output_dir$/);
    const bare = modelFolder(['config.json', 'model.safetensors']);
    await expect(checkOutputDir(config({ model_name_or_path: bare, output_dir: bare }), 'train')).resolves.toBeUndefined();
  });

  it('an output_dir inside the model folder is fine (models are read from the top of their folder)', async () => {
    const model = modelFolder();
    await expect(checkOutputDir(config({ model_name_or_path: model, finetuning_type: 'full', output_dir: join(model, 'runs/full') }), 'train')).resolves.toBeUndefined();
  });

  it('a model inside output_dir is refused only in a folder the run writes or deletes', async () => {
    const out = mkdtempSync(join(tmpdir(), 'out-'));
    const ckpt = join(out, 'checkpoint-30');
    mkdirSync(ckpt);
    expect(await problem(config({ model_name_or_path: ckpt, finetuning_type: 'full', output_dir: out }))).toBe(
      `model_name_or_path ${ckpt} is inside output_dir ${out}, in checkpoint-30, which this run writes or deletes; copy it out first or choose another output_dir`,
    );
    const kept = join(out, 'base');
    mkdirSync(kept);
    await expect(checkOutputDir(config({ model_name_or_path: kept, finetuning_type: 'full', output_dir: out }), 'train')).resolves.toBeUndefined();
  });

  it('ref_model counts too; a Hub id is not a folder here', async () => {
    const ref = modelFolder();
    expect(await problem(config({ model_name_or_path: 'Qwen/Qwen3-0.6B', stage: 'dpo', finetuning_type: 'full', ref_model: ref, output_dir: ref }))).toMatch(/is the ref_model folder/);
    const out = mkdtempSync(join(tmpdir(), 'out-'));
    await expect(checkOutputDir(config({ model_name_or_path: 'Qwen/Qwen3-0.6B', finetuning_type: 'full', output_dir: out }), 'train')).resolves.toBeUndefined();
  });

  it('export_dir may not be the model or the adapter folder', async () => {
    const model = modelFolder();
    const adapter = modelFolder(['adapter_config.json', 'adapter_model.safetensors']);
    expect(await problem(config({ model_name_or_path: model, export_dir: model }), 'export')).toBe(
      `export_dir ${model} is the model_name_or_path folder ${model}: the merged model would be written over the files it is read from; choose another export_dir`,
    );
    expect(await problem(config({ model_name_or_path: model, adapter_name_or_path: adapter, export_dir: adapter }), 'export')).toMatch(/is the adapter_name_or_path folder/);
  });
});

describe('output_dir that cannot be written', () => {
  it('a path through a file', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'f-')), 'notes.txt');
    writeFileSync(file, 'x');
    expect(await problem(config({ output_dir: file }))).toBe(`output_dir ${file} is a file, not a folder`);
    expect(await problem(config({ output_dir: join(file, 'run') }))).toBe(`cannot create output_dir ${join(file, 'run')}: ${file} is a file, not a folder`);
  });

  it.runIf(process.platform === 'linux')('a place where no folder can be made', async () => {
    expect(await problem(config({ output_dir: '/proc/crucible-run/out' }))).toBe('output_dir /proc/crucible-run/out is not writable (it would be created in /proc): the file system does not let folders be created there; choose a folder you can write to');
  });

  it.skipIf(process.getuid?.() === 0)('a read-only folder', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ro-'));
    chmodSync(dir, 0o555);
    expect(await problem(config({ output_dir: join(dir, 'out') }))).toBe(`output_dir ${join(dir, 'out')} is not writable (it would be created in ${dir}): permission denied; choose a folder you can write to`);
  });
});

describe('crucible train', () => {
  it('refuses before loading anything', async () => {
    const model = modelFolder();
    const cfg = join(mkdtempSync(join(tmpdir(), 'cfg-')), 'full.yaml');
    writeFileSync(cfg, `model_name_or_path: ${model}\nstage: sft\ndo_train: true\nfinetuning_type: full\ndataset: identity\noutput_dir: ${model}\n`);
    const err: string[] = [];
    let ran = false;
    const code = await main(['train', cfg], {
      stdout: () => {},
      stderr: (t) => void err.push(t),
      env: {},
      cwd: process.cwd(),
      stdin: Readable.from([]),
      interactive: false,
      engines: { runTraining: async () => ((ran = true), Promise.reject(new Error('loaded'))) },
    });
    expect(code).toBe(1);
    expect(ran).toBe(false);
    expect(err.join('')).toBe(`error: output_dir ${model} is the model_name_or_path folder ${model}: full fine-tuning would save the trained model over the model there; choose another output_dir\n`);
  });
});
