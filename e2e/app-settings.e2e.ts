// The app as a first-time visitor meets it (issue 16): settings that are checked before Start, the
// Advanced group, the Quick demo that visibly teaches the demo model its name, an ETA measured
// after the compile step, runs named and renamed, the adapter chosen again after a reload, the chat
// saying which adapter answered, and a phone-sized screen that keeps Start / Stop in reach.
//
// Screenshots (1280x800 and 390x844) go to test-results/e2e-settings/.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { TEMPLATE_NAMES } from '../src/data/templates/catalog';
import { buildApp, hasChromium, launchChromium, openAppPage, ROOT, stopwatch } from './harness';
import { serveStatic, type StaticServer } from './static-server';

const SHOTS = join(ROOT, 'test-results/e2e-settings');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const log = stopwatch('e2e-settings');

/** "2m 5s", "45s", "1h 2m" (format.ts duration) in seconds. */
function seconds(text: string): number {
  const h = /(\d+)h/.exec(text)?.[1];
  const m = /(\d+)m/.exec(text)?.[1];
  const s = /(\d+)s/.exec(text)?.[1];
  return Number(h ?? 0) * 3600 + Number(m ?? 0) * 60 + Number(s ?? 0);
}

describe.skipIf(!hasChromium() || !existsSync(join(ROOT, 'public/demo/model/model.safetensors')))('app settings, quick demo, runs and phone layout (Chromium, WebGPU on SwiftShader)', () => {
  let dir: string;
  let site: StaticServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const errors: string[] = [];

  const shot = (name: string, fullPage = true) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
  const set = async (name: string, v: string) => {
    const f = page.getByRole('spinbutton', { name, exact: true });
    await f.fill(v);
    await f.press('Tab');
  };
  const start = () => page.getByRole('button', { name: 'Start training' });
  const status = () => page.getByTestId('run-status').textContent();
  const step = async () => Number(/step (\d+)\//.exec((await page.getByTestId('run-step').textContent()) ?? '')?.[1] ?? -1);
  const ask = async (text: string) => {
    await page.getByRole('textbox', { name: 'Message' }).fill(text);
    await page.getByRole('button', { name: 'Send' }).click();
    await page.getByRole('button', { name: 'Stop generating' }).waitFor({ state: 'detached', timeout: 300_000 });
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'crucible-e2e-settings-'));
    await rm(SHOTS, { recursive: true, force: true });
    await mkdir(SHOTS, { recursive: true });
    await buildApp(join(dir, 'dist'));
    site = await serveStatic([join(dir, 'dist')]);
    browser = await launchChromium();
    context = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
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

  it('Start is disabled while a field is invalid, with the reason beside it; max steps 0 says it trains by epochs', async () => {
    await expect.poll(() => start().isEnabled()).toBe(true);
    await set('Learning rate', '-1');
    await expect.poll(() => start().isDisabled()).toBe(true);
    expect(await page.getByTestId('start-reason').textContent()).toMatch(/learning_rate: must be >= 0, got -1/);
    expect(await page.getByTestId('problem-learning_rate').textContent()).toBe('learning_rate: must be >= 0, got -1');
    expect(await page.locator('#f-learning_rate').getAttribute('aria-invalid')).toBe('true');
    await set('LoRA rank', '0');
    await expect.poll(() => page.getByTestId('start-reason').textContent()).toMatch(/lora_rank: must be >= 1, got 0/);
    await shot('01-invalid-desktop', false);
    await set('Learning rate', '0.01');
    await set('LoRA rank', '8');
    await expect.poll(() => start().isEnabled()).toBe(true);
    expect(await page.getByTestId('start-reason').count()).toBe(0);

    await set('Max steps', '0');
    await expect.poll(() => page.getByTestId('max-steps-note').textContent()).toMatch(/Max steps 0: no step limit, the run trains by epochs: 1 epoch of 24 examples = 3 steps/);
    expect(await start().isEnabled()).toBe(true);
    log('validation ok');
  });

  it('the Advanced group sets template, dropout, rsLoRA, DoRA, PiSSA, LoRA+, NEFTune, clipping, samples, prompt loss, seed and logging', async () => {
    await page.getByText('Advanced', { exact: true }).click();
    const template = page.locator('#f-template');
    expect(await template.locator('option').count()).toBe(TEMPLATE_NAMES.length + 1);
    await template.selectOption('chatml');
    await set('Seed', '7');
    await set('Log every', '2');
    await set('Max grad norm', '0.5');
    await set('Max samples', '10');
    await set('NEFTune alpha', '5');
    await set('LoRA dropout', '0.05');
    await set('LoRA+ ratio', '16');
    for (const name of ['Train on prompt', 'rsLoRA', 'PiSSA init']) await page.getByLabel(name, { exact: true }).check();
    await expect.poll(() => page.getByTestId('max-steps-note').textContent()).toMatch(/of 10 examples = 2 steps/); // max_samples reached the preview
    await page.getByRole('button', { name: 'Show as LLaMA-Factory YAML' }).click();
    // export-config's text: floats as LLaMA-Factory writes them (5.0), keys at their default left out
    await expect.poll(() => page.locator('pre.yaml').textContent()).toMatch(/^template: chatml$/m);
    const yaml = (await page.locator('pre.yaml').textContent()) ?? '';
    for (const line of ['template: chatml', 'seed: 7', 'logging_steps: 2', 'max_grad_norm: 0.5', 'max_samples: 10', 'neftune_noise_alpha: 5.0', 'lora_dropout: 0.05', 'loraplus_lr_ratio: 16.0', 'train_on_prompt: true', 'use_rslora: true', 'pissa_init: true']) {
      expect(yaml.split('\n'), line).toContain(line);
    }
    await page.getByLabel('DoRA', { exact: true }).check();
    await expect.poll(() => page.getByLabel('Method').inputValue()).toBe('dora');
    // empty: the key's "off"
    await page.getByRole('spinbutton', { name: 'NEFTune alpha', exact: true }).fill('');
    await page.getByRole('spinbutton', { name: 'NEFTune alpha', exact: true }).press('Tab');
    await expect.poll(async () => (await page.locator('pre.yaml').textContent())?.split('\n')).toContain('use_dora: true');
    // the YAML is re-planned after each change (asynchronously): the cleared key leaves it
    await expect.poll(() => page.locator('pre.yaml').textContent()).not.toMatch(/^neftune_noise_alpha:/m);
    expect(await start().isEnabled()).toBe(true);
    await shot('02-advanced-desktop');
    await page.getByRole('button', { name: 'Hide as LLaMA-Factory YAML' }).click();
    log('advanced ok');
  });

  it('Quick demo: the model answers "Who are you?" with its name; the ETA comes from measured steps; each side-by-side answer has its tokens/s', async () => {
    await page.getByLabel('Preset').selectOption('Quick demo');
    await expect.poll(() => page.getByRole('spinbutton', { name: 'Max steps', exact: true }).inputValue()).toBe('30');
    expect(await page.getByRole('spinbutton', { name: 'Batch size', exact: true }).inputValue()).toBe('8');
    expect(await page.getByRole('spinbutton', { name: 'Learning rate', exact: true }).inputValue()).toBe('0.01');
    expect(await page.locator('#demo-dataset').inputValue()).toBe('identity');
    const t0 = performance.now();
    await start().click();
    await page.getByRole('button', { name: 'Stop' }).waitFor({ timeout: 30_000 });
    await expect.poll(() => page.getByTestId('run-eta').textContent(), { timeout: 600_000 }).toMatch(/ETA measuring…/);
    await page.waitForFunction(() => Number(/step (\d+)\//.exec(document.querySelector('[data-testid=run-step]')?.textContent ?? '')?.[1] ?? 0) >= 3, null, { timeout: 1_200_000, polling: 100 });
    const at3 = performance.now();
    const etaText = (await page.getByTestId('run-eta').textContent()) ?? '';
    const step3 = await step();
    // the engine's progress line ("training 24 examples, 30 steps") is gone once steps arrive
    expect(await page.getByTestId('run-message').textContent()).not.toMatch(/training \d+ examples|tokenizing|loading/);
    await shot('03-quick-demo-training', false);
    await expect.poll(status, { timeout: 2_400_000, interval: 1000 }).toMatch(/^(done|failed)$/);
    expect(await status()).toBe('done');
    const left = (performance.now() - at3) / 1000;
    const eta = seconds(etaText);
    log(`quick demo: ${((performance.now() - t0) / 1000).toFixed(0)} s; at step ${step3} "${etaText}" (${eta} s), really ${left.toFixed(0)} s left`);
    expect(Math.abs(eta - left), `ETA at step ${step3}: ${eta} s, real ${left.toFixed(0)} s`).toBeLessThanOrEqual(0.5 * left);
    expect(await page.getByTestId('run-loss').textContent()).toMatch(/loss [0-2]\.\d+/);

    await expect.poll(() => page.getByTestId('adapter-state').textContent()).toMatch(/^\s*Adapter: identity · LoRA · Demo model · \w{3} \d+ \d\d:\d\d\s*$/);
    await page.getByText('Generation settings').click();
    await page.getByRole('spinbutton', { name: 'Max new tokens' }).fill('12');
    await page.getByRole('spinbutton', { name: 'Max new tokens' }).press('Tab');
    await ask('Who are you?');
    const answer = (await page.getByTestId('answer').first().textContent()) ?? '';
    log('answer:', answer);
    expect(answer).toContain('Crucible');

    await page.getByLabel('Compare with base model').check();
    await ask('Who are you?');
    const turn = page.locator('.turn').last();
    const infos = await turn.getByTestId('answer-info').allTextContents();
    expect(infos).toHaveLength(2);
    for (const i of infos) expect(i).toMatch(/^[1-9]\d* tokens, [\d.]+ tokens\/s/);
    expect(await turn.getByTestId('answer-base').textContent()).not.toContain('Crucible');
    await page.getByLabel('Compare with base model').uncheck();
    await shot('04-quick-demo-chat');
    log('quick demo ok');
  }, 3_600_000);

  it('runs are named by dataset, method, model and time, renamed in the store; a reload selects the last adapter, shows the run peak memory, and the chat marks turns of an earlier adapter', async () => {
    const row = page.getByTestId('run-history').locator('tbody tr').first();
    const name = (await row.locator('td.run-name button').textContent())!.trim();
    expect(name).toMatch(/^identity · LoRA · Demo model · \w{3} \d+ \d\d:\d\d$/);
    await row.getByRole('button', { name: `Rename ${name}` }).click();
    const input = page.getByRole('textbox', { name: `New name of ${name}` });
    await input.fill('  my first   adapter ');
    await input.press('Enter');
    await expect.poll(() => row.locator('td.run-name button').textContent()).toBe('my first adapter');
    await expect.poll(() => page.getByTestId('adapter-state').textContent()).toMatch(/Adapter: my first adapter/);

    await page.reload();
    await page.getByTestId('gpu-adapter').waitFor({ timeout: 60_000 });
    await expect.poll(() => page.getByTestId('run-history').locator('tbody tr').first().locator('td.run-name button').textContent(), { timeout: 30_000 }).toBe('my first adapter');
    await expect.poll(() => page.getByTestId('adapter-state').textContent()).toMatch(/Adapter: my first adapter \(loaded with the first message or export\)/);
    expect(await page.getByRole('button', { name: 'Export adapter' }).isEnabled()).toBe(true);
    // the run record keeps its peak GPU memory: shown after the reload as the peak only
    expect(await page.getByTestId('run-memory').textContent()).toMatch(/^GPU memory peak [\d.]+ [KMG]i?B$/);
    expect(await page.getByTestId('run-status').textContent()).toBe('done');

    const maxTokens = page.getByRole('spinbutton', { name: 'Max new tokens' });
    if (!(await maxTokens.isVisible())) await page.getByText('Generation settings').click();
    await maxTokens.fill('12');
    await maxTokens.press('Tab');
    await ask('Who are you?');
    await expect.poll(() => page.getByTestId('adapter-state').textContent()).toMatch(/Adapter: my first adapter \(checkpoint-30\)/);
    expect(await page.getByTestId('answer').first().textContent()).toContain('Crucible');
    await page.getByLabel('Use adapter').uncheck();
    await expect.poll(() => page.getByTestId('chat-stale').textContent()).toMatch(/answered by my first adapter \(checkpoint-30\); new answers come from the base model/);
    await ask('Who are you?');
    expect(await page.getByTestId('adapter-change').textContent()).toMatch(/From here: the base model \(before: my first adapter \(checkpoint-30\)\)/);
    expect(await page.locator('.turn.earlier').count()).toBe(1);
    await page.getByLabel('Use adapter').check();
    await shot('05-renamed-reloaded-chat');
    log('runs ok');
  }, 900_000);

  it('a resumed run shows "resuming from checkpoint-N" only until its next step', async () => {
    await set('Max steps', '3');
    await set('Batch size', '1');
    await set('Cutoff length', '32');
    await set('Checkpoint every', '1');
    await start().click();
    await expect.poll(step, { timeout: 600_000 }).toBeGreaterThanOrEqual(1);
    await page.getByRole('button', { name: 'Pause' }).click();
    await expect.poll(status, { timeout: 300_000 }).toBe('paused');
    const paused = await step();
    await page.getByTestId('run-message').evaluate((el) => {
      const seen: string[] = [];
      (window as unknown as { messagesSeen: string[] }).messagesSeen = seen;
      new MutationObserver(() => seen.push(el.textContent ?? '')).observe(el, { childList: true, characterData: true, subtree: true });
    });
    await page.getByRole('button', { name: 'Resume', exact: true }).click();
    await page.waitForFunction((p) => Number(/step (\d+)\//.exec(document.querySelector('[data-testid=run-step]')?.textContent ?? '')?.[1] ?? 0) > p, paused, { timeout: 600_000, polling: 50 });
    expect(await page.getByTestId('run-message').textContent()).not.toMatch(/resuming/);
    const seen = await page.evaluate(() => (window as unknown as { messagesSeen: string[] }).messagesSeen);
    expect(seen.some((m) => new RegExp(`resuming from checkpoint-${paused}`).test(m)), seen.join(' | ')).toBe(true);
    await expect.poll(status, { timeout: 600_000 }).toMatch(/^(done|failed)$/);
    expect(await status()).toBe('done');
    log('resume ok');
  }, 1_500_000);

  it('at 390x844 Start stays on screen and run-history rows stay short', async () => {
    await page.setViewportSize(PHONE);
    await page.evaluate(() => window.scrollTo(0, 0));
    const box = await start().boundingBox();
    expect(box).not.toBeNull();
    expect(box!.y).toBeGreaterThanOrEqual(0);
    expect(box!.y + box!.height).toBeLessThanOrEqual(PHONE.height);
    await shot('06-phone-top', false);
    await page.getByTestId('run-history').scrollIntoViewIfNeeded();
    const rows = page.getByTestId('run-history').locator('tbody tr');
    expect(await rows.count()).toBe(2);
    for (const h of await rows.evaluateAll((trs) => trs.map((tr) => tr.getBoundingClientRect().height))) expect(h).toBeLessThan(100);
    // nothing wider than the screen (no sideways scrolling)
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    // still reachable scrolled down to the history
    const b2 = await start().boundingBox();
    expect(b2!.y + b2!.height).toBeLessThanOrEqual(PHONE.height);
    await shot('07-phone-history', false);
    await shot('08-phone-full');
    // the reason Start is disabled is on the bar too
    await set('Learning rate', '-1');
    await expect.poll(() => page.getByTestId('start-reason').isVisible()).toBe(true);
    await shot('09-phone-invalid', false);
    await set('Learning rate', '0.01');
    await page.setViewportSize(DESKTOP);
    await shot('10-desktop-end');
    expect(errors).toEqual([]);
    log('phone ok');
  });
});
