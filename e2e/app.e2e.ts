// The app end to end in headless Chromium with WebGPU on SwiftShader: the built static site
// (vite build, served by a plain static server), the embedded demo model and dataset.
//
//   load -> a broken upload shows its error -> train a few steps (chart and text update) -> chat
//   -> export a valid PEFT adapter (and import it back) -> download a model from a (mock) Hub into
//   IndexedDB -> reload: the stored model and the run are kept -> offline reload: still works
//   -> preference data (uploads, the DPO preset, kto and rm runs with their metrics).
//
// Screenshots go to test-results/e2e/. CRUCIBLE_E2E_TINY=1 develops against a generated tiny model
// instead of public/demo (for when the demo model is not there).

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Download, Page } from 'playwright-core';
import { openSafetensors, readF32 } from '../src/model/safetensors';
import { buildApp, hasChromium, launchChromium, ROOT, stopwatch } from './harness';
import { startHubFront, type HubFront } from './hub-front';
import { serveStatic, type StaticServer } from './static-server';
import { writeTinyModel } from './tiny-model';

const SHOTS = join(ROOT, 'test-results/e2e');
const STEPS = 6;
const HUB_ID = 'crucible-test/demo-copy';
const HUB_DATASET = 'crucible-test/hello-sft';

const log = stopwatch('e2e');

