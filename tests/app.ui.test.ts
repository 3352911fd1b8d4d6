// The app's host-independent pieces: the GPU memory estimate (checked against real checkpoints),
// settings <-> methods, the config -> TrainOptions mapping with fractional steps, and the
// IndexedDB run store (fake-indexeddb).
import 'fake-indexeddb/auto';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configFromObject } from '../src/config';
import { openSafetensors } from '../src/model/safetensors';
import { countParams, estimateMemory } from '../src/ui/lib/estimate';
import { DEFAULT_SETTINGS, METHODS, PRESETS, methodOf, toYaml, withMethod } from '../src/ui/lib/settings';
import {
  browserRunStore,
  deleteRun,
  getRun,
  getRunData,
  latestCheckpoint,
  listRunFiles,
  listRuns,
  pruneCheckpoints,
  saveRun,
  saveRunData,
  updateRun,
  type RunRecord,
} from '../src/train/store-browser';
import { specFromConfig } from '../src/model/spec';
import { totalSteps, trainOptionsFromConfig } from '../workers/train-options';

const FIX = join(import.meta.dirname, 'fixtures/models');
const fileSource = (path: string) => {
  const b = new Uint8Array(readFileSync(path));
  return { name: path, size: b.length, read: async (o: number, n: number) => b.subarray(o, o + n) };
};

describe('memory estimate', () => {
  for (const arch of ['llama', 'qwen2', 'qwen3', 'mistral']) {
    it(`${arch}: parameters match the checkpoint, LoRA parameters match a PEFT adapter`, async () => {
      const config = JSON.parse(readFileSync(join(FIX, arch, 'config.json'), 'utf8'));
      const st = await openSafetensors(fileSource(join(FIX, arch, 'model.safetensors')));
      const real = [...st.tensors.values()].filter((t) => !/bias$/.test(t.name)).reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
      const p = countParams(specFromConfig(config));
      const qkNorm = [...st.tensors.keys()].filter((k) => /[qk]_norm/.test(k)).reduce((a, k) => a + st.tensors.get(k)!.shape[0]!, 0);
      expect(p.linear + p.embed + p.head + p.norms + qkNorm).toBe(real);
      const ad = JSON.parse(readFileSync(join(FIX, arch, 'adapter_init/adapter_config.json'), 'utf8'));
      const ast = await openSafetensors(fileSource(join(FIX, arch, 'adapter_init/adapter_model.safetensors')));
      const lora = [...ast.tensors.values()].reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
      const e = estimateMemory(config, { finetuning_type: 'lora', lora_rank: ad.r, lora_target: ad.target_modules, per_device_train_batch_size: 2, cutoff_len: 16 });
      expect(e.trainable).toBe(lora);
      expect(e.total).toBeGreaterThan(e.weights);
    });
  }

  it('orders the methods as their memory: QLoRA < LoRA < full', () => {
    const config = { architectures: ['LlamaForCausalLM'], hidden_size: 2048, intermediate_size: 8192, num_attention_heads: 32, num_key_value_heads: 8, num_hidden_layers: 16, vocab_size: 128256, tie_word_embeddings: true };
    const s = { per_device_train_batch_size: 1, cutoff_len: 512 };
    const q = estimateMemory(config, { ...s, finetuning_type: 'lora', quantization_bit: 4 });
    const l = estimateMemory(config, { ...s, finetuning_type: 'lora' });
    const f = estimateMemory(config, { ...s, finetuning_type: 'full' });
    expect(l.params).toBeGreaterThan(1.2e9);
    expect(l.params).toBeLessThan(1.3e9);
    expect(q.total).toBeLessThan(l.total);
    expect(l.total).toBeLessThan(f.total);
    expect(f.optimizer).toBe(l.params * 12);
  });

  it('names an unsupported architecture', () => {
    expect(() => estimateMemory({ architectures: ['GPT2LMHeadModel'] }, {})).toThrow(/unsupported architecture "GPT2LMHeadModel"/);
  });
});

describe('settings', () => {
  it('methods map to LLaMA-Factory keys and back', () => {
    for (const m of METHODS) expect(methodOf(withMethod(DEFAULT_SETTINGS, m.value))).toBe(m.value);
    expect(withMethod(DEFAULT_SETTINGS, 'qlora')).toMatchObject({ finetuning_type: 'lora', quantization_bit: 4, use_dora: false });
  });

  it('every preset is a valid LLaMA-Factory config, and its YAML reads back the same', async () => {
    const { parseConfig } = await import('../src/config');
    for (const p of PRESETS) {
      const { config } = configFromObject(p.settings);
      expect(config.stage).toBe('sft');
      const back = parseConfig(toYaml(p.settings)).config;
      expect(back).toEqual(config);
    }
  });
});

