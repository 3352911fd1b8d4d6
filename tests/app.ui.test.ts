// The app's host-independent pieces: the GPU memory estimate (checked against real checkpoints),
// settings <-> methods and stages, the config -> TrainOptions mapping with fractional steps and
// preference options, dataset formats (detection as the data layer reads them, format choices as
// dataset_info.json entries), preview views, chart panels, and the IndexedDB run store
// (fake-indexeddb).
import 'fake-indexeddb/auto';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configFromObject } from '../src/config';
import { buildDataset, memoryFileAccess, previewExamples, type PreviewExample } from '../src/data';
import { detectAttr } from '../src/data/sources';
import { loadTokenizerFromDir } from '../src/data/node';
import { chartKeys } from '../src/train/preference';
import { chartPanels, points, stagePanels } from '../src/ui/lib/charts';
import { kindOf, type DataFormat } from '../src/data/describe';
import { demoDatasetFor, infoEntry, stageFits, stageFor, uploadDataset, withInfoEntry } from '../src/ui/lib/data-format';
import { exampleView, splitPrompt } from '../src/data/preview-view';
import { openSafetensors } from '../src/model/safetensors';
import { countParams, estimateMemory } from '../src/ui/lib/estimate';
import { DEFAULT_SETTINGS, METHODS, PRESETS, methodOf, withMethod, withStageKeys } from '../src/ui/lib/settings';
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
import { totalSteps, runOptions as trainOptionsFromConfig } from '../src/engine/options';

const FIX = join(import.meta.dirname, 'fixtures/models');
const DEMO_DATA = join(import.meta.dirname, '../public/demo/data');
const TOKENIZER = join(import.meta.dirname, 'fixtures/tiny-chat');
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

  it('counts activations with or without recomputation as the trainer would choose it', () => {
    const config = { architectures: ['LlamaForCausalLM'], hidden_size: 2048, intermediate_size: 8192, num_attention_heads: 32, num_key_value_heads: 8, num_hidden_layers: 16, vocab_size: 128256, tie_word_embeddings: true };
    const s = { finetuning_type: 'lora', per_device_train_batch_size: 1, cutoff_len: 64 };
    const on = estimateMemory(config, { ...s, disable_gradient_checkpointing: false });
    const off = estimateMemory(config, { ...s, disable_gradient_checkpointing: true });
    expect(off.activations).toBeGreaterThan(on.activations);
    // unset: with 16 GiB a short sequence fits without recomputation, a long one does not
    expect(estimateMemory(config, { ...s, memory_budget: 16 }).activations).toBe(off.activations);
    const long = { ...s, cutoff_len: 4096, memory_budget: 16 };
    expect(estimateMemory(config, long).activations).toBe(estimateMemory(config, { ...long, disable_gradient_checkpointing: false }).activations);
    // the 2 GiB default does not hold this model's 5 GB of f32 weights: recomputation stays on
    expect(estimateMemory(config, s).activations).toBe(on.activations);
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
    const { parseConfig, toLlamaFactory } = await import('../src/config');
    const demo = JSON.parse(readFileSync(join(DEMO_DATA, 'dataset_info.json'), 'utf8'));
    for (const p of PRESETS) {
      const { config, notices } = configFromObject({ do_train: true, ...p.settings });
      expect(notices.filter((n) => /only applies to stage/.test(n)), p.name).toEqual([]);
      const back = parseConfig(toLlamaFactory(config).yaml).config;
      expect(back).toEqual(config);
      // a preset's demo dataset is bundled and fits its stage
      const data = p.demoDataset ?? 'identity';
      expect(demo[data], p.name).toBeDefined();
      expect(stageFits(config.stage, kindOf(demo[data])), p.name).toBe(true);
    }
  });

  it('the DPO preset is LLaMA-Factory\'s lora_dpo example scaled for the demo', () => {
    const dpo = PRESETS.find((p) => p.name === 'DPO')!;
    expect(dpo.demoDataset).toBe('dpo_en_demo');
    expect(dpo.settings).toMatchObject({ stage: 'dpo', pref_loss: 'sigmoid', pref_beta: 0.1, finetuning_type: 'lora', lora_rank: 8, lora_target: 'all', lr_scheduler_type: 'cosine', warmup_ratio: 0.1 });
  });

  it('a stage keeps exactly the preference keys it uses', () => {
    const dpo = withStageKeys({ ...DEFAULT_SETTINGS, stage: 'dpo' });
    expect(dpo).toMatchObject({ pref_beta: 0.1, pref_loss: 'sigmoid', pref_ftx: 0, dpo_label_smoothing: 0 });
    expect(dpo).not.toHaveProperty('simpo_gamma');
    const simpo = withStageKeys({ ...dpo, pref_loss: 'simpo', pref_beta: 2, dpo_label_smoothing: 0.1 });
    expect(simpo).toMatchObject({ pref_beta: 2, pref_loss: 'simpo', simpo_gamma: 0.5 });
    expect(simpo).not.toHaveProperty('dpo_label_smoothing');
    const kto = withStageKeys({ ...simpo, stage: 'kto' });
    expect(kto).toMatchObject({ pref_beta: 2, pref_ftx: 0, kto_chosen_weight: 1, kto_rejected_weight: 1 });
    expect(Object.keys(kto).filter((k) => /^(pref_loss|simpo|dpo_)/.test(k))).toEqual([]);
    expect(Object.keys(withStageKeys({ ...kto, stage: 'sft' })).filter((k) => /^(pref|kto|simpo|dpo)_/.test(k))).toEqual([]);
    expect(withStageKeys({ ...DEFAULT_SETTINGS, stage: 'rm' })).toEqual({ ...DEFAULT_SETTINGS, stage: 'rm' });
    // every stage's settings are a valid config without notices
    for (const stage of ['sft', 'pt', 'dpo', 'kto', 'rm']) expect(configFromObject(withStageKeys({ ...kto, stage })).notices.filter((n) => /only applies to stage/.test(n))).toEqual([]);
  });
});

