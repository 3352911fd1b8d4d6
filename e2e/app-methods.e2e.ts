// The app's methods and results against the CLI's (issues 16 and 18): Evaluate & predict with an
// imported adapter shows the predictions and BLEU-4 / ROUGE that `crucible train` with do_predict
// writes for the same data and adapter (run here in Node); an OFT run trains and its merged model
// downloads as one zip; stage rm then stage ppo with the rm run picked as the reward model; the
// optimizer and half-precision controls. Phone-size (390x844) screenshots of those panels go to
// test-results/e2e-methods.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { formatValue, type ConfigKey } from '../src/config';
import { encodeSafetensors, openSafetensors } from '../src/model/safetensors';
import { DEFAULT_SETTINGS } from '../src/ui/lib/settings';
import { makeRng } from '../tests/helpers/check';
import { buildApp, hasChromium, launchChromium, openAppPage, ROOT, stopwatch } from './harness';
import { serveStatic, type StaticServer } from './static-server';

const SHOTS = join(ROOT, 'test-results/e2e-methods');
const DEMO = join(ROOT, 'public/demo/model');
const log = stopwatch('e2e-methods');

/** A LoRA adapter on the demo model's q_proj and v_proj with random A and B (B non-zero: the answers change). */
async function writeAdapter(dir: string, seed: number): Promise<void> {
  const cfg = JSON.parse(readFileSync(join(DEMO, 'config.json'), 'utf8')) as { hidden_size: number; num_hidden_layers: number; num_attention_heads: number; num_key_value_heads: number; head_dim: number };
  const rng = makeRng(seed);
  const r = 4;
  const tensors: Parameters<typeof encodeSafetensors>[0] = {};
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    for (const [name, out] of [['q_proj', cfg.num_attention_heads * cfg.head_dim], ['v_proj', cfg.num_key_value_heads * cfg.head_dim]] as const) {
      const key = `base_model.model.model.layers.${l}.self_attn.${name}`;
      tensors[`${key}.lora_A.weight`] = { dtype: 'F32', shape: [r, cfg.hidden_size], data: rng.randn(r * cfg.hidden_size, 0.3) };
      tensors[`${key}.lora_B.weight`] = { dtype: 'F32', shape: [out, r], data: rng.randn(out * r, 0.3) };
    }
  }
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'adapter_model.safetensors'), encodeSafetensors(tensors));
  await writeFile(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: 8, lora_dropout: 0, target_modules: ['q_proj', 'v_proj'], bias: 'none' }));
}

