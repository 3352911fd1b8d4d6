// The app and LLaMA-Factory (issue 16, items 3 and 6): the YAML it shows is the one `crucible
// export-config --to llamafactory --out crucible-run` writes, byte for byte; Download and
// Download as zip save it (the zip with dataset_info.json and the data file, checked with unzip);
// Load config fills the form and lists the keys it did not take; Evaluate & predict answers a few
// demo examples with the demo model and shows BLEU-4 / ROUGE and the predictions; a 2-step run
// shows its live log, the smoothed loss and the lr curve.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { main } from '../src/cli/main';
import type { CliIO } from '../src/cli/io';
import { formatValue, type ConfigKey } from '../src/config';
import { DEFAULT_SETTINGS } from '../src/ui/lib/settings';
import { buildApp, hasChromium, launchChromium, openAppPage, ROOT, stopwatch } from './harness';
import { serveStatic, type StaticServer } from './static-server';

const SHOTS = join(ROOT, 'test-results/e2e-llamafactory');
const log = stopwatch('e2e-llamafactory');

/** What the CLI writes for the app's starting point: the demo model, the identity demo file, the default form. */
async function cliYaml(cwd: string): Promise<string> {
  const overrides = Object.entries({ model_name_or_path: 'crucible-demo', do_train: true, dataset: 'identity.json', dataset_dir: join(ROOT, 'public/demo/data'), ...DEFAULT_SETTINGS })
    .map(([k, v]) => `${k}=${formatValue(k as ConfigKey, v)}`);
  const out: string[] = [];
  const io: CliIO = { stdout: (t) => void out.push(t), stderr: (t) => void out.push(t), env: { HOME: cwd }, cwd, stdin: Readable.from([]), interactive: false };
  expect(await main(['export-config', ...overrides, '--to', 'llamafactory', '--out', 'crucible-run'], io), out.join('')).toBe(0);
  return readFileSync(join(cwd, 'crucible-run/crucible.yaml'), 'utf8');
}