describe('dataset formats', () => {
  const detected = (rows: Record<string, unknown>[], name = 'mine.json'): DataFormat => {
    const a = detectAttr(name, 'file', name, rows[0]);
    const columns = Object.fromEntries(Object.entries(a.columns).filter((e): e is [string, string] => typeof e[1] === 'string'));
    return { formatting: a.formatting, kind: kindOf(a), columns, tags: { ...a.tags }, from: 'detected' };
  };
  const pairs = [
    { conversations: [{ from: 'human', value: 'Say hi' }], chosen: { from: 'gpt', value: 'Hi!' }, rejected: { from: 'gpt', value: 'No.' } },
    { conversations: [{ from: 'human', value: 'Two plus two?' }], chosen: { from: 'gpt', value: 'Four.' }, rejected: { from: 'gpt', value: 'Five.' } },
  ];
  const kto = [
    { messages: [{ role: 'user', content: 'Say hi' }, { role: 'assistant', content: 'Hi!' }], label: true },
    { messages: [{ role: 'user', content: 'Two plus two?' }, { role: 'assistant', content: 'Five.' }], label: false },
  ];
  const alpacaPairs = [{ instruction: 'Say hi', input: '', chosen: 'Hi!', rejected: 'No.' }];
  const json = (rows: unknown) => new TextEncoder().encode(JSON.stringify(rows));

  it('detects the kind of data as the data layer does, and which stages train it', () => {
    expect(detected(pairs)).toMatchObject({ formatting: 'sharegpt', kind: 'pairwise', columns: { messages: 'conversations', chosen: 'chosen', rejected: 'rejected' } });
    // role/content messages without OpenAI tool calls are sharegpt with OpenAI tags (LLaMA-Factory's data/README)
    expect(detected(kto)).toMatchObject({ formatting: 'sharegpt', kind: 'kto', columns: { messages: 'messages', kto_tag: 'label' }, tags: { role_tag: 'role', user_tag: 'user' } });
    expect(detected(alpacaPairs)).toMatchObject({ formatting: 'alpaca', kind: 'pairwise' });
    expect(detected([{ instruction: 'a', output: 'b' }]).kind).toBe('lm');
    expect(kindOf({ ranking: true })).toBe('pairwise');
    expect(kindOf({ columns: { kto_tag: 'label' } })).toBe('kto');
    expect(kindOf({})).toBe('lm');
    expect([stageFor('lm'), stageFor('pairwise'), stageFor('kto')]).toEqual(['sft', 'dpo', 'kto']);
    expect(['sft', 'pt', 'dpo', 'kto', 'rm'].filter((s) => stageFits(s, 'pairwise'))).toEqual(['dpo', 'rm']);
    expect(['sft', 'pt', 'dpo', 'kto', 'rm'].filter((s) => stageFits(s, 'lm'))).toEqual(['sft', 'pt']);
  });

  it('a format choice becomes a dataset_info.json entry that the data layer reads', async () => {
    const tokenizer = await loadTokenizerFromDir(TOKENIZER);
    const build = (files: Record<string, Uint8Array>, stage: string) =>
      buildDataset({ stage: stage as 'dpo', dataset: 'mine.json', dataset_dir: 'upload', cutoff_len: 64, shuffle: false }, { tokenizer, ...memoryFileAccess(Object.fromEntries(Object.entries(files).map(([k, v]) => [`upload/${k}`, v]))) });
    // detected: the same entry as no entry at all
    const d = detected(pairs);
    const entry = infoEntry('mine.json', d, { formatting: 'sharegpt', kind: 'pairwise' });
    expect(entry).toEqual({ file_name: 'mine.json', formatting: 'sharegpt', ranking: true, columns: { messages: 'conversations', chosen: 'chosen', rejected: 'rejected' }, tags: d.tags });
    const built = await build(withInfoEntry({ 'mine.json': json(pairs) }, 'mine.json', entry), 'dpo');
    expect(built.kind).toBe('pairwise');
    expect(built.train).toHaveLength(2);
    // KTO data read as plain sft conversations: the tag column is dropped
    const k = detected(kto);
    const asSft = infoEntry('mine.json', k, { formatting: 'openai', kind: 'lm' });
    expect(asSft).toEqual({ file_name: 'mine.json', formatting: 'openai', columns: { messages: 'messages' }, tags: k.tags });
    expect((await build(withInfoEntry({ 'mine.json': json(kto) }, 'mine.json', asSft), 'sft')).kind).toBe('lm');
    // a formatting of another shape takes LLaMA-Factory's default columns for it
    expect(infoEntry('mine.json', d, { formatting: 'alpaca', kind: 'pairwise' })).toEqual({
      file_name: 'mine.json', formatting: 'alpaca', ranking: true, columns: { prompt: 'instruction', query: 'input', response: 'output', chosen: 'chosen', rejected: 'rejected' },
    });
    // a wrong choice fails in the data layer, naming the record
    const wrong = infoEntry('mine.json', detected(alpacaPairs), { formatting: 'sharegpt', kind: 'pairwise' });
    await expect(build(withInfoEntry({ 'mine.json': json(alpacaPairs) }, 'mine.json', wrong), 'dpo')).rejects.toThrow(/mine\.json.*record 0.*missing messages list/);
  });

  it('an uploaded dataset_info.json names the dataset and keeps its other entries', () => {
    const info = { other: { file_name: 'x.json' }, prefs: { file_name: 'p.jsonl', ranking: true } };
    expect(uploadDataset(['dataset_info.json', 'p.jsonl'], info)).toBe('prefs');
    expect(uploadDataset(['a.json', 'b.json'], null)).toBe('a.json');
    expect(uploadDataset(['dataset_info.json', 'c.json'], info)).toBe('c.json');
    const files = withInfoEntry({ 'dataset_info.json': new TextEncoder().encode(JSON.stringify(info)), 'c.json': json([]) }, 'c.json', { file_name: 'c.json' });
    expect(JSON.parse(new TextDecoder().decode(files['dataset_info.json']))).toEqual({ ...info, 'c.json': { file_name: 'c.json' } });
  });

  it('the bundled demo datasets: a stage picks one it can train', async () => {
    const info = JSON.parse(readFileSync(join(DEMO_DATA, 'dataset_info.json'), 'utf8'));
    expect(Object.fromEntries(Object.entries(info).map(([k, v]) => [k, kindOf(v as object)]))).toEqual({ identity: 'lm', dpo_en_demo: 'pairwise', kto_en_demo: 'kto' });
    expect(demoDatasetFor('dpo', info, 'identity')).toBe('dpo_en_demo');
    expect(demoDatasetFor('rm', info, 'dpo_en_demo')).toBe('dpo_en_demo');
    expect(demoDatasetFor('kto', info, 'dpo_en_demo')).toBe('kto_en_demo');
    expect(demoDatasetFor('sft', info, 'kto_en_demo')).toBe('identity');
    const tokenizer = await loadTokenizerFromDir(TOKENIZER);
    const readFile = async (p: string) => new Uint8Array(readFileSync(join(DEMO_DATA, p.replace(/^data\//, ''))));
    for (const [stage, dataset, kind] of [['dpo', 'dpo_en_demo', 'pairwise'], ['rm', 'dpo_en_demo', 'pairwise'], ['kto', 'kto_en_demo', 'kto']] as const) {
      const built = await buildDataset({ stage, dataset, dataset_dir: 'data', cutoff_len: 64 }, { tokenizer, readFile });
      expect(built.kind).toBe(kind);
      expect(built.train).toHaveLength(24);
    }
  });
});

describe('preview views', () => {
  it('splits the prompt from the answers of preference and KTO examples', async () => {
    expect(splitPrompt([{ text: 'Q: hi\nA: ', learned: false }, { text: 'hello', learned: true }, { text: '\n', learned: false }])).toEqual({
      prompt: 'Q: hi\nA: ', answer: [{ text: 'hello', learned: true }, { text: '\n', learned: false }],
    });
    expect(splitPrompt([{ text: 'all learned', learned: true }]).prompt).toBe('');
    const tokenizer = await loadTokenizerFromDir(TOKENIZER);
    const readFile = async (p: string) => new Uint8Array(readFileSync(join(DEMO_DATA, p.replace(/^data\//, ''))));
    const view = async (stage: string, dataset: string) =>
      ((await previewExamples({ stage: stage as 'dpo', dataset, dataset_dir: 'data', cutoff_len: 4096, template: 'chatml' }, { tokenizer, readFile }, 2)) as PreviewExample[]).map(exampleView);
    const [pair] = await view('dpo', 'dpo_en_demo');
    const first = JSON.parse(readFileSync(join(DEMO_DATA, 'dpo_en_demo.json'), 'utf8'))[0];
    expect(pair).toMatchObject({ kind: 'pairwise' });
    if (pair?.kind !== 'pairwise') return;
    expect(pair.prompt).toContain(first.conversations[0].value);
    expect(pair.prompt).not.toContain(first.chosen.value);
    expect(pair.chosen.filter((s) => s.learned).map((s) => s.text).join('')).toContain(first.chosen.value);
    expect(pair.rejected.filter((s) => s.learned).map((s) => s.text).join('')).toContain(first.rejected.value);
    const ktoViews = await view('kto', 'kto_en_demo');
    const rows = JSON.parse(readFileSync(join(DEMO_DATA, 'kto_en_demo.json'), 'utf8'));
    ktoViews.forEach((v, i) => {
      expect(v.kind).toBe('kto');
      if (v.kind !== 'kto') return;
      expect(v.desirable).toBe(rows[i].label);
      expect(v.prompt).toContain(rows[i].messages[0].content);
      expect(v.response.map((s) => s.text).join('')).toContain(rows[i].messages[1].content);
    });
    const [lm] = await view('sft', 'identity');
    expect(lm).toMatchObject({ kind: 'lm' });
  });
});

describe('chart panels', () => {
  it('groups a stage\'s metrics: a key with its eval twin, chosen with rejected rewards', () => {
    expect(chartPanels(chartKeys('dpo'))).toEqual([
      { title: 'loss', series: ['loss', 'eval_loss'] },
      { title: 'rewards/accuracies', series: ['rewards/accuracies', 'eval_rewards/accuracies'] },
      { title: 'rewards/margins', series: ['rewards/margins'] },
      { title: 'rewards', series: ['rewards/chosen', 'rewards/rejected'] },
    ]);
    expect(stagePanels({ stage: 'rm' }).map((p) => p.title)).toEqual(['loss', 'accuracy', 'lr']);
    expect(stagePanels({ stage: 'kto' }).map((p) => p.title)).toEqual(['loss', 'rewards', 'rewards/margins', 'kl', 'lr']);
    expect(stagePanels({ stage: 'dpo', pref_loss: 'orpo' }).map((p) => p.title)).toContain('odds_ratio_loss');
    expect(stagePanels({ stage: 'sft' })).toEqual([{ title: 'loss', series: ['loss', 'eval_loss'] }, { title: 'lr', series: ['lr'] }]);
    const log = [
      { current_steps: 1, loss: 0.7, 'rewards/chosen': 0.01 },
      { current_steps: 2, eval_loss: 0.69 },
      { current_steps: 2, loss: 0.6, 'rewards/chosen': 0.03 },
    ] as unknown as Parameters<typeof points>[0];
    expect(points(log, 'rewards/chosen')).toEqual([[1, 0.01], [2, 0.03]]);
    expect(points(log, 'eval_loss')).toEqual([[2, 0.69]]);
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

  it('preference stages: their options, steps counted in pairs', () => {
    const dpo = configFromObject({ ...withStageKeys({ ...DEFAULT_SETTINGS, stage: 'dpo', pref_loss: 'simpo', pref_beta: 2 }), dataset: 'd', max_steps: -1, num_train_epochs: 1, per_device_train_batch_size: 2 }).config;
    expect(totalSteps(dpo, 24)).toBe(12);
    expect(trainOptionsFromConfig(dpo, 24).preference).toEqual({ stage: 'dpo', beta: 2, ftx: 0, loss: 'simpo', labelSmoothing: 0, simpoGamma: 0.5, ktoChosenWeight: 1, ktoRejectedWeight: 1 });
    const kto = configFromObject({ ...withStageKeys({ ...DEFAULT_SETTINGS, stage: 'kto', kto_rejected_weight: 1.5 }), dataset: 'd' }).config;
    expect(trainOptionsFromConfig(kto, 24).preference).toMatchObject({ stage: 'kto', beta: 0.1, ktoRejectedWeight: 1.5 });
    expect(trainOptionsFromConfig(configFromObject({ ...DEFAULT_SETTINGS, stage: 'rm', dataset: 'd' }).config, 24).preference).toMatchObject({ stage: 'rm' });
    expect(trainOptionsFromConfig(configFromObject({ ...DEFAULT_SETTINGS, dataset: 'd' }).config, 24).preference).toBeNull();
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

  it("pruning keeps the best model's checkpoint (load_best_model_at_end loads it at the end)", async () => {
    const db = { dbName: `t-${Math.random()}` };
    const a = browserRunStore('a', db);
    const steps = [2, 4, 6, 8];
    const best = steps[Math.floor(Math.random() * 2)]!; // an old one, which rotation alone would delete
    for (const step of steps) await a.write(`checkpoint-${step}/trainer_state.json`, '{}');
    await pruneCheckpoints('a', 2, { ...db, best: `checkpoint-${best}` });
    expect((await listRunFiles('a', db)).sort()).toEqual([`checkpoint-${best}/trainer_state.json`, 'checkpoint-8/trainer_state.json']);
    // save_total_limit 1 keeps the newest as well while it is not the best (HF's rotation)
    await pruneCheckpoints('a', 1, { ...db, best: `checkpoint-${best}` });
    expect((await listRunFiles('a', db)).sort()).toEqual([`checkpoint-${best}/trainer_state.json`, 'checkpoint-8/trainer_state.json']);
    await pruneCheckpoints('a', 1, db);
    expect(await listRunFiles('a', db)).toEqual(['checkpoint-8/trainer_state.json']);
  });
});
