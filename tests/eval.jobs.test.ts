// The Node eval jobs from a config: do_predict writes LLaMA-Factory's files to output_dir, and
// the multiple-choice eval writes results.json / results.log to a new save_dir.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { defaultConfig } from '../src/config/load';
import { EVALUATION_DEFAULTS, runChoiceEval, runPredictJob } from '../src/engine/eval-node';
import { computeSimilarity } from '../src/eval/similarity';

const FIX = join(import.meta.dirname, 'fixtures');

it('runPredictJob: generated_predictions.jsonl and predict_results.json in output_dir', async () => {
  const out = mkdtempSync(join(tmpdir(), 'crucible-predict-job-'));
  const config = {
    ...defaultConfig(),
    model_name_or_path: join(FIX, 'tiny-chat'),
    stage: 'sft' as const,
    eval_dataset: ['identity'],
    dataset_dir: join(FIX, 'tiny-chat-data'),
    template: 'chatml',
    cutoff_len: 48,
    max_samples: 2,
    max_new_tokens: 4,
    do_sample: false,
    per_device_eval_batch_size: 1,
    output_dir: out,
  };
  const status: string[] = [];
  const result = await runPredictJob(config, { onStatus: (m) => status.push(m) });
  expect(status).toContain('predict: 2 examples');
  const lines = readFileSync(join(out, 'generated_predictions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { predict: string; label: string });
  expect(lines).toHaveLength(2);
  const metrics = JSON.parse(readFileSync(join(out, 'predict_results.json'), 'utf8')) as Record<string, number>;
  expect(metrics['predict_rouge-l']).toBe(computeSimilarity(lines)['rouge-l']);
  expect(metrics).toEqual(result.metrics);
}, 120_000);

it('runChoiceEval: scores the task and refuses an existing save_dir', async () => {
  const save = join(mkdtempSync(join(tmpdir(), 'crucible-choice-job-')), 'eval');
  const config = {
    ...EVALUATION_DEFAULTS,
    task: 'tinybench_test',
    task_dir: join(FIX, 'eval-tasks'),
    n_shot: 0,
    save_dir: save,
    model_name_or_path: join(import.meta.dirname, '../public/demo/model'),
    adapter_name_or_path: null,
    quantization_bit: null,
    model_revision: 'main',
    cache_dir: null,
    template: 'fewshot',
    default_system: null,
    enable_thinking: true,
  };
  const result = await runChoiceEval(config);
  expect(readFileSync(join(save, 'results.log'), 'utf8')).toBe(result.scoreInfo);
  expect(result.scoreInfo.split('\n')[0]).toMatch(/^ {8}Average: \d+\.\d\d$/);
  expect(existsSync(join(save, 'results.json'))).toBe(true);
  await expect(runChoiceEval(config)).rejects.toThrow(/save_dir .* already exists/);
}, 300_000);

it('crucible train with do_predict (and no do_train) predicts, writes the files and prints the metrics; without predict_with_generate it is refused', async () => {
  const { main } = await import('../src/cli/main');
  const { Readable } = await import('node:stream');
  const out = mkdtempSync(join(tmpdir(), 'crucible-predict-cli-'));
  const stdout: string[] = [], stderr: string[] = [];
  const io = { stdout: (t: string) => void stdout.push(t), stderr: (t: string) => void stderr.push(t), env: {}, cwd: process.cwd(), stdin: Readable.from([]), interactive: false };
  const args = [`model_name_or_path=${join(FIX, 'tiny-chat')}`, 'stage=sft', 'do_predict=true', 'eval_dataset=identity', `dataset_dir=${join(FIX, 'tiny-chat-data')}`,
    'template=chatml', 'cutoff_len=48', 'max_samples=2', 'max_new_tokens=3', `output_dir=${out}`];
  expect(await main(['train', ...args], io)).toBe(1);
  expect(stderr.join('')).toMatch(/do_predict: Crucible predicts by generation; set predict_with_generate: true/);
  stderr.length = 0;
  expect(await main(['train', ...args, 'predict_with_generate=true'], io)).toBe(0);
  expect(stdout.join('')).toMatch(/^predict_bleu-4 = [\d.]+$/m);
  expect(readFileSync(join(out, 'generated_predictions.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);
  expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(false); // nothing was trained
}, 180_000);

it('crucible train with do_train and do_predict after full training predicts with the model it wrote to output_dir', async () => {
  const { main } = await import('../src/cli/main');
  const { Readable } = await import('node:stream');
  const out = mkdtempSync(join(tmpdir(), 'crucible-predict-full-'));
  const stdout: string[] = [], stderr: string[] = [];
  const io = { stdout: (t: string) => void stdout.push(t), stderr: (t: string) => void stderr.push(t), env: {}, cwd: process.cwd(), stdin: Readable.from([]), interactive: false };
  const args = [`model_name_or_path=${join(FIX, 'tiny-chat')}`, 'stage=sft', 'do_train=true', 'finetuning_type=full', 'dataset=identity', 'do_predict=true',
    'predict_with_generate=true', 'eval_dataset=identity', `dataset_dir=${join(FIX, 'tiny-chat-data')}`, 'template=chatml', 'cutoff_len=48', 'max_samples=2',
    'max_steps=1', 'per_device_train_batch_size=1', 'max_new_tokens=3', 'do_sample=false', `output_dir=${out}`];
  expect(await main(['train', ...args], io), stderr.join('')).toBe(0);
  expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
  expect(stderr.join('')).toContain(`predict: ${out} on identity -> ${out}`);
  expect(readFileSync(join(out, 'generated_predictions.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);
}, 300_000);