describe.skipIf(!hasChromium())('app in Chromium (WebGPU on SwiftShader)', () => {
  let dir: string;
  let site: StaticServer;
  let hub: { url: string; close(): Promise<void> } | null = null;
  let front: HubFront | null = null;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let demoDir: string;
  const errors: string[] = [];

  const shot = async (name: string) => {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'crucible-e2e-'));
    await rm(SHOTS, { recursive: true, force: true });
    await mkdir(SHOTS, { recursive: true });
    await buildApp(join(dir, 'dist'));
    const roots = [join(dir, 'dist')];
    if (process.env.CRUCIBLE_E2E_TINY === '1') {
      // an overlay served before the build: demo/model and demo/data
      // CRUCIBLE_E2E_TINY_SHAPE=hidden,layers,intermediate,vocab (timing a larger demo model)
      const [hidden, layers, intermediate, vocab] = (process.env.CRUCIBLE_E2E_TINY_SHAPE ?? '').split(',').map(Number);
      writeTinyModel(join(dir, 'overlay/demo/model'), { ...(hidden ? { hidden } : {}), ...(layers ? { layers } : {}), ...(intermediate ? { intermediate } : {}), ...(vocab ? { vocab } : {}) });
      await mkdir(join(dir, 'overlay/demo/data'), { recursive: true });
      await writeFile(join(dir, 'overlay/demo/data/identity.json'), await readFile(join(ROOT, 'tests/fixtures/data/llamafactory/identity.json')));
      await writeFile(join(dir, 'overlay/demo/data/dataset_info.json'), JSON.stringify({ identity: { file_name: 'identity.json' } }));
      roots.unshift(join(dir, 'overlay'));
      demoDir = join(dir, 'overlay/demo/model');
    } else {
      demoDir = join(ROOT, 'public/demo/model');
      for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) {
        if (!existsSync(join(demoDir, f))) throw new Error(`public/demo/model/${f} is missing: the app's demo model is not built (or run with CRUCIBLE_E2E_TINY=1)`);
      }
    }
    site = await serveStatic(roots);
    // a Hub with a copy of the demo model, to download into IndexedDB
    try {
      const mock = await import('../tests/mockhub/server');
      const files: Record<string, Uint8Array> = {};
      for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors']) {
        if (existsSync(join(demoDir, f))) files[f] = readFileSync(join(demoDir, f));
      }
      hub = await mock.startMockHub({ repos: { [HUB_ID]: { files } } });
      const rows = [
        { instruction: 'Hi', input: '', output: 'Hub!' },
        { instruction: 'Color?', input: '', output: 'Blue.' },
      ];
      front = await startHubFront(hub.url, [{ id: HUB_ID, params: 1000 }], { [HUB_DATASET]: { 'train.jsonl': rows.map((r) => JSON.stringify(r)).join('\n') + '\n' } });
    } catch (e) {
      log('no mock Hub (tests/mockhub):', (e as Error).message);
    }
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1500, height: 1000 }, acceptDownloads: true });
    page = await context.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(m.text());
    });
    log('built and serving', site.url);
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
    await front?.close();
    await hub?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('opens ready to run: the GPU panel, the demo model and dataset preselected', async () => {
    await page.goto(site.url);
    await expect.poll(() => page.getByTestId('gpu-adapter').textContent(), { timeout: 30_000 }).toMatch(/swiftshader/i);
    await expect.poll(() => page.getByRole('radio', { name: /^Demo model/ }).isChecked()).toBe(true);
    await expect.poll(() => page.getByRole('radio', { name: /^Demo dataset/ }).isChecked()).toBe(true);
    await page.getByTestId('memory-estimate').waitFor({ timeout: 30_000 });
    await page.locator('.examples mark.learned').first().waitFor({ timeout: 60_000 });
    expect(await page.getByRole('button', { name: 'Start training' }).isEnabled()).toBe(true);
    await shot('01-ready');
    log('ready');
  });

  it('a broken dataset upload shows an error that names the record', async () => {
    const bad = '{"instruction": "hi", "output": "hello"}\n{"instruction": "ok", "output": "fine"}\n{"instruction": "broken", "output": \n';
    await page.locator('#data-file').setInputFiles({ name: 'broken.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(bad) });
    const err = page.getByTestId('data-error');
    await err.waitFor({ timeout: 30_000 });
    const text = (await err.textContent()) ?? '';
    expect(text).toMatch(/broken\.jsonl/);
    expect(text).toMatch(/line 3/);
    expect(await page.getByRole('button', { name: 'Start training' }).isDisabled()).toBe(true);
    await shot('02-broken-dataset');
    await page.getByRole('radio', { name: /^Demo dataset/ }).check();
    await page.locator('.examples mark.learned').first().waitFor({ timeout: 60_000 });
    await expect.poll(() => page.getByTestId('data-error').count()).toBe(0);
    log('broken upload ok');
  });

  it(`trains ${STEPS} steps on the demo: live chart and text, pause and resume, a closed tab resumes from its checkpoint`, async () => {
    const set = async (name: string, v: string) => {
      const f = page.getByRole('spinbutton', { name, exact: true });
      await f.fill(v);
      await f.press('Tab');
    };
    const step = async () => Number(/step (\d+)\//.exec((await page.getByTestId('run-step').textContent()) ?? '')?.[1] ?? -1);
    await set('Max steps', String(STEPS));
    await set('Batch size', '1');
    await set('Cutoff length', '32');
    await set('Checkpoint every', '2');
    await set('Learning rate', '0.002');
    await set('Eval split', '3');
    await page.getByRole('button', { name: 'Start training' }).click();
    await page.getByRole('button', { name: 'Stop' }).waitFor({ timeout: 10_000 });
    await expect.poll(() => page.getByTestId('run-step').textContent(), { timeout: 180_000 }).toMatch(new RegExp(`step [1-9]\\d*/${STEPS}`));
    expect(await page.getByTestId('run-loss').textContent()).toMatch(/loss \d+\.\d+/);
    // step 1 compiles the GPU pipelines and has no rate of its own: the rate shows from step 2
    expect(await page.getByTestId('run-tps').textContent()).toMatch(/^(tokens\/s –|[\d,]+ tokens\/s)$/);
    await expect.poll(() => page.getByTestId('run-tps').textContent(), { timeout: 120_000 }).toMatch(/\d tokens\/s/);
    expect(await page.getByTestId('run-memory').textContent()).toMatch(/GPU memory [\d.]+ [KMG]?i?B/);
    expect(Number(await page.getByTestId('loss-chart').getAttribute('data-points'))).toBeGreaterThanOrEqual(1);
    await shot('03-training');

    // pause: a checkpoint at the current step, then resume in place
    await page.getByRole('button', { name: 'Pause' }).click();
    await expect.poll(() => page.getByTestId('run-status').textContent(), { timeout: 120_000 }).toBe('paused');
    const paused = await step();
    expect(paused).toBeGreaterThanOrEqual(1);
    expect(paused).toBeLessThan(STEPS);
    expect(Number(await page.getByTestId('loss-chart').getAttribute('data-points'))).toBe(paused);
    // the pause saved the paused step: the history offers its adapter
    await expect.poll(() => page.getByRole('button', { name: /^Chat with the adapter of/ }).count()).toBe(1);
    // every step shown after Resume: the run continues at paused + 1, it never starts over
    await page.getByTestId('run-step').evaluate((el) => {
      const seen: string[] = [];
      (window as unknown as { stepsSeen: string[] }).stepsSeen = seen;
      new MutationObserver(() => seen.push(el.textContent ?? '')).observe(el, { childList: true, characterData: true, subtree: true });
    });
    await page.getByRole('button', { name: 'Resume', exact: true }).click();
    await expect.poll(step, { timeout: 120_000 }).toBeGreaterThan(paused);
    const seen = (await page.evaluate(() => (window as unknown as { stepsSeen: string[] }).stepsSeen)).map((t) => Number(/step (\d+)\//.exec(t)?.[1] ?? NaN)).filter((n) => !Number.isNaN(n));
    expect(Math.min(...seen), `steps shown after Resume: ${seen.join(', ')}`).toBeGreaterThanOrEqual(paused);

    // close the tab mid-run (a reload kills the worker): the run resumes from its newest checkpoint
    const next = paused + 2 - (paused % 2);
    await expect.poll(() => page.getByTestId('run-message').textContent(), { timeout: 120_000 }).toMatch(/saved checkpoint-\d+/);
    const saved = Number(/checkpoint-(\d+)/.exec((await page.getByTestId('run-message').textContent())!)![1]);
    expect(saved).toBeGreaterThanOrEqual(next);
    await page.reload();
    await expect.poll(() => page.getByTestId('run-status').textContent(), { timeout: 30_000 }).toBe('interrupted');
    const at = await step();
    expect(at).toBeGreaterThanOrEqual(saved);
    expect(at).toBeLessThan(STEPS);
    await shot('04-interrupted');
    await page.getByRole('button', { name: 'Resume', exact: true }).click();
    await expect.poll(() => page.getByTestId('run-status').textContent(), { timeout: 240_000 }).toMatch(/done|failed/);
    expect(await page.getByTestId('run-status').textContent()).toBe('done');
    expect(await page.getByTestId('run-step').textContent()).toBe(`step ${STEPS}/${STEPS}`);
    // one loss per step: the steps after the checkpoint were trained again, not logged twice
    expect(Number(await page.getByTestId('loss-chart').getAttribute('data-points'))).toBe(STEPS);
    expect(await page.getByTestId('run-eval-loss').textContent()).toMatch(/eval loss \d+\.\d+/);
    expect(Number(await page.getByTestId('loss-chart').getAttribute('data-eval-points'))).toBeGreaterThanOrEqual(STEPS / 2);
    await expect.poll(() => page.getByTestId('run-history').locator('tbody tr').count()).toBe(1);
    await shot('05-trained');
    await set('Eval split', '0');
    log('trained');
  });

  it('benchmarks training on this GPU from the GPU panel', async () => {
    await page.getByRole('button', { name: 'Run benchmark' }).click();
    const res = page.getByTestId('bench-result');
    await res.waitFor({ timeout: 120_000 });
    expect(await res.textContent()).toMatch(/[\d,]+ tokens\/s/);
    log('bench:', (await res.textContent())?.trim());
  });

  it('chats with the adapter, streaming, and side by side with the base model', async () => {
    await expect.poll(() => page.getByTestId('adapter-state').textContent()).toMatch(/Adapter: identity · LoRA · Demo model/);
    await page.getByText('Generation settings').click();
    await page.getByRole('spinbutton', { name: 'Max new tokens' }).fill('8');
    await page.getByRole('spinbutton', { name: 'Max new tokens' }).press('Tab');
    await page.getByRole('textbox', { name: 'Message' }).fill('Who are you?');
    await page.getByRole('button', { name: 'Send' }).click();
    const answer = page.getByTestId('answer').first();
    await expect.poll(async () => ((await answer.textContent()) ?? '').replace(/^Tuned/, '').length, { timeout: 180_000 }).toBeGreaterThan(0);
    await page.getByRole('button', { name: 'Send' }).waitFor({ timeout: 180_000 });
    expect(await page.getByTestId('answer-info').first().textContent()).toMatch(/^[1-9]\d* tokens, [\d.]+ tokens\/s/);
    await page.getByLabel('Compare with base model').check();
    await page.getByRole('textbox', { name: 'Message' }).fill('hi');
    await page.getByRole('textbox', { name: 'Message' }).press('Enter');
    await page.getByTestId('answer-base').first().waitFor({ timeout: 180_000 });
    await page.getByRole('button', { name: 'Send' }).waitFor({ timeout: 180_000 });
    await page.getByLabel('Compare with base model').uncheck();
    await shot('06-chat');
    log('chat ok');
  });

  it('exports the adapter as valid PEFT files, and imports them back', async () => {
    const downloads: Download[] = [];
    const got = new Promise<void>((res) => {
      page.on('download', (d) => {
        downloads.push(d);
        if (downloads.length === 2) res();
      });
    });
    await page.getByRole('button', { name: 'Export adapter' }).click();
    await got;
    const files: Record<string, string> = {};
    for (const d of downloads) {
      const p = join(dir, d.suggestedFilename());
      await d.saveAs(p);
      files[d.suggestedFilename()] = p;
    }
    expect(Object.keys(files).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const cfg = JSON.parse(await readFile(files['adapter_config.json']!, 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 8, lora_alpha: 16, bias: 'none', use_dora: false, use_rslora: false });
    expect(cfg.target_modules.sort()).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
    const bytes = new Uint8Array(await readFile(files['adapter_model.safetensors']!));
    const st = await openSafetensors({ name: 'adapter_model.safetensors', size: bytes.length, read: async (o, n) => bytes.subarray(o, o + n) });
    const modelCfg = JSON.parse(await readFile(join(demoDir, 'config.json'), 'utf8'));
    const L = modelCfg.num_hidden_layers as number;
    expect(st.tensors.size).toBe(L * 7 * 2);
    let nonZeroB = 0;
    for (const [name, t] of st.tensors) {
      const m = /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj\.lora_(A|B)\.weight$/.exec(name);
      expect(m, name).not.toBeNull();
      expect(t.dtype).toBe('F32');
      expect(t.shape.length).toBe(2);
      if (m![4] === 'A') expect(t.shape[0]).toBe(8);
      else expect(t.shape[1]).toBe(8);
      const data = new Float32Array(bytes.slice(t.begin, t.end).buffer);
      expect(data.every(Number.isFinite)).toBe(true);
      if (m![4] === 'B' && data.some((x) => x !== 0)) nonZeroB++;
    }
    expect(nonZeroB).toBeGreaterThan(0);
    // the merged model, one zip: W + (alpha / r) B A for every adapted weight
    const merged = new Promise<Download>((res) => {
      const on = (d: Download) => {
        if (d.suggestedFilename().endsWith('-merged.zip')) {
          page.off('download', on);
          res(d);
        }
      };
      page.on('download', on);
    });
    await page.getByRole('button', { name: 'Download merged model (zip)' }).click();
    const mergedZip = join(dir, 'merged.zip');
    await (await merged).saveAs(mergedZip);
    execFileSync('unzip', ['-q', mergedZip, '-d', join(dir, 'merged')]);
    const mergedPath = join(dir, 'merged', (await merged).suggestedFilename().replace(/\.zip$/, ''), 'model.safetensors');
    const mBytes = new Uint8Array(await readFile(mergedPath));
    const mst = await openSafetensors({ name: 'merged', size: mBytes.length, read: async (o, n) => mBytes.subarray(o, o + n) });
    const bBytes = new Uint8Array(await readFile(join(demoDir, 'model.safetensors')));
    const bst = await openSafetensors({ name: 'base', size: bBytes.length, read: async (o, n) => bBytes.subarray(o, o + n) });
    expect([...mst.tensors.keys()].sort()).toEqual([...bst.tensors.keys()].sort());
    const name = 'model.layers.0.self_attn.q_proj.weight';
    const W = await readF32(bst, name);
    const M = await readF32(mst, name);
    const A = await readF32(st, `base_model.model.${name.replace(/\.weight$/, '')}.lora_A.weight`);
    const Bm = await readF32(st, `base_model.model.${name.replace(/\.weight$/, '')}.lora_B.weight`);
    const [N, K] = bst.tensors.get(name)!.shape as [number, number];
    let err = 0, ref = 0;
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        let d = 0;
        for (let j = 0; j < 8; j++) d += Bm[n * 8 + j]! * A[j * K + k]!;
        const want = W[n * K + k]! + (16 / 8) * d;
        err += (M[n * K + k]! - want) ** 2;
        ref += want ** 2;
      }
    }
    expect(Math.sqrt(err / ref)).toBeLessThan(bst.tensors.get(name)!.dtype === 'F32' ? 1e-5 : 5e-3);
    expect(M.some((v, i) => v !== W[i])).toBe(true);

    await page.locator('input[type=file][accept=".json,.safetensors"]').setInputFiles([files['adapter_config.json']!, files['adapter_model.safetensors']!]);
    await expect.poll(() => page.getByTestId('export-message').textContent(), { timeout: 60_000 }).toMatch(/Loaded adapter_model\.safetensors/);
    await shot('07-exported');
    log('export ok');
  });

  it('searches the Hub, downloads a model into IndexedDB, uses a Hub dataset', async () => {
    if (!front) return;
    await page.getByText('Get a model from the Hugging Face Hub').click();
    await page.getByText('Token and endpoint').click();
    const ep = page.getByLabel('Hub endpoint');
    await ep.fill(front.url);
    await ep.press('Tab');
    await page.getByRole('searchbox', { name: 'Search Hub models' }).fill('demo');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.getByRole('button', { name: HUB_ID, exact: true }).click();
    await page.getByRole('button', { name: `Download ${HUB_ID}` }).click();
    await page.getByRole('button', { name: `Delete ${HUB_ID}` }).waitFor({ timeout: 60_000 });
    await expect.poll(() => page.getByRole('radio', { name: HUB_ID }).isChecked()).toBe(true);
    // a Hub dataset: searched, picked, previewed
    await page.getByRole('searchbox', { name: 'Search Hub datasets' }).fill('hello');
    await page.getByRole('button', { name: 'Search datasets' }).click();
    await page.getByRole('button', { name: HUB_DATASET, exact: true }).click();
    await expect.poll(() => page.locator('.examples').textContent(), { timeout: 60_000 }).toMatch(/Hub!/);
    expect(await page.locator('.examples mark.learned').first().textContent()).toMatch(/Hub!/);
    await shot('08-hub-download');
    // back to the demo model and data for what follows
    await page.getByRole('radio', { name: /^Demo model/ }).check();
    await page.getByRole('radio', { name: /^Demo dataset/ }).check();
    log('hub download ok');
  });

  it('a reload keeps the stored model, the run and the settings', async () => {
    await page.reload();
    await page.getByTestId('gpu-adapter').waitFor({ timeout: 30_000 });
    await expect.poll(() => page.getByTestId('run-history').locator('tbody tr').count(), { timeout: 10_000 }).toBe(1);
    expect(await page.getByTestId('run-history').textContent()).toMatch(new RegExp(`done\\s*${STEPS}/${STEPS}`));
    expect(await page.getByTestId('run-step').textContent()).toBe(`step ${STEPS}/${STEPS}`);
    expect(Number(await page.getByTestId('loss-chart').getAttribute('data-points'))).toBe(STEPS);
    expect(await page.getByRole('spinbutton', { name: 'Max steps', exact: true }).inputValue()).toBe(String(STEPS));
    if (front) await page.getByRole('button', { name: `Delete ${HUB_ID}` }).waitFor({ timeout: 10_000 });
    await shot('09-reloaded');
    log('reload ok');
  });

  it('works offline after the first visit: the app, the demo data and chat with the stored run', async () => {
    expect(await page.evaluate(() => !!navigator.serviceWorker.controller)).toBe(true);
    await context.setOffline(true);
    await page.reload();
    await page.getByTestId('gpu-adapter').waitFor({ timeout: 30_000 });
    await expect.poll(() => page.locator('.net').textContent()).toBe('offline');
    await page.locator('.examples mark.learned').first().waitFor({ timeout: 60_000 });
    await page.getByRole('button', { name: /^Chat with the adapter of/ }).first().click();
    await expect.poll(() => page.getByTestId('adapter-state').textContent(), { timeout: 120_000 }).toMatch(/Adapter: identity · .*\(checkpoint-\d+\)/);
    await page.getByRole('textbox', { name: 'Message' }).fill('Who are you?');
    await page.getByRole('button', { name: 'Send' }).click();
    const answer = page.getByTestId('answer').first();
    await expect.poll(async () => ((await answer.textContent()) ?? '').replace(/^Tuned/, '').length, { timeout: 180_000 }).toBeGreaterThan(0);
    await page.getByRole('button', { name: 'Send' }).waitFor({ timeout: 180_000 });
    await shot('10-offline');
    await context.setOffline(false);
    log('offline ok');
  });

  it('deletes a stored model and a run', async () => {
    page.on('dialog', (d) => void d.accept());
    if (front) {
      await page.getByRole('button', { name: `Delete ${HUB_ID}` }).click();
      await expect.poll(() => page.getByRole('radio', { name: HUB_ID }).count()).toBe(0);
    }
    await page.getByRole('button', { name: /^Delete .*Demo model/ }).click();
    await expect.poll(() => page.getByTestId('run-history').count()).toBe(0);
    await page.reload();
    await page.getByTestId('gpu-adapter').waitFor({ timeout: 30_000 });
    expect(await page.getByText('No runs yet.').count()).toBe(1);
    expect(await page.getByRole('radio', { name: HUB_ID }).count()).toBe(0);
    expect(errors).toEqual([]);
  });

  // Runs on its own too (-t preference): it opens the app when no earlier test did.
  it('preference data: uploads detected and previewed, a DPO preset run with reward charts and chat, then kto and rm (value head exported)', async () => {
    if (!page.url().startsWith(site.url)) await page.goto(site.url);
    await page.getByTestId('gpu-adapter').waitFor({ timeout: 30_000 });
    const downloads: Download[] = [];
    page.on('download', (d) => downloads.push(d));
    const set = async (name: string, v: string) => {
      const f = page.getByRole('spinbutton', { name, exact: true });
      await f.fill(v);
      await f.press('Tab');
    };
    const train = async (what: string) => {
      const t = performance.now();
      await page.getByRole('button', { name: 'Start training' }).click();
      await expect.poll(() => page.getByTestId('run-status').textContent(), { timeout: 120_000 }).toMatch(/^(done|failed)$/);
      expect(await page.getByRole('alert').allTextContents()).toEqual([]);
      expect(await page.getByTestId('run-status').textContent()).toBe('done');
      log(`${what}: ${((performance.now() - t) / 1000).toFixed(1)}s`);
    };
    const tiny = async (steps: number) => {
      await set('Max steps', String(steps));
      await set('Batch size', '1');
      await set('Cutoff length', '24');
      await set('Eval split', '0');
    };
    const prompt = (i: number) => `What is ${i} + ${i}?`;

    // an upload of sharegpt preference pairs: detected, the stage follows, prompt / chosen / rejected shown
    const pairs = [1, 2, 3, 4].map((i) => ({ conversations: [{ from: 'human', value: prompt(i) }], chosen: { from: 'gpt', value: `${2 * i}.` }, rejected: { from: 'gpt', value: 'No idea.' } }));
    await page.locator('#data-file').setInputFiles({ name: 'prefs.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(pairs.map((r) => JSON.stringify(r)).join('\n')) });
    await expect.poll(() => page.getByTestId('data-format').textContent(), { timeout: 30_000 }).toMatch(/sharegpt, preference \(prompt, chosen, rejected\)\s*\(detected from the first record\)/);
    await expect.poll(() => page.getByLabel('Stage').inputValue()).toBe('dpo');
    expect(await page.getByTestId('data-note').textContent()).toMatch(/Stage set to dpo/);
    await page.getByTestId('example-pairwise').first().waitFor({ timeout: 60_000 });
    expect(await page.getByTestId('example-prompt').first().textContent()).toContain(prompt(1));
    expect(await page.getByTestId('example-chosen').first().locator('mark.learned').first().textContent()).toContain('2.');
    expect(await page.getByTestId('example-rejected').first().locator('mark.learned').first().textContent()).toContain('No idea.');
    await shot('11-preference-upload');

    // a malformed preference record: the error names the file and the record
    const broken = [pairs[0], { ...pairs[1], chosen: { from: 'gpt', value: 42 } }];
    await page.locator('#data-file').setInputFiles({ name: 'prefs-broken.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(broken)) });
    const err = page.getByTestId('data-error');
    await err.waitFor({ timeout: 30_000 });
    expect(await err.textContent()).toMatch(/: prefs-broken\.json, line 1, record 1, field "chosen\.value": must be a string, got number/);
    expect(await page.getByRole('button', { name: 'Start training' }).isDisabled()).toBe(true);

    // KTO data (role/content messages with a boolean label: sharegpt with OpenAI tags, as LLaMA-Factory's data README has it): detected, stage kto, the tags shown
    const kto = [1, 2].map((i) => ({ messages: [{ role: 'user', content: prompt(i) }, { role: 'assistant', content: i === 1 ? '2.' : '5.' }], label: i === 1 }));
    await page.locator('#data-file').setInputFiles({ name: 'kto.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(kto.map((r) => JSON.stringify(r)).join('\n')) });
    await expect.poll(() => page.getByTestId('data-format').textContent(), { timeout: 30_000 }).toMatch(/sharegpt, KTO/);
    await expect.poll(() => page.getByLabel('Stage').inputValue()).toBe('kto');
    await expect.poll(() => page.getByTestId('example-kto-tag').allTextContents(), { timeout: 60_000 }).toEqual(['desirable', 'undesirable']);
    // the user's format: the same file read as supervised conversations (stage back to sft)
    await page.locator('select:has(option[value="lm"])').selectOption('lm');
    await expect.poll(() => page.getByLabel('Stage').inputValue()).toBe('sft');
    await page.getByTestId('example-lm').first().waitFor({ timeout: 60_000 });
    expect(await page.getByTestId('data-format').textContent()).toMatch(/your choice; detected: sharegpt, KTO/);

    // the DPO preset: the bundled dpo_en_demo, a short run with the reward metrics charted
    await page.getByLabel('Preset').selectOption('DPO');
    await expect.poll(() => page.getByRole('radio', { name: /^Demo dataset/ }).isChecked()).toBe(true);
    await expect.poll(() => page.locator('#demo-dataset').inputValue()).toBe('dpo_en_demo');
    expect(await page.getByLabel('Stage').inputValue()).toBe('dpo');
    expect(await page.getByLabel('Preference loss').inputValue()).toBe('sigmoid');
    expect(await page.getByRole('spinbutton', { name: 'Beta', exact: true }).inputValue()).toBe('0.1');
    await page.getByTestId('example-pairwise').first().waitFor({ timeout: 60_000 });
    await tiny(2);
    await set('Warmup ratio', '0'); // the preset's 10% warmup would make the first of two steps lr 0
    await train('dpo 2 steps');
    const metrics = (await page.getByTestId('run-metrics').textContent()) ?? '';
    for (const k of ['rewards/accuracies', 'rewards/margins', 'rewards/chosen', 'rewards/rejected']) expect(metrics).toMatch(new RegExp(`${k} -?\\d+\\.\\d+`));
    expect(Number(await page.getByTestId('loss-chart').getAttribute('data-points'))).toBe(2);
    expect(Number(await page.getByTestId('chart-rewards').getAttribute('data-points'))).toBe(2);
    expect(Number(await page.getByTestId('chart-rewards/accuracies').getAttribute('data-points'))).toBe(2);
    await shot('12-dpo-trained');

    // chat after DPO: tuned and base side by side
    await expect.poll(() => page.getByTestId('adapter-state').textContent()).toMatch(/Adapter: dpo_en_demo · dpo LoRA/);
    const maxTokens = page.getByRole('spinbutton', { name: 'Max new tokens' });
    if (!(await maxTokens.isVisible())) await page.getByText('Generation settings').click();
    await maxTokens.fill('4');
    await maxTokens.press('Tab');
    await page.getByLabel('Compare with base model').check();
    await page.getByRole('textbox', { name: 'Message' }).fill(prompt(3));
    await page.getByRole('button', { name: 'Send' }).click();
    await page.getByTestId('answer-base').last().waitFor({ timeout: 120_000 });
    await page.getByRole('button', { name: 'Send' }).waitFor({ timeout: 120_000 });
    await page.getByLabel('Compare with base model').uncheck();

    // kto: the stage picks the bundled KTO data
    await page.getByLabel('Stage').selectOption('kto');
    await expect.poll(() => page.locator('#demo-dataset').inputValue()).toBe('kto_en_demo');
    expect(await page.getByTestId('data-note').textContent()).toMatch(/Demo dataset kto_en_demo/);
    await page.getByTestId('example-kto-tag').first().waitFor({ timeout: 60_000 });
    await tiny(1);
    await train('kto 1 step');
    expect(await page.getByTestId('run-metrics').textContent()).toMatch(/kl -?\d+\.\d+/);

    // rm: a reward model on the pairs; its value head is exported beside the adapter
    await page.getByLabel('Stage').selectOption('rm');
    await expect.poll(() => page.locator('#demo-dataset').inputValue()).toBe('dpo_en_demo');
    await tiny(1);
    await train('rm 1 step');
    expect(await page.getByTestId('run-metrics').textContent()).toMatch(/accuracy \d+\.\d+/);
    downloads.length = 0;
    await page.getByRole('button', { name: 'Export adapter' }).click();
    await expect.poll(() => downloads.length, { timeout: 30_000 }).toBe(3);
    const head = downloads.find((d) => d.suggestedFilename() === 'value_head.safetensors');
    expect(head).toBeDefined();
    const headPath = join(dir, 'value_head.safetensors');
    await head!.saveAs(headPath);
    const hb = new Uint8Array(await readFile(headPath));
    const hst = await openSafetensors({ name: 'value_head', size: hb.length, read: async (o, n) => hb.subarray(o, o + n) });
    const hidden = JSON.parse(await readFile(join(demoDir, 'config.json'), 'utf8')).hidden_size as number;
    expect(hst.tensors.get('v_head.summary.weight')?.shape).toEqual([1, hidden]);
    expect(hst.tensors.get('v_head.summary.bias')?.shape).toEqual([1]);

    // the run history keeps the DPO run's metrics: its chart comes back, and its trainer_log has them
    const dpoRun = page.getByTestId('run-history').locator('tr', { hasText: 'dpo_en_demo' }).filter({ hasText: '· dpo' });
    await dpoRun.getByRole('button', { name: /^dpo_en_demo/ }).click();
    expect(Number(await page.getByTestId('chart-rewards').getAttribute('data-points'))).toBe(2);
    downloads.length = 0;
    await dpoRun.getByRole('button', { name: /^Download the training log/ }).click();
    await expect.poll(() => downloads.length, { timeout: 30_000 }).toBe(1);
    const logPath = join(dir, 'trainer_log.jsonl');
    await downloads[0]!.saveAs(logPath);
    const records = (await readFile(logPath, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(records.map((r) => r.current_steps)).toEqual([1, 2]);
    for (const r of records) expect(Object.keys(r)).toEqual(expect.arrayContaining(['loss', 'rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins']));
    // the policy starts as the reference (LoRA B = 0): rewards about 0, then moved by the first step
    expect(Math.abs(records[0]['rewards/chosen'])).toBeLessThan(1e-4);
    expect(records[1]['rewards/chosen']).not.toBe(records[0]['rewards/chosen']);
    expect(records[1]['rewards/margins']).not.toBe(0);
    await shot('13-preference-runs');
    // the offline cache holds the bundled preference data
    for (const f of ['dpo_en_demo.json', 'kto_en_demo.json']) {
      await expect.poll(() => page.evaluate(async (name) => !!(await caches.match(new URL(`demo/data/${name}`, document.baseURI).href)), f), { timeout: 30_000 }).toBe(true);
    }
    // back to sft on the demo
    await page.getByLabel('Stage').selectOption('sft');
    await expect.poll(() => page.locator('#demo-dataset').inputValue()).toBe('identity');
    expect(errors).toEqual([]);
    log('preference ok');
  });
});