describe.skipIf(!hasChromium() || !existsSync(join(ROOT, 'public/demo/model/model.safetensors')))('app: LLaMA-Factory YAML, zip, load, predict (Chromium, WebGPU on SwiftShader)', () => {
  let dir: string;
  let site: StaticServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const errors: string[] = [];
  const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'crucible-e2e-lf-'));
    await rm(SHOTS, { recursive: true, force: true });
    await mkdir(SHOTS, { recursive: true });
    await buildApp(join(dir, 'dist'));
    site = await serveStatic([join(dir, 'dist')]);
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
    page = await openAppPage(context, site.url, errors);
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail' && page) {
      await shot(`failed-${ctx.task.name.replace(/\W+/g, '-').slice(0, 40)}`).catch(() => undefined);
      log('page errors:', errors);
    }
  });

  afterAll(async () => {
    await browser?.close();
    await site?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('shows what export-config writes; Download saves it, Download as zip adds dataset_info.json and the data', async () => {
    const t0 = performance.now();
    await page.getByRole('button', { name: 'Show as LLaMA-Factory YAML' }).click();
    const yamlBox = page.getByTestId('lf-yaml');
    await expect.poll(() => yamlBox.textContent()).toMatch(/model_name_or_path: crucible-demo/);
    const shown = (await yamlBox.textContent())!;
    expect(shown).toBe(await cliYaml(dir));
    for (const line of ['stage: sft', 'do_train: true', 'finetuning_type: lora', 'output_dir: trainer_output', 'dataset: identity', 'dataset_dir: crucible-run', 'learning_rate: 0.01', 'max_steps: 30']) {
      expect(shown).toContain(`${line}\n`);
    }

    const [yamlFile] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download YAML' }).click()]);
    expect(yamlFile.suggestedFilename()).toBe('crucible.yaml');
    expect(readFileSync((await yamlFile.path())!, 'utf8')).toBe(shown);

    const [zipFile] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download as zip' }).click()]);
    expect(zipFile.suggestedFilename()).toBe('crucible-run.zip');
    const zip = join(dir, 'run.zip');
    await zipFile.saveAs(zip);
    expect(execFileSync('unzip', ['-t', zip], { encoding: 'utf8' })).toMatch(/No errors detected/);
    execFileSync('unzip', ['-q', zip, '-d', join(dir, 'unzipped')]);
    const run = join(dir, 'unzipped/crucible-run');
    expect(readFileSync(join(run, 'crucible.yaml'), 'utf8')).toBe(shown);
    expect(readFileSync(join(run, 'identity.json'), 'utf8')).toBe(readFileSync(join(ROOT, 'public/demo/data/identity.json'), 'utf8'));
    expect(JSON.parse(readFileSync(join(run, 'dataset_info.json'), 'utf8'))).toEqual(JSON.parse(readFileSync(join(dir, 'crucible-run/dataset_info.json'), 'utf8')));
    await shot('01-yaml');
    log(`yaml and zip: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }, 300_000);

  it('Load config fills the form and lists the keys it did not take', async () => {
    const file = join(dir, 'lf_lora_sft.yaml');
    await writeFile(file, ['### LLaMA-Factory', 'model_name_or_path: crucible-demo', 'stage: sft', 'do_train: true', 'finetuning_type: lora', 'lora_rank: 4', 'learning_rate: 5.0e-3',
      'max_steps: 3', 'dataset: identity', 'output_dir: saves/demo/lora', 'bf16: true', 'flash_atn: auto', ''].join('\n'));
    await page.getByLabel('Load config').setInputFiles(file);
    const report = page.getByTestId('load-report');
    await report.waitFor({ timeout: 30_000 });
    const skipped = await page.getByTestId('load-skipped').textContent();
    expect(skipped).toContain('flash_atn: not a LLaMA-Factory or Crucible key');
    expect(skipped).not.toContain('bf16');
    expect(await page.getByTestId('half').isChecked()).toBe(true);
    expect(skipped).toContain('output_dir: runs are kept in this browser');
    expect(await page.getByRole('spinbutton', { name: 'LoRA rank', exact: true }).inputValue()).toBe('4');
    expect(Number(await page.getByRole('spinbutton', { name: 'Learning rate', exact: true }).inputValue())).toBe(0.005);
    expect(Number(await page.getByRole('spinbutton', { name: 'Max steps', exact: true }).inputValue())).toBe(3);
    // the YAML shown follows the loaded form
    await expect.poll(() => page.getByTestId('lf-yaml').textContent()).toMatch(/^lora_rank: 4$/m);
    expect(await page.getByTestId('lf-yaml').textContent()).toMatch(/^learning_rate: 0\.005$/m);

    await writeFile(file, 'lora_rank: -2\n');
    await page.getByLabel('Load config').setInputFiles(file);
    await expect.poll(() => page.getByTestId('load-error').textContent()).toMatch(/lf_lora_sft\.yaml cannot be loaded:\s*.*lora_rank: must be >= 1, got -2/);
    expect(await page.getByRole('spinbutton', { name: 'LoRA rank', exact: true }).inputValue()).toBe('4');
    await shot('02-loaded');
  }, 120_000);

  it('Evaluate & predict answers demo examples with the demo model: BLEU-4, ROUGE and the predictions', async () => {
    const t0 = performance.now();
    const panel = page.getByRole('region', { name: 'Evaluate & predict' });
    await panel.getByLabel('Examples (max_samples)').fill('2');
    await panel.getByLabel('Answer length (max_new_tokens)').fill('4');
    await panel.getByLabel('Answer with the adapter').uncheck();
    await panel.getByRole('button', { name: 'Run predict' }).click();
    const metrics = panel.getByTestId('predict-metrics');
    await metrics.waitFor({ timeout: 300_000 });
    expect(await metrics.textContent()).toMatch(/BLEU-4 \d+\.\d\d · ROUGE-1 \d+\.\d\d · ROUGE-2 \d+\.\d\d · ROUGE-L \d+\.\d\d · 2 examples in [\d.]+ s · base model/);
    const rows = panel.getByTestId('predictions').locator('tbody tr');
    expect(await rows.count()).toBe(2);
    const demo = JSON.parse(readFileSync(join(ROOT, 'public/demo/data/identity.json'), 'utf8')) as { instruction: string; output: string }[];
    // the label column is the dataset's answer; the prompt is the chat template's rendering of its question
    expect((await rows.nth(0).locator('td').nth(2).textContent())?.trim()).toBe(demo[0]!.output);
    expect(await rows.nth(0).locator('td').nth(0).textContent()).toContain(demo[0]!.instruction);
    await shot('03-predict');
    expect(errors).toEqual([]);
    log(`predict: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }, 300_000);

  it('a 2-step run shows its live log (tokens/s only after the compile step), the smoothed loss and the lr curve', async () => {
    const t0 = performance.now();
    const set = async (name: string, v: string) => {
      const f = page.getByRole('spinbutton', { name, exact: true });
      await f.fill(v);
      await f.press('Tab');
    };
    await set('Max steps', '2');
    await set('Batch size', '1');
    await set('Cutoff length', '16');
    await set('Checkpoint every', '2');
    await page.getByText('Advanced', { exact: true }).click();
    await set('Log every', '1');
    await page.getByRole('button', { name: 'Start training' }).click();
    await expect.poll(() => page.getByTestId('run-status').textContent(), { timeout: 300_000, interval: 500 }).toMatch(/^(done|failed)$/);
    expect(await page.getByTestId('run-status').textContent()).toBe('done');
    const lines = ((await page.getByTestId('run-log').textContent()) ?? '').split('\n');
    const step = (n: number) => lines.find((l) => l.startsWith(`step ${n}/2 · loss`)) ?? `no line for step ${n} in: ${lines.join(' | ')}`;
    expect(step(1)).not.toMatch(/tokens\/s/);
    expect(step(2)).toMatch(/ · lr [\d.e-]+ · .*\d+ tokens\/s/);
    expect(lines.some((l) => /saved checkpoint-2/.test(l)), lines.join(' | ')).toBe(true);
    expect(await page.getByTestId('chart-lr').getAttribute('data-points')).toBe('2');
    expect(await page.getByTestId('loss-chart-smoothed').count()).toBe(1);
    await shot('04-trained');
    log(`2-step run: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }, 300_000);
});
