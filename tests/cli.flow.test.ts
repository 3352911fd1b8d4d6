// The engine behind `crucible train | chat | export | preview` on a tiny model: a run writes
// LLaMA-Factory's output layout, a rerun resumes on the same curve, chat loads the adapter,
// preview shows what is learned.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { runTraining } from '../src/engine/train-node';
import { createChatBackend } from '../src/engine/chat-node';
import { exportModel } from '../src/engine/export-node';
import { previewDataset } from '../src/engine/preview-node';
import { openSafetensors } from '../src/model/safetensors';
import { fileSource } from '../src/model/files-node';
import type { LogRecord } from '../src/train/trainer';

const MODEL = join(import.meta.dirname, 'fixtures/tiny-chat');
const DATA = join(import.meta.dirname, 'fixtures/tiny-chat-data');

const trainConfig = (out: string, extra: Record<string, unknown> = {}) =>
  configFromObject({
    model_name_or_path: MODEL, stage: 'sft', do_train: true, finetuning_type: 'lora', lora_rank: 4, lora_target: 'all',
    dataset: 'identity', dataset_dir: DATA, cutoff_len: 48, output_dir: out, per_device_train_batch_size: 2,
    learning_rate: 1e-2, lr_scheduler_type: 'linear', max_steps: 4, logging_steps: 1, save_steps: 2, plot_loss: true, seed: 7, ...extra,
  }).config;