/** `crucible train` with do_predict on the demo's identity data: the app's form (DEFAULT_SETTINGS), the adapter, max_samples and max_new_tokens. */
async function cliPredict(cwd: string, adapter: string, samples: number, newTokens: number): Promise<{ metrics: Record<string, number>; predictions: unknown[] }> {
  const keys = { ...DEFAULT_SETTINGS, model_name_or_path: DEMO, adapter_name_or_path: adapter, do_train: false, do_predict: true, predict_with_generate: true, eval_dataset: 'identity', dataset_dir: join(ROOT, 'public/demo/data'), max_samples: samples, max_new_tokens: newTokens, output_dir: join(cwd, 'predict') };
  const args = Object.entries(keys).filter(([, v]) => v !== null).map(([k, v]) => `${k}=${formatValue(k as ConfigKey, v)}`);
  // the crucible command itself, as a user runs it
  await promisify(execFile)(process.execPath, [join(ROOT, 'bin/crucible.js'), 'train', ...args], { cwd, env: { ...process.env, HOME: cwd } });
  const metrics = JSON.parse(readFileSync(join(cwd, 'predict/predict_results.json'), 'utf8')) as Record<string, number>;
  const predictions = readFileSync(join(cwd, 'predict/generated_predictions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as unknown);
  return { metrics, predictions };
}

describe.skipIf(!hasChromium() || !existsSync(join(DEMO, 'model.safetensors')))('app: methods, predict equal to the CLI, merged zip, PPO (Chromium, WebGPU on SwiftShader)', () => {
  let dir: string;
  let site: StaticServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const errors: string[] = [];
  const shot = (name: string, fullPage = false) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
  const set = async (name: string, v: string) => {
    const f = page.getByRole('spinbutton', { name, exact: true });
    await f.fill(v);
    await f.press('Tab');
  };
  const openAdvanced = async () => {
    if ((await page.getByTestId('advanced').getAttribute('open')) === null) await page.getByText('Advanced', { exact: true }).click();
  };
  const train = async (what: string) => {
    const t = performance.now();
    await page.getByRole('button', { name: 'Start training' }).click();
    await expect.poll(() => page.getByTestId('run-status').textContent(), { timeout: 240_000, interval: 500 }).toMatch(/^(done|failed)$/);
    expect(await page.getByTestId('run-status').textContent(), (await page.getByTestId('run-log').textContent()) ?? '').toBe('done');
    log(`${what}: ${((performance.now() - t) / 1000).toFixed(1)} s`);
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'crucible-e2e-methods-'));
    await rm(SHOTS, { recursive: true, force: true });
    await mkdir(SHOTS, { recursive: true });
    await buildApp(join(dir, 'dist'));
    site = await serveStatic([join(dir, 'dist')]);
    browser = await launchChromium();
    // a phone: the panels these tests use are the ones looked at in the screenshots
    context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, acceptDownloads: true });
    page = await openAppPage(context, site.url, errors);
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail' && page) {
      await shot(`failed-${ctx.task.name.replace(/\W+/g, '-').slice(0, 40)}`, true).catch(() => undefined);
      log('page errors:', errors);
    }
  });

  afterAll(async () => {
    await browser?.close();
    await site?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('Evaluate & predict with an imported adapter equals crucible train do_predict on the same data and adapter', async () => {
    const t0 = performance.now();
    const adapter = join(dir, 'adapter');
    await writeAdapter(adapter, (Math.random() * 2 ** 31) >>> 0);
    const SAMPLES = 3, TOKENS = 6;
    const cli = await cliPredict(dir, adapter, SAMPLES, TOKENS);
    log(`CLI predict: ${((performance.now() - t0) / 1000).toFixed(1)} s`, cli.metrics);

    await page.locator('input[type=file][accept=".json,.safetensors"]').setInputFiles([join(adapter, 'adapter_config.json'), join(adapter, 'adapter_model.safetensors')]);
    await expect.poll(() => page.getByTestId('export-message').textContent(), { timeout: 60_000 }).toMatch(/Loaded adapter_model\.safetensors/);
    const panel = page.getByRole('region', { name: 'Evaluate & predict' });
    await panel.getByLabel('Examples (max_samples)').fill(String(SAMPLES));
    await panel.getByLabel('Answer length (max_new_tokens)').fill(String(TOKENS));
    await expect.poll(() => panel.getByLabel('Answer with the adapter').isChecked()).toBe(true);
    await panel.getByRole('button', { name: 'Run predict' }).click();
    const metrics = panel.getByTestId('predict-metrics');
    await metrics.waitFor({ timeout: 240_000 });
    const text = (await metrics.textContent()) ?? '';
    const shown = (label: string) => new RegExp(`${label} (\\d+\\.\\d\\d)`).exec(text)?.[1];
    for (const [key, label] of [['predict_bleu-4', 'BLEU-4'], ['predict_rouge-1', 'ROUGE-1'], ['predict_rouge-2', 'ROUGE-2'], ['predict_rouge-l', 'ROUGE-L']]) {
      expect(shown(label), `${label} in "${text}"`).toBe(cli.metrics[key]!.toFixed(2));
    }
    expect(text).toMatch(/adapter: adapter_model\.safetensors/);
    // the predictions file is the CLI's, record for record
    const [file] = await Promise.all([page.waitForEvent('download'), panel.getByRole('button', { name: 'Download generated_predictions.jsonl' }).click()]);
    const path = join(dir, 'app_predictions.jsonl');
    await file.saveAs(path);
    const app = (await readFile(path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as unknown);
    expect(app).toEqual(cli.predictions);
    expect(app).toHaveLength(SAMPLES);
    await panel.scrollIntoViewIfNeeded();
    await shot('01-predict-phone');
    expect(errors).toEqual([]);
    log(`predict equal to the CLI: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }, 300_000);

  it('OFT: the method, its fields and YAML keys; 2 steps train, the merged model downloads as one zip', async () => {
    await page.getByRole('button', { name: 'Show as LLaMA-Factory YAML' }).click();
    await page.getByLabel('Method').selectOption('oft');
    expect(await page.getByRole('spinbutton', { name: 'OFT block size', exact: true }).inputValue()).toBe('32');
    expect(await page.getByRole('spinbutton', { name: 'LoRA rank', exact: true }).count()).toBe(0);
    await expect.poll(() => page.getByTestId('lf-yaml').textContent()).toMatch(/^finetuning_type: oft$/m);
    await set('OFT block size', '8');
    await expect.poll(() => page.getByTestId('lf-yaml').textContent()).toMatch(/^oft_block_size: 8$/m);
    await set('Max steps', '2');
    await set('Batch size', '2');
    await set('Cutoff length', '24');
    await set('Learning rate', '0.01');
    await page.getByText('OFT targets').scrollIntoViewIfNeeded();
    await shot('02-oft-setup-phone');
    // the optimizers OFT takes, and half precision as this GPU runs it
    await openAdvanced();
    const optimizer = page.getByTestId('optimizer');
    expect(await optimizer.locator('option').allTextContents()).toEqual(['AdamW', 'Adam-mini', 'Muon']);
    await page.getByTestId('half').check();
    const f16 = (await page.getByTestId('gpu-f16').textContent())?.trim();
    await expect.poll(() => page.getByTestId('half-note').textContent()).toMatch(/OFT trains in f32/);
    await optimizer.scrollIntoViewIfNeeded();
    await shot('03-advanced-oft-phone');
    await page.getByTestId('half').uncheck();
    await train('oft 2 steps');
    await expect.poll(() => page.getByTestId('adapter-state').textContent()).toMatch(/OFT/);

    // the merged model, one zip with the base's files: W R for every adapted weight (the weights change)
    const [zip] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download merged model (zip)' }).click()]);
    expect(zip.suggestedFilename()).toMatch(/^crucible-demo-run-[\w-]+-merged\.zip$/);
    const zipPath = join(dir, 'merged.zip');
    await zip.saveAs(zipPath);
    expect(execFileSync('unzip', ['-t', zipPath], { encoding: 'utf8' })).toMatch(/No errors detected/);
    const listing = execFileSync('unzip', ['-Z1', zipPath], { encoding: 'utf8' }).trim().split('\n');
    const folder = zip.suggestedFilename().replace(/\.zip$/, '');
    expect(listing).toEqual(expect.arrayContaining([`${folder}/config.json`, `${folder}/model.safetensors`, `${folder}/tokenizer.json`]));
    execFileSync('unzip', ['-q', zipPath, '-d', join(dir, 'merged')]);
    const read = async (p: string) => {
      const b = new Uint8Array(await readFile(p));
      return { b, st: await openSafetensors({ name: p, size: b.length, read: async (o, n) => b.subarray(o, o + n) }) };
    };
    const merged = await read(join(dir, 'merged', folder, 'model.safetensors'));
    const base = await read(join(DEMO, 'model.safetensors'));
    expect([...merged.st.tensors.keys()].sort()).toEqual([...base.st.tensors.keys()].sort());
    const slice = (f: typeof merged, name: string) => { const t = f.st.tensors.get(name)!; return f.b.subarray(t.begin, t.end); };
    expect(Buffer.compare(slice(merged, 'model.layers.0.self_attn.q_proj.weight'), slice(base, 'model.layers.0.self_attn.q_proj.weight'))).not.toBe(0);
    expect(Buffer.compare(slice(merged, 'model.embed_tokens.weight'), slice(base, 'model.embed_tokens.weight'))).toBe(0);
    await page.getByRole('region', { name: 'Export' }).scrollIntoViewIfNeeded();
    await shot('04-export-phone');
    log(`oft: gpu f16 ${f16}`);
    expect(errors).toEqual([]);
  }, 300_000);

  it('stage ppo: an rm run is offered as the reward model; a PPO step trains with it', async () => {
    await page.getByLabel('Method').selectOption('lora');
    await page.getByLabel('Stage').selectOption('rm');
    await expect.poll(() => page.locator('#demo-dataset').inputValue()).toBe('dpo_en_demo');
    await set('Max steps', '1');
    await set('Batch size', '1');
    await set('Cutoff length', '24');
    await train('rm 1 step');
    await page.getByLabel('Stage').selectOption('ppo');
    await expect.poll(() => page.locator('#demo-dataset').inputValue()).toBe('identity');
    // Start waits for a reward model, saying so
    await expect.poll(() => page.getByTestId('problem-reward_model').textContent()).toMatch(/stage ppo needs a reward model/);
    expect(await page.getByRole('button', { name: 'Start training' }).isDisabled()).toBe(true);
    const picker = page.locator('#f-reward_model');
    const options = await picker.locator('option').allTextContents();
    expect(options).toHaveLength(2);
    expect(options[1]).toMatch(/dpo_en_demo .*rm.*\(step 1\)/);
    await picker.selectOption({ index: 1 });
    await expect.poll(() => page.getByTestId('lf-yaml').textContent()).toMatch(/^reward_model: run:run-[\w-]+$/m);
    await set('Answer length', '4');
    await set('PPO epochs', '1');
    await set('Batch size', '2');
    await picker.scrollIntoViewIfNeeded();
    await shot('05-ppo-setup-phone');
    await train('ppo 1 step');
    const lines = (await page.getByTestId('run-log').textContent()) ?? '';
    expect(lines).toMatch(/step 1\/1 · loss/);
    expect(await page.getByTestId('run-metrics').textContent()).toMatch(/reward -?\d/);
    await page.getByTestId('run-log').scrollIntoViewIfNeeded();
    await shot('06-ppo-trained-phone');
    expect(errors).toEqual([]);
  }, 400_000);

  it('the optimizers of a full run (GaLore, APOLLO, BAdam) with their fields', async () => {
    await page.getByLabel('Stage').selectOption('sft');
    await page.getByLabel('Method').selectOption('full');
    await openAdvanced();
    const optimizer = page.getByTestId('optimizer');
    expect(await optimizer.locator('option').allTextContents()).toEqual(['AdamW', 'GaLore', 'APOLLO', 'BAdam', 'Adam-mini', 'Muon']);
    await optimizer.selectOption('galore');
    expect(await page.getByRole('spinbutton', { name: 'Projection rank', exact: true }).inputValue()).toBe('16');
    await expect.poll(() => page.getByTestId('lf-yaml').textContent()).toMatch(/^use_galore: true$/m);
    await optimizer.selectOption('badam');
    expect(await page.getByRole('spinbutton', { name: 'Switch every', exact: true }).inputValue()).toBe('50');
    await expect.poll(() => page.getByTestId('lf-yaml').textContent()).toMatch(/^use_badam: true$/m);
    expect(await page.getByTestId('lf-yaml').textContent()).not.toMatch(/galore/);
    await optimizer.scrollIntoViewIfNeeded();
    await shot('07-optimizers-phone');
    // back to LoRA: AdamW again (GaLore, APOLLO and BAdam train full / freeze runs)
    await page.getByLabel('Method').selectOption('lora');
    expect(await optimizer.inputValue()).toBe('adamw');
    expect(errors).toEqual([]);
  }, 120_000);
});
