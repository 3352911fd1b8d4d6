// Resuming a checkpoint saved with other settings, or a damaged one: the error names the file and
// what changed, before anything is written to the GPU (was: "WebGPU error: Write range", a path
// with the checkpoint folder twice, "Bad control character" with no file).
import { mkdtempSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { runTraining as runWithOwnGpu } from '../src/engine/train-node';
import { testGpu } from './helpers/gpu';

const MODEL = join(import.meta.dirname, 'fixtures/tiny-chat');
const DATA = join(import.meta.dirname, 'fixtures/tiny-chat-data');
const config = (out: string, extra: Record<string, unknown> = {}) =>
  configFromObject({
    model_name_or_path: MODEL, stage: 'sft', do_train: true, lora_rank: 8, lora_target: 'all', dataset: 'identity', dataset_dir: DATA,
    cutoff_len: 32, output_dir: out, per_device_train_batch_size: 2, max_steps: 1, save_steps: 1, seed: 7, ...extra,
  }).config;
const run = async (c: ReturnType<typeof config>) => runWithOwnGpu(c, {}, { gpu: await testGpu() });

describe('resume checks', () => {
  it('a changed lora_rank, a truncated optimizer file and a corrupt trainer_state.json are named', async () => {
    const out = mkdtempSync(join(tmpdir(), 'resume-checks-'));
    await run(config(out));
    await expect(run(config(out, { lora_rank: 4, max_steps: 2 }))).rejects.toThrow(
      /^checkpoint-1\/adapter_model\.safetensors: tensor \S+\.lora_A\.weight is \[8, 64\] in the checkpoint, this run expects \[4, 64\]: lora_rank changed since the checkpoint was saved \(it has rank 8, this run 4\)/,
    );
    await expect(run(config(out, { lora_rank: 16, max_steps: 2 }))).rejects.toThrow(/lora_rank changed since the checkpoint was saved \(it has rank 8, this run 16\)/);

    const opt = join(out, 'checkpoint-1/optimizer.safetensors');
    const optBytes = readFileSync(opt);
    truncateSync(opt, optBytes.length - 100);
    await expect(run(config(out, { max_steps: 2 }))).rejects.toThrow(/^checkpoint-1\/optimizer\.safetensors: tensor .* past the end of the file \(\d+ bytes\): the file is truncated$/);
    writeFileSync(opt, optBytes);

    const state = join(out, 'checkpoint-1/trainer_state.json');
    const stateText = readFileSync(state, 'utf8');
    writeFileSync(state, stateText.replace('"global_step"', '"global\tstep"'));
    await expect(run(config(out, { max_steps: 2 }))).rejects.toThrow(
      new RegExp(`^${state}, line \\d+: not valid JSON: Bad control character in string literal \\(column \\d+\\); remove ${join(out, 'checkpoint-1')} to resume from an earlier checkpoint$`),
    );
    writeFileSync(state, stateText);

    await expect(run(config(out, { max_steps: 2 }))).resolves.toMatchObject({ globalStep: 2 });
  });

  it('runTraining refuses to write a full fine-tune over the model it reads (library callers too)', async () => {
    await expect(run(config(MODEL, { finetuning_type: 'full' }))).rejects.toThrow(`output_dir ${MODEL} is the model_name_or_path folder ${MODEL}: full fine-tuning would save`);
  });
});