describe('config -> TrainOptions (app)', () => {
  it('fractions of the total steps and epoch strategies', () => {
    const { config } = configFromObject({ ...DEFAULT_SETTINGS, dataset: 'identity', max_steps: -1, num_train_epochs: 2, per_device_train_batch_size: 4, gradient_accumulation_steps: 2, logging_steps: 0.1, save_steps: 0.5, warmup_steps: 0.25, eval_strategy: 'epoch', val_size: 0.1 });
    expect(totalSteps(config, 100)).toBe(26);
    const o = trainOptionsFromConfig(config, 100);
    expect(o).toMatchObject({ loggingSteps: 3, saveSteps: 13, warmupSteps: 7, evalSteps: 13, finetuningType: 'lora', batchSize: 4, gradAccum: 2 });
    expect(o.lora).toMatchObject({ rank: 8, alpha: 16 });
  });

  it('refuses stages the app does not train', () => {
    const { config } = configFromObject({ ...DEFAULT_SETTINGS, stage: 'dpo' });
    expect(() => trainOptionsFromConfig(config, 10)).toThrow(/stage "dpo"/);
  });
});

describe('IndexedDB run store', () => {
  const run = (id: string, createdAt: number): RunRecord => ({
    id, name: id, createdAt, updatedAt: createdAt, status: 'running', model: { kind: 'url', id: 'demo' }, dataset: { kind: 'url', name: 'identity' },
    settings: {}, log: [], checkpoints: [], totalSteps: 10, step: 0,
  });

  it('checkpoint files per run; the newest complete checkpoint; pruning; deletion', async () => {
    const db = { dbName: `t-${Math.random()}` };
    const a = browserRunStore('a', db);
    const b = browserRunStore('b', db);
    for (const step of [2, 4, 6]) {
      await a.write(`checkpoint-${step}/adapter_model.safetensors`, new Uint8Array([step]));
      await a.write(`checkpoint-${step}/trainer_state.json`, JSON.stringify({ global_step: step }));
    }
    await a.write('checkpoint-8/adapter_model.safetensors', new Uint8Array([8])); // incomplete: no trainer_state.json
    await b.write('checkpoint-1/trainer_state.json', '{}');
    expect(await latestCheckpoint('a', db)).toEqual({ dir: 'checkpoint-6', step: 6 });
    expect([...(await a.read('checkpoint-4/adapter_model.safetensors'))]).toEqual([4]);
    expect(new TextDecoder().decode(await a.read('checkpoint-6/trainer_state.json'))).toBe('{"global_step":6}');
    expect(await a.exists('checkpoint-8/trainer_state.json')).toBe(false);
    await expect(a.read('checkpoint-9/x')).rejects.toThrow(/no checkpoint file checkpoint-9\/x/);
    await expect(a.write('../escape', 'x')).rejects.toThrow(/invalid checkpoint path/);
    await pruneCheckpoints('a', 2, db);
    expect((await listRunFiles('a', db)).sort()).toEqual([
      'checkpoint-4/adapter_model.safetensors', 'checkpoint-4/trainer_state.json',
      'checkpoint-6/adapter_model.safetensors', 'checkpoint-6/trainer_state.json',
      'checkpoint-8/adapter_model.safetensors',
    ]);
    expect(await listRunFiles('b', db)).toEqual(['checkpoint-1/trainer_state.json']);

    await saveRun(run('a', 1), db);
    await saveRun(run('b', 2), db);
    await saveRunData('a', { 'mine.jsonl': new Uint8Array([1, 2]) }, db);
    expect((await listRuns(db)).map((r) => r.id)).toEqual(['b', 'a']);
    await updateRun('a', (r) => ({ ...r, status: 'paused', step: 6 }), db);
    expect(await getRun('a', db)).toMatchObject({ status: 'paused', step: 6 });
    expect(await getRunData('a', db)).toEqual({ 'mine.jsonl': new Uint8Array([1, 2]) });
    await deleteRun('a', db);
    expect(await getRun('a', db)).toBeUndefined();
    expect(await getRunData('a', db)).toBeUndefined();
    expect(await listRunFiles('a', db)).toEqual([]);
    expect(await listRunFiles('b', db)).toHaveLength(1);
  });
});