describe('crucible train / chat / export / preview on a tiny model', () => {
  it('trains, logs, checkpoints; an interrupted run resumes on the same loss curve', async () => {
    const full = mkdtempSync(join(tmpdir(), 'run-full-'));
    const logs: LogRecord[] = [];
    const r = await runTraining(trainConfig(full), { onLog: (l) => logs.push(l) });
    expect(r).toMatchObject({ globalStep: 4, totalSteps: 4, interrupted: false });
    for (const f of ['adapter_model.safetensors', 'adapter_config.json', 'trainer_log.jsonl', 'training_loss.png', 'checkpoint-2/optimizer.safetensors', 'checkpoint-4/trainer_state.json', 'tokenizer.json']) {
      expect(existsSync(join(full, f)), f).toBe(true);
    }
    const lines = readFileSync(join(full, 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.current_steps)).toEqual([1, 2, 3, 4]);
    for (const l of lines) expect(Object.keys(l)).toEqual(expect.arrayContaining(['current_steps', 'total_steps', 'loss', 'lr', 'epoch', 'tokens_per_second']));
    const cfg = JSON.parse(readFileSync(join(full, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, base_model_name_or_path: MODEL });
    const adapter = await openSafetensors(await fileSource(join(full, 'adapter_model.safetensors')));
    expect(adapter.tensors.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')?.shape).toEqual([4, 64]);

    // stop after step 2 (abort), then rerun: resumes from checkpoint-2 and matches the uninterrupted losses
    const split = mkdtempSync(join(tmpdir(), 'run-split-'));
    const stop = new AbortController();
    const first = await runTraining(trainConfig(split), { signal: stop.signal, onLog: (l) => { if (l.current_steps === 2) stop.abort(); } });
    expect(first).toMatchObject({ interrupted: true, globalStep: 2 });
    const resumed: LogRecord[] = [];
    const second = await runTraining(trainConfig(split), { onLog: (l) => resumed.push(l) });
    expect(second).toMatchObject({ interrupted: false, globalStep: 4 });
    expect(resumed.map((l) => l.current_steps)).toEqual([3, 4]);
    resumed.forEach((l, i) => expect(l.loss).toBeCloseTo(logs[i + 2]!.loss!, 5));
  });

  it('chat streams an answer with the trained adapter; the adapter-only export checks it against the model', async () => {
    const out = mkdtempSync(join(tmpdir(), 'run-chat-'));
    await runTraining(trainConfig(out, { max_steps: 2 }), {});
    const backend = await createChatBackend(configFromObject({ model_name_or_path: MODEL, adapter_name_or_path: out }).config, {});
    const pieces: string[] = [];
    const res = await backend.chat({ model: backend.models()[0]!, messages: [{ role: 'user', content: 'Who are you?' }], maxTokens: 6, temperature: 0, topP: 1, topK: 0,
      repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, seed: 1, stop: [] }, (t) => { pieces.push(t); }, new AbortController().signal);
    expect(res.completionTokens).toBeGreaterThan(0);
    expect(pieces.join('')).toBe(res.text);
    await backend.close?.();
    const exp = mkdtempSync(join(tmpdir(), 'export-'));
    const r = await exportModel(configFromObject({ model_name_or_path: MODEL, adapter_name_or_path: out, export_dir: exp }).config, { adapterOnly: true });
    expect(r.files.map((f) => f.slice(exp.length + 1)).sort()).toEqual(expect.arrayContaining(['adapter_config.json', 'adapter_model.safetensors']));
  });

  it('stage dpo (sigmoid) runs with the base as the reference and logs TRL metric names; rm saves its value head', async () => {
    const dpo = mkdtempSync(join(tmpdir(), 'run-dpo-'));
    const logs: LogRecord[] = [];
    await runTraining(trainConfig(dpo, { stage: 'dpo', dataset: 'dpo_en_demo', pref_beta: 0.1, max_steps: 2, save_strategy: 'no' }), { onLog: (l) => logs.push(l) });
    expect(Object.keys(logs[0]!)).toEqual(expect.arrayContaining(['rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins']));
    expect(existsSync(join(dpo, 'adapter_model.safetensors'))).toBe(true);
    const rm = mkdtempSync(join(tmpdir(), 'run-rm-'));
    await runTraining(trainConfig(rm, { stage: 'rm', dataset: 'dpo_en_demo', max_steps: 1, save_strategy: 'no' }), {});
    const head = await openSafetensors(await fileSource(join(rm, 'value_head.safetensors')));
    expect(head.tensors.get('v_head.summary.weight')?.shape).toEqual([1, 64]);
  });

  it('ref_model: the base itself reproduces the adapter-off run, an adapter on it moves the reference, full fine-tuning scores the initial weights', async () => {
    const dpo = (out: string, extra: Record<string, unknown> = {}) =>
      trainConfig(out, { stage: 'dpo', dataset: 'dpo_en_demo', pref_beta: 0.1, max_steps: 2, save_strategy: 'no', ...extra });
    const adapterOff = mkdtempSync(join(tmpdir(), 'run-dpo-off-'));
    const base: LogRecord[] = [];
    await runTraining(dpo(adapterOff), { onLog: (l) => base.push(l) });
    const withRef: LogRecord[] = [];
    const status: string[] = [];
    await runTraining(dpo(mkdtempSync(join(tmpdir(), 'run-dpo-ref-')), { ref_model: MODEL }), { onLog: (l) => withRef.push(l), onStatus: (m) => status.push(m) });
    expect(status).toEqual(expect.arrayContaining([`loading the reference model ${MODEL}`, expect.stringMatching(/^reference model: scoring \d+ sequences$/)]));
    withRef.forEach((l, i) => {
      expect(l.loss).toBeCloseTo(base[i]!.loss!, 3);
      expect(l['rewards/margins']).toBeCloseTo(base[i]!['rewards/margins']!, 3);
    });
    // the trained DPO adapter on the reference: the fresh policy no longer equals its reference at step 1
    const moved: LogRecord[] = [];
    await runTraining(dpo(mkdtempSync(join(tmpdir(), 'run-dpo-refad-')), { ref_model: MODEL, ref_model_adapters: adapterOff, max_steps: 1 }), { onLog: (l) => moved.push(l) });
    expect(Math.abs(moved[0]!['rewards/chosen']!)).toBeGreaterThan(1e-3);
    const full: LogRecord[] = [];
    await runTraining(dpo(mkdtempSync(join(tmpdir(), 'run-dpo-full-')), { finetuning_type: 'full', learning_rate: 1e-4, max_steps: 1 }), { onLog: (l) => full.push(l) });
    expect(full[0]!.loss).toBeCloseTo(Math.LN2, 3);
    expect(() => dpo('/tmp/unused', { ref_model_adapters: adapterOff })).toThrow(/ref_model_adapters needs ref_model/);
  });

  it('preview marks the learned response and gives ids and labels', async () => {
    const { examples } = await previewDataset(trainConfig('/tmp/unused'), { count: 2, offset: 1 });
    expect(examples).toHaveLength(2);
    const e = examples[0]!;
    if ('chosen' in e) throw new Error('expected an sft example');
    expect(e.segments.find((s) => s.learned)?.text).toMatch(/^Hello! I am Crucible/);
    expect(e.labels.length).toBe(e.input_ids.length);
    expect(e.labels.slice(0, 5)).toEqual([-100, -100, -100, -100, -100]);
  });
});
