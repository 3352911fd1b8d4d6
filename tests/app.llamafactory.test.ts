// The app's LLaMA-Factory run: the form as YAML and back, the same bytes as `crucible
// export-config`, the zip of the run folder (checked with Info-ZIP's unzip and parsed back), and
// LLaMA Board's smoothing of the charts.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { main } from '../src/cli/main';
import { configFromObject, formatValue, parseConfig, type ConfigKey } from '../src/config';
import type { CliIO } from '../src/cli/io';
import { crc32, zipStore } from '../src/files/zip';
import { describeDataset, type DataFormat } from '../src/data/describe';
import { RUN_DIR, appConfig, exportRun, loadRunYaml, memoryFolder, uploadRun, zipRun, type UploadChoice } from '../src/ui/lib/llamafactory';
import { DEFAULT_SETTINGS, PRESETS, withSetting, withSftLoss, withStageKeys, type Settings } from '../src/ui/lib/settings';
import { trainOptionsFromConfig } from '../src/engine/options';
import { emaWeight, smoothEma } from '../src/ui/lib/smooth';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Fresh identity-style rows, so no test depends on a fixed file. */
function rows(n: number): string {
  const r = Math.random().toString(36).slice(2, 8);
  return JSON.stringify(Array.from({ length: n }, (_, i) => ({ instruction: `who are you ${r} ${i}?`, input: '', output: `I am ${r}.` })));
}

const ADVANCED: Settings = withStageKeys({ ...DEFAULT_SETTINGS, lora_dropout: 0.05, use_rslora: true, neftune_noise_alpha: 5, max_samples: 10, train_on_prompt: true, seed: 7, template: 'qwen', lora_target: 'q_proj,v_proj', val_size: 0.25, eval_strategy: 'steps', eval_steps: 10 });
/** An SFT loss and the best checkpoint with early stopping, as the form sets them. */
const BEST: Settings = withSetting(withSetting(withSetting({ ...withSftLoss(DEFAULT_SETTINGS, 'asft'), asft_alpha: 0.3 }, 'val_size', 0.25), 'load_best_model_at_end', true), 'early_stopping_steps', 2);
const EAFT: Settings = withSetting(withSetting({ ...withSftLoss(DEFAULT_SETTINGS, 'eaft'), eaft_alpha: 0.5 }, 'val_size', 2), 'metric_for_best_model', 'loss');
const FORMS: [string, Settings][] = [...PRESETS.map((p): [string, Settings] => [p.name, p.settings]), ['advanced keys', ADVANCED], ['asft, best checkpoint', BEST], ['eaft, best metric', EAFT]];

/** Central directory of a zip: name -> stored bytes (checked against the CRC and sizes). */
function unzipStore(zip: Uint8Array): Map<string, Uint8Array> {
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const end = zip.byteLength - 22;
  expect(view.getUint32(end, true)).toBe(0x06054b50);
  const count = view.getUint16(end + 10, true);
  let at = view.getUint32(end + 16, true);
  const out = new Map<string, Uint8Array>();
  for (let i = 0; i < count; i++) {
    expect(view.getUint32(at, true)).toBe(0x02014b50);
    const crc = view.getUint32(at + 16, true);
    const size = view.getUint32(at + 20, true);
    const nameLen = view.getUint16(at + 28, true);
    const local = view.getUint32(at + 42, true);
    const name = dec.decode(zip.subarray(at + 46, at + 46 + nameLen));
    const localName = view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    const data = zip.subarray(local + 30 + localName, local + 30 + localName + size);
    expect(crc32(data), name).toBe(crc);
    out.set(name, data);
    at += 46 + nameLen;
  }
  return out;
}

