// tokens/s leaves out the step that compiles the GPU pipelines: the first step of a run has no
// rate of its own, the steps after it are timed from its end and count their real tokens.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { runTraining } from '../src/engine/train-node';
import type { LogRecord } from '../src/train/trainer';
import { testGpu } from './helpers/gpu';

const MODEL = join(import.meta.dirname, 'fixtures/tiny-chat');
const DATA = join(import.meta.dirname, 'fixtures/tiny-chat-data');

it('the compile step is not in tokens_per_second', async () => {
  const logs: LogRecord[] = [];
  const config = configFromObject({
    model_name_or_path: MODEL, stage: 'sft', do_train: true, finetuning_type: 'lora', lora_rank: 4, dataset: 'identity', dataset_dir: DATA,
    cutoff_len: 48, output_dir: mkdtempSync(join(tmpdir(), 'crucible-tps-')), per_device_train_batch_size: 2, max_steps: 4, logging_steps: 1, save_steps: 100, seed: 3,
  }).config;
  await runTraining(config, { onLog: (r) => void logs.push(r) }, { gpu: await testGpu() });
  expect(logs.map((l) => l.current_steps)).toEqual([1, 2, 3, 4]);
  expect(logs[0]!.tokens_per_second).toBe(0);
  for (const l of logs.slice(1)) expect(l.tokens_per_second, `step ${l.current_steps}`).toBeGreaterThan(0);
});