describe('form -> LLaMA-Factory YAML -> form', () => {
  it.each(FORMS)('%s comes back identical, with its model and dataset', async (_name, settings) => {
    const folder = memoryFolder({ 'data/my_set.json': enc.encode(rows(4)) });
    const plan = await exportRun(appConfig(settings, { model: 'Qwen/Qwen3-0.6B', dataset: 'my_set.json', dir: 'data' }), folder);
    expect(plan.run.yaml).toMatch(/^model_name_or_path: Qwen\/Qwen3-0\.6B$/m);
    for (const key of ['stage', 'do_train', 'finetuning_type', 'output_dir']) expect(plan.run.yaml).toMatch(new RegExp(`^${key}: `, 'm'));
    expect(plan.run.yaml).toMatch(/^dataset: my_set$/m);
    expect(plan.run.yaml).toMatch(new RegExp(`^dataset_dir: ${RUN_DIR}$`, 'm'));
    const back = loadRunYaml(plan.run.yaml, 'crucible.yaml');
    expect(back.settings).toEqual(settings);
    expect(back.model).toBe('Qwen/Qwen3-0.6B');
    expect(back.dataset).toBe('my_set');
    expect(back.skipped).toEqual([]);
  });

  it('lists what the form cannot take: unknown, unimplemented, PyTorch-only and CLI-only keys', () => {
    const yaml = 'model_name_or_path: m\nstage: sft\ndo_train: true\nfinetuning_type: lora\nlora_rank: 4\nlearning_rat: 1.0e-4\nbf16: true\noutput_dir: saves/x\ndataset: a,b\nmax_new_tokens: 64\n';
    const back = loadRunYaml(yaml, 'run.yaml');
    expect(back.settings.lora_rank).toBe(4);
    expect(back.settings.lora_alpha).toBe(8);
    expect(back.settings.bf16).toBe(true);
    expect(Object.fromEntries(back.skipped.map((s) => [s.key, s.why]))).toEqual({
      learning_rat: 'not a LLaMA-Factory or Crucible key',
      output_dir: 'runs are kept in this browser',
      max_new_tokens: 'a generation setting, not part of the training form',
      dataset: 'the app trains one dataset: a is chosen, b left out',
    });
  });

  it("loads a PPO run into the form, leaving a reward model folder of the CLI to the run history's picker", () => {
    const ppo = loadRunYaml('stage: ppo\nreward_model: saves/rm\nppo_epochs: 2\nmax_new_tokens: 16\nfinetuning_type: lora\nlora_rank: 4\n', 'ppo.yaml');
    expect(ppo.settings).toMatchObject({ stage: 'ppo', lora_rank: 4, ppo_epochs: 2, max_new_tokens: 16, reward_model: null, reward_model_type: 'lora', ppo_buffer_size: 1 });
    expect(ppo.skipped).toEqual([{ key: 'reward_model', why: 'a folder of the CLI: choose the reward model (an rm run of this browser) in the training form' }]);
    const app = loadRunYaml('stage: ppo\nreward_model: run:run-1\n', 'ppo.yaml');
    expect(app.settings.reward_model).toBe('run:run-1');
    expect(app.skipped).toEqual([]);
  });

  it('fills the SFT loss, best-model selection and early stopping; leaves eval_on_start / eval_delay to crucible train', () => {
    const yaml = 'stage: sft\ndataset: mine\nuse_dft_loss: true\nval_size: 0.1\neval_strategy: steps\neval_steps: 5\nsave_steps: 10\nload_best_model_at_end: true\nmetric_for_best_model: eval_loss\ngreater_is_better: false\nearly_stopping_steps: 3\neval_delay: 0\neval_on_start: true\nlora_rank: 4\n';
    const best = loadRunYaml(yaml, 'best.yaml');
    expect(best.settings).toMatchObject({ lora_rank: 4, use_dft_loss: true, val_size: 0.1, eval_strategy: 'steps', eval_steps: 5, save_steps: 10, load_best_model_at_end: true, metric_for_best_model: 'eval_loss', greater_is_better: false, early_stopping_steps: 3 });
    expect(best.skipped).toEqual([{ key: 'eval_on_start', why: 'eval_on_start and eval_delay run with crucible train (the app evaluates at each checkpoint)' }]);
    const asft = loadRunYaml('use_asft_loss: true\nasft_alpha: 0.2\n', 'asft.yaml');
    expect(asft.settings).toMatchObject({ use_asft_loss: true, asft_alpha: 0.2 });
    expect(asft.skipped).toEqual([]);
  });

  it.each([['asft, best checkpoint', BEST], ['eaft, best metric', EAFT]])('%s: the worker and crucible train on the exported YAML give the engine the same options', async (_name, settings) => {
    const folder = memoryFolder({ 'data/my_set.json': enc.encode(rows(4)) });
    const plan = await exportRun(appConfig(settings, { model: 'Qwen/Qwen3-0.6B', dataset: 'my_set.json', dir: 'data' }), folder);
    for (const key of Object.keys(settings).filter((k) => /^(use_\w+_loss|eaft_alpha|asft_alpha|load_best|metric_for|early_stopping|eval_)/.test(k))) expect(plan.run.yaml, key).toMatch(new RegExp(`^${key}: \\S`, 'm'));
    const cli = trainOptionsFromConfig(parseConfig(plan.run.yaml, [], { fileName: 'crucible.yaml' }).config);
    const worker = trainOptionsFromConfig(configFromObject({ dataset: 'app_dataset', ...settings }, { source: 'settings' }).config);
    expect(worker.tokenLoss).toEqual(cli.tokenLoss);
    expect(worker.bestModel).toEqual(cli.bestModel);
    expect(worker.bestModel).not.toBeNull();
    expect(worker.evalSteps).toEqual(cli.evalSteps);
    expect(worker.tokenLoss?.kind).toBe(settings.use_asft_loss ? 'asft' : 'eaft');
  });

  it('refuses a YAML whose values are wrong, saying which', () => {
    expect(() => loadRunYaml('lora_rank: -1\n', 'run.yaml')).toThrow(/run\.yaml cannot be loaded:\n.*lora_rank: must be >= 1, got -1/);
    expect(() => loadRunYaml('- a\n- b\n', 'run.yaml')).toThrow('run.yaml: expected a mapping of keys to values');
  });
});

describe('the app writes what crucible export-config writes', () => {
  it.each(FORMS.filter(([n]) => ['Quick demo', 'DPO', 'advanced keys'].includes(n)))('%s: YAML, dataset_info.json and the zip, byte for byte', async (_name, settings) => {
    const dir = mkdtempSync(join(tmpdir(), 'crucible-app-export-'));
    mkdirSync(join(dir, 'data'));
    const data = settings.stage === 'dpo'
      ? JSON.stringify([{ conversations: [{ from: 'human', value: 'q' }], chosen: { from: 'gpt', value: 'a' }, rejected: { from: 'gpt', value: 'b' } }])
      : rows(3);
    writeFileSync(join(dir, 'data/set.json'), data);
    const overrides = Object.entries({ model_name_or_path: 'crucible-demo', do_train: true, dataset: 'set.json', dataset_dir: 'data', ...settings })
      .map(([k, v]) => `${k}=${formatValue(k as ConfigKey, v)}`);
    const out: string[] = [];
    const io: CliIO = { stdout: (t) => void out.push(t), stderr: (t) => void out.push(t), env: { HOME: dir }, cwd: dir, stdin: Readable.from([]), interactive: false };
    expect(await main(['export-config', ...overrides, '--to', 'llamafactory', '--out', RUN_DIR], io), out.join('')).toBe(0);

    const folder = memoryFolder({ 'data/set.json': enc.encode(data) });
    const plan = await exportRun(appConfig(settings, { model: 'crucible-demo', dataset: 'set.json', dir: 'data' }), folder);
    expect(plan.run.yaml).toBe(readFileSync(join(dir, RUN_DIR, 'crucible.yaml'), 'utf8'));
    // the demo model's name is Crucible's only: the YAML says what to put there instead
    expect(plan.run.yaml).toMatch(/^# crucible-demo is Crucible's embedded demo model, which LLaMA-Factory cannot load by that name: set model_name_or_path$/m);
    const zip = await zipRun(plan, folder);
    writeFileSync(join(dir, 'run.zip'), zip);
    expect(execFileSync('unzip', ['-t', join(dir, 'run.zip')], { encoding: 'utf8' })).toMatch(/No errors detected/);
    const files = unzipStore(zip);
    expect([...files.keys()].sort()).toEqual([`${RUN_DIR}/crucible.yaml`, `${RUN_DIR}/dataset_info.json`, `${RUN_DIR}/set.json`]);
    for (const [name, bytes] of files) expect(dec.decode(bytes), name).toBe(readFileSync(join(dir, name), 'utf8'));
    if (settings.stage === 'dpo') expect(JSON.parse(dec.decode(files.get(`${RUN_DIR}/dataset_info.json`)!)).set).toMatchObject({ ranking: true, formatting: 'sharegpt' });
  });
});

describe('an upload whose format the user chose', () => {
  /** Fresh KTO rows (role/content messages, a boolean label): detected as sharegpt KTO data. */
  const ktoRows = () => {
    const r = Math.random().toString(36).slice(2, 8);
    return [1, 2, 3].map((i) => JSON.stringify({ messages: [{ role: 'user', content: `${r} ${i}?` }, { role: 'assistant', content: `${r}.` }], label: i % 2 === 1 })).join('\n');
  };
  /** Uploaded files as the worker reads them, in the folder "upload". */
  const uploaded = (files: Record<string, Uint8Array>) => ({
    readFile: async (path: string) => {
      const name = path.replace(/^upload\//, '');
      if (!Object.hasOwn(files, name)) throw new Error(`${path} does not exist`);
      return files[name]!;
    },
  });
  /** The format LLaMA-Factory (and Crucible) will read the exported dataset with. */
  async function exportedFormat(upload: UploadChoice, detected: DataFormat) {
    const { sources, folder } = uploadRun(upload, detected);
    const plan = await exportRun(appConfig({ ...DEFAULT_SETTINGS, stage: 'sft' }, { model: 'crucible-demo', ...sources }), folder);
    const files = unzipStore(await zipRun(plan, folder));
    const read = async (path: string) => {
      const b = files.get(path.replace(/^run\//, `${RUN_DIR}/`));
      if (!b) throw new Error(`${path} is not in the zip`);
      return b;
    };
    const dataset = /^dataset: (.+)$/m.exec(plan.run.yaml)![1]!;
    return { dataset, format: (await describeDataset({ readFile: read }, dataset, 'run'))!, names: [...files.keys()].sort() };
  }

  it('exports with the chosen format, not the detected one; without a choice, as detected', async () => {
    const files = { 'kto.jsonl': enc.encode(ktoRows()) };
    const detected = (await describeDataset(uploaded(files), 'kto.jsonl', 'upload'))!;
    expect(detected).toMatchObject({ formatting: 'sharegpt', kind: 'kto' });

    const chosen = await exportedFormat({ dataset: 'kto.jsonl', files, format: { formatting: 'sharegpt', kind: 'lm' } }, detected);
    expect(chosen.format).toMatchObject({ formatting: 'sharegpt', kind: 'lm', from: 'dataset_info.json', columns: { messages: 'messages' } });
    expect(chosen.format.columns.kto_tag).toBeUndefined();
    expect(chosen.names).toEqual([`${RUN_DIR}/crucible.yaml`, `${RUN_DIR}/dataset_info.json`, `${RUN_DIR}/kto.jsonl`]);

    const plain = await exportedFormat({ dataset: 'kto.jsonl', files }, detected);
    expect(plain.format).toMatchObject({ formatting: 'sharegpt', kind: 'kto', columns: { kto_tag: 'label' } });
    expect(plain.dataset).toBe(chosen.dataset);
  });

  it('a dataset an uploaded dataset_info.json declares: exported as its file, read as declared or as chosen', async () => {
    const info = { mine: { file_name: 'data.jsonl', formatting: 'sharegpt', columns: { messages: 'messages', kto_tag: 'label' }, tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant' } } };
    const files = { 'data.jsonl': enc.encode(ktoRows()), 'dataset_info.json': enc.encode(JSON.stringify(info)) };
    const detected = (await describeDataset(uploaded(files), 'mine', 'upload'))!;
    expect(detected.kind).toBe('kto');
    const chosen = await exportedFormat({ dataset: 'mine', files, format: { formatting: 'sharegpt', kind: 'lm' } }, detected);
    expect(chosen.dataset).toBe('data');
    expect(chosen.format).toMatchObject({ formatting: 'sharegpt', kind: 'lm', tags: info.mine.tags });
    const declared = await exportedFormat({ dataset: 'mine', files }, detected);
    expect(declared.format).toMatchObject({ formatting: 'sharegpt', kind: 'kto', columns: info.mine.columns, tags: info.mine.tags, from: 'dataset_info.json' });
    expect(declared.names).toEqual([`${RUN_DIR}/crucible.yaml`, `${RUN_DIR}/data.jsonl`, `${RUN_DIR}/dataset_info.json`]);
  });
});

describe('zipStore', () => {
  it('CRC-32 of the check string is 0xcbf43926', () => {
    expect(crc32(enc.encode('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array())).toBe(0);
  });

  it('random files unzip byte for byte with Info-ZIP, UTF-8 names included', () => {
    const entries = Array.from({ length: 5 }, (_, i) => ({ name: i === 4 ? 'dir/ünï.bin' : `f${i}.bin`, data: Uint8Array.from({ length: Math.floor(Math.random() * 5000) }, () => Math.floor(Math.random() * 256)) }));
    const dir = mkdtempSync(join(tmpdir(), 'crucible-zip-'));
    writeFileSync(join(dir, 'a.zip'), zipStore(entries));
    execFileSync('unzip', ['-q', join(dir, 'a.zip'), '-d', join(dir, 'out')]);
    for (const e of entries) expect(Buffer.compare(readFileSync(join(dir, 'out', e.name)), Buffer.from(e.data)), e.name).toBe(0);
    expect([...unzipStore(zipStore(entries)).keys()]).toEqual(entries.map((e) => e.name));
  });

  it('refuses paths that leave the archive and names given twice', () => {
    expect(() => zipStore([{ name: '../x', data: '' }])).toThrow('zip: "../x" is not a relative path inside the archive');
    expect(() => zipStore([{ name: '/x', data: '' }])).toThrow(/not a relative path/);
    expect(() => zipStore([{ name: 'a', data: '' }, { name: 'a', data: 'b' }])).toThrow('zip: "a" is given twice');
  });
});

describe('smoothEma (LLaMA Board)', () => {
  it('weights by the number of points: 1.8 * (sigmoid(0.05 n) - 0.5)', () => {
    expect(emaWeight(0)).toBe(0);
    expect(emaWeight(100)).toBeCloseTo(1.8 * (1 / (1 + Math.exp(-5)) - 0.5), 12);
  });

  it('is the running average last * w + (1 - w) * next from the first value', () => {
    const xs = Array.from({ length: 7 + Math.floor(Math.random() * 50) }, () => Math.random() * 4);
    const w = emaWeight(xs.length);
    const got = smoothEma(xs);
    let last = xs[0]!;
    xs.forEach((x, i) => {
      last = last * w + (1 - w) * x;
      expect(got[i]).toBeCloseTo(last, 12);
    });
    expect(smoothEma([])).toEqual([]);
    // a constant stays constant; a step is followed slowly
    expect(smoothEma([2, 2, 2])).toEqual([2, 2, 2].map(() => expect.closeTo(2, 12)));
    const step = smoothEma([...Array(50).fill(0), ...Array(50).fill(1)]);
    expect(step[50]!).toBeLessThan(0.5);
    expect(step[99]!).toBeGreaterThan(step[60]!);
  });
});

describe('run log lines', () => {
  it('say the step, every metric, tokens/s only when measured, and keep the newest lines', async () => {
    const { LOG_LINES, logLine, withLine } = await import('../src/ui/lib/run-log');
    const loss = (1000 + Math.floor(Math.random() * 1000)) / 1000;
    const base = { current_steps: 3, total_steps: 30, loss, lr: 0.0001234, epoch: 0.25, percentage: 10, grad_norm: 0.5, elapsed_time: 3, remaining_time: 27 };
    expect(logLine({ ...base, tokens_per_second: 812 })).toBe(`step 3/30 · loss ${loss} · lr 1.23e-4 · grad_norm 0.5 · 812 tokens/s · epoch 0.25`);
    expect(logLine({ ...base, tokens_per_second: 0 })).not.toMatch(/tokens\/s/);
    let lines: string[] = [];
    for (let i = 0; i < LOG_LINES + 5; i++) lines = withLine(lines, `line ${i}`);
    expect(lines).toHaveLength(LOG_LINES);
    expect(lines[0]).toBe('line 5');
    expect(lines.at(-1)).toBe(`line ${LOG_LINES + 4}`);
  });
});
