// The app against a Hub that fails, in headless Chromium (WebGPU on SwiftShader), driven through
// the UI: a download cut mid-file is shown and resumes (the Resume button from the last complete
// 16 MiB chunk after a cancel, an automatic retry from the last byte after a cut connection) and
// the model trains; a file with a wrong hash is refused with a message that says so and nothing of
// it is stored; offline, the stored model still trains and chats.
//
// Then a model whose single model.safetensors is over 2 GiB: downloaded into IndexedDB and loaded to
// the GPU tensor by tensor, with the page's memory sampled throughout (about 90 s on 2 cores; it
// takes 2 GiB of disk in the browser profile while it runs; CRUCIBLE_E2E_BIG=0 skips it).

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { startMockHub, type MockHub } from '../tests/mockhub/server';
import { BIG_HIDDEN, BIG_VOCAB, bigModelFiles, bigValue } from './big-model';
import { SHOTS, hasChromium, launchChromium, serveApp, serveLibraryPage, stopwatch } from './harness';
import { startHubFront, type HubFront } from './hub-front';
import type { StaticServer } from './static-server';
import { writeTinyModel } from './tiny-model';

const RESUMED = 'crucible-test/tiny-resumed';
const CORRUPT = 'crucible-test/tiny-corrupt';
/** The browser store's chunk (src/hub/browser-store.ts DEFAULT_CHUNK_SIZE). */
const CHUNK = 16 * 2 ** 20;
const WEIGHTS = 'model.safetensors';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const folderFiles = (dir: string) => Object.fromEntries(readdirSync(dir).map((f) => [f, new Uint8Array(readFileSync(join(dir, f)))]));

describe.skipIf(!hasChromium())('the app against a faulty Hub (Chromium, WebGPU on SwiftShader)', () => {
  const log = stopwatch('hub-faults');
  let dir: string;
  let site: StaticServer;
  let hub: MockHub;
  let front: HubFront;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let resumed: Record<string, Uint8Array>;
  let corrupt: Record<string, Uint8Array>;
  const errors: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'crucible-e2e-hub-'));
    await mkdir(SHOTS, { recursive: true });
    site = await serveApp(dir);
    // over two chunks of the browser store: 40000 x 64 f32 embedding and lm_head, 20.8 MB
    writeTinyModel(join(dir, 'resumed'), { hidden: 64, vocab: 40_000, seed: 11 });
    writeTinyModel(join(dir, 'corrupt'), { hidden: 32, seed: 12 });
    resumed = folderFiles(join(dir, 'resumed'));
    corrupt = folderFiles(join(dir, 'corrupt'));
    hub = await startMockHub({ repos: { [RESUMED]: { files: resumed }, [CORRUPT]: { files: corrupt } } });
    front = await startHubFront(hub.url, [RESUMED, CORRUPT].map((id) => ({ id, params: 1000 })));
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1500, height: 1000 } });
    page = await context.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    log('built and serving', site.url, 'hub', front.url);
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail' && page) {
      await page.screenshot({ path: join(SHOTS, `hub-faults-failed-${ctx.task.name.replace(/\W+/g, '-').slice(0, 40)}.png`), fullPage: true }).catch(() => undefined);
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

  const weightRequests = () => hub.requests.filter((r) => r.kind === 'cdn' && r.method === 'GET' && r.file === WEIGHTS);
  const rangeStart = (range?: string) => Number(/^bytes=(\d+)-$/.exec(range ?? '')?.[1]);
  const set = async (name: string, v: string) => {
    const f = page.getByRole('spinbutton', { name, exact: true });
    await f.fill(v);
    await f.press('Tab');
  };
  const trainOneStep = async () => {
    await page.getByRole('button', { name: 'Start training' }).click();
    await expect.poll(() => page.getByTestId('run-status').textContent(), { timeout: 180_000 }).toMatch(/done|failed/);
    expect(await page.getByTestId('run-status').textContent()).toBe('done');
    expect(await page.getByTestId('run-step').textContent()).toBe('step 1/1');
    expect(await page.getByTestId('model-loaded').textContent()).toContain(RESUMED);
  };
  /** The keys of the app's model store (src/hub/browser-store.ts: ['blob', key], ['chunk', key, i], ...). */
  const storedKeys = () =>
    page.evaluate(
      () =>
        new Promise<unknown[]>(async (resolve, reject) => {
          // opening a database that does not exist would create it, without the app's object store
          if (!(await indexedDB.databases()).some((d) => d.name === 'crucible-hub')) return resolve([]);
          const open = indexedDB.open('crucible-hub');
          open.onerror = () => reject(open.error);
          open.onsuccess = () => {
            try {
              const req = open.result.transaction('kv').objectStore('kv').getAllKeys();
              req.onsuccess = () => resolve(req.result as unknown[]);
              req.onerror = () => reject(req.error);
            } catch (e) {
              reject(e);
            } finally {
              open.result.close();
            }
          };
        }),
    );
  const pick = async (id: string) => {
    await page.getByRole('searchbox', { name: 'Search Hub models' }).fill('tiny');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.getByRole('button', { name: id, exact: true }).click();
  };

  it('a cut download is shown and resumes (the stored list\'s Resume button, from the last complete chunk, then an automatic retry), and the model trains', async () => {
    await page.goto(site.url);
    await expect.poll(() => page.getByTestId('gpu-adapter').textContent(), { timeout: 30_000 }).toMatch(/swiftshader/i);
    await page.getByText('Get a model from the Hugging Face Hub').click();
    await page.getByText('Token and endpoint').click();
    await page.getByLabel('Hub endpoint').fill(front.url);
    await page.getByLabel('Hub endpoint').press('Tab');
    await pick(RESUMED);

    // the connection goes silent past the first chunk; the user cancels
    hub.setFaults({ stall: { file: WEIGHTS, afterBytes: CHUNK + 1_200_000 }, bytesPerSecond: 4e6 });
    await page.getByRole('button', { name: `Download ${RESUMED}` }).click();
    const firstChunk = ['chunk', sha256(resumed[WEIGHTS]!), 0];
    await expect.poll(async () => (await storedKeys()).some((k) => JSON.stringify(k) === JSON.stringify(firstChunk)), { timeout: 60_000 }).toBe(true);
    await expect.poll(() => hub.requests.some((r) => r.fault === 'stall'), { timeout: 10_000 }).toBe(true);
    await page.getByRole('button', { name: 'Cancel download' }).click();
    const cancelled = page.getByTestId('download-error');
    await expect.poll(() => cancelled.textContent(), { timeout: 10_000 }).toMatch(/cancelled/);
    expect(await cancelled.textContent()).toMatch(/16\.0 MiB are kept: resume to continue/);
    // listed as partial, not offered for training
    expect(await page.getByRole('radio', { name: RESUMED }).isDisabled()).toBe(true);
    expect(await page.getByText(/partial \(16\.0 MiB\)/).count()).toBe(1);
    await page.screenshot({ path: join(SHOTS, 'hub-01-cancelled.png'), fullPage: true });

    // resumed from the stored chunk; the connection is then cut and the download retries by itself
    hub.clearRequests();
    hub.setFaults({ cut: { file: WEIGHTS, afterBytes: 1_500_000 }, bytesPerSecond: 8e6 });
    // both the picked model and the stored list offer to resume; the stored list's button does it
    expect(await page.getByRole('button', { name: `Resume download of ${RESUMED} (16.0 MiB stored)` }).count()).toBe(1);
    await page.getByRole('button', { name: `Resume the download of ${RESUMED}` }).click();
    const retry = page.getByTestId('download-retry');
    await retry.waitFor({ timeout: 30_000 });
    expect(await retry.textContent()).toMatch(new RegExp(`Connection lost on ${WEIGHTS} \\(.+\\): resuming from 1[6-8]\\.\\d MiB of 19\\.\\d MiB in \\d+s\\s+\\(attempt 1 of 5\\)`));
    await page.screenshot({ path: join(SHOTS, 'hub-02-retrying.png'), fullPage: true });
    await page.getByRole('button', { name: `Delete ${RESUMED}` }).waitFor({ timeout: 60_000 });
    await expect.poll(() => page.getByRole('radio', { name: RESUMED }).isChecked()).toBe(true);
    expect(await page.getByTestId('download-notice').textContent()).toMatch(/the connection was lost once, and the download resumed where it stopped/);

    const [fromChunk, afterCut, ...more] = weightRequests();
    expect(more).toEqual([]);
    expect(fromChunk).toMatchObject({ range: `bytes=${CHUNK}-`, fault: 'cut' });
    // from the last byte that arrived (bytes in flight at the cut may be lost)
    const from = rangeStart(afterCut!.range);
    expect(from).toBeGreaterThan(CHUNK);
    expect(from).toBeLessThanOrEqual(CHUNK + 1_500_000);
    expect(afterCut).toMatchObject({ status: 206, bytes: resumed[WEIGHTS]!.length - from });

    hub.setFaults({});
    await set('Max steps', '1');
    await set('Batch size', '1');
    await set('Cutoff length', '32');
    await trainOneStep();
    await page.screenshot({ path: join(SHOTS, 'hub-03-trained.png'), fullPage: true });
    log('cut, resumed, trained');
  });

  it('a file with a wrong hash is refused, saying which file, expected and got; nothing of it is stored', async () => {
    const good = corrupt[WEIGHTS]!;
    const bad = good.slice();
    bad[good.length >> 1]! ^= 0xff; // where the mock flips a byte
    hub.setFaults({ corrupt: { file: WEIGHTS, times: Infinity } });
    await pick(CORRUPT);
    await page.getByRole('button', { name: `Download ${CORRUPT}` }).click();
    const err = page.getByTestId('download-error');
    await err.waitFor({ timeout: 60_000 });
    const text = (await err.textContent()) ?? '';
    expect(text).toContain(`Download of ${CORRUPT} failed: model ${CORRUPT} file ${WEIGHTS}: sha256 mismatch (expected ${sha256(good)}, got ${sha256(bad)}): the download was corrupted`);
    await page.screenshot({ path: join(SHOTS, 'hub-04-corrupted.png'), fullPage: true });

    // not offered as a model; no blob or chunk of the file in IndexedDB
    const radio = page.getByRole('radio', { name: CORRUPT });
    if (await radio.count()) expect(await radio.isDisabled()).toBe(true);
    const blobs = (await storedKeys()).filter((k): k is [string, string] => Array.isArray(k) && (k[0] === 'blob' || k[0] === 'chunk')).map((k) => k[1]);
    expect(blobs).toContain(sha256(resumed[WEIGHTS]!));
    expect(blobs).not.toContain(sha256(good));
    expect(blobs).not.toContain(sha256(bad));
    hub.setFaults({});
    log('corruption refused');
  });

  it('the offline switch: the stored model trains without one Hub request, search says offline mode is on, the switch survives a reload', async () => {
    const offline = page.getByRole('checkbox', { name: 'Offline mode' });
    await offline.check();
    const before = hub.requests.length;
    await page.getByRole('radio', { name: RESUMED }).check();
    await page.locator('.examples mark.learned').first().waitFor({ timeout: 60_000 });
    await trainOneStep();
    await page.getByRole('searchbox', { name: 'Search Hub models' }).fill('tiny');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.getByText(/Offline mode is on: the Hub is not searched/).waitFor({ timeout: 30_000 });
    expect(hub.requests.slice(before)).toEqual([]);
    await page.reload();
    await page.getByTestId('gpu-adapter').waitFor({ timeout: 30_000 });
    expect(await page.getByRole('checkbox', { name: 'Offline mode' }).isChecked()).toBe(true);
    await page.getByRole('checkbox', { name: 'Offline mode' }).uncheck();
    log('offline switch ok');
  });

  it('offline, the stored model still trains and chats', async () => {
    await expect.poll(() => page.evaluate(() => !!navigator.serviceWorker.controller), { timeout: 30_000 }).toBe(true);
    await context.setOffline(true);
    await page.reload();
    await page.getByTestId('gpu-adapter').waitFor({ timeout: 30_000 });
    await expect.poll(() => page.locator('.net').textContent()).toBe('offline');
    await page.getByRole('radio', { name: RESUMED }).check();
    await page.locator('.examples mark.learned').first().waitFor({ timeout: 60_000 });
    await trainOneStep();
    await page.getByText('Generation settings').click();
    await page.getByRole('spinbutton', { name: 'Max new tokens' }).fill('4');
    await page.getByRole('spinbutton', { name: 'Max new tokens' }).press('Tab');
    await page.getByRole('textbox', { name: 'Message' }).fill('hi');
    await page.getByRole('button', { name: 'Send' }).click();
    await expect.poll(() => page.getByTestId('answer-info').first().textContent(), { timeout: 120_000 }).toMatch(/^[1-9]\d* tokens, [\d.]+ tokens\/s/);
    await page.screenshot({ path: join(SHOTS, 'hub-05-offline.png'), fullPage: true });
    await context.setOffline(false);
    expect(errors).toEqual([]);
    log('offline ok');
  });
});

describe.skipIf(!hasChromium() || process.env.CRUCIBLE_E2E_BIG === '0')('a model.safetensors over 2 GiB in Chromium', () => {
  const log = stopwatch('hub-big');
  const BIG = 'crucible-test/over-2gib';
  const MiB = 2 ** 20;
  let dir: string;
  let site: StaticServer;
  let hub: MockHub;
  let browser: Browser;
  let page: Page;
  let big: Awaited<ReturnType<typeof bigModelFiles>>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'crucible-e2e-big-'));
    big = await bigModelFiles();
    hub = await startMockHub({ repos: { [BIG]: { files: big.files } } });
    site = await serveLibraryPage(dir);
    browser = await launchChromium();
    page = await browser.newPage();
    await page.goto(site.url);
    await page.waitForFunction(() => 'crucible' in globalThis);
    log(`mock Hub serves a ${big.size}-byte model.safetensors (generated on demand)`);
  }, 300_000);

  afterAll(async () => {
    await browser?.close(); // its profile, with the IndexedDB copy, goes with it
    await site?.close();
    await hub?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('downloads it into IndexedDB and loads it to the GPU tensor by tensor, the page never holding the file', async () => {
    expect(big.size).toBeGreaterThan(2 ** 31);
    // rows checked: the first, both sides of a 64 MiB read slice (262144 rows of 256 bytes), the last;
    // lm_head's last row lies past byte 2^31 of the file
    const rows = [0, 262_143, 262_144, BIG_VOCAB - 1];
    expect(big.lmHeadBegin + (BIG_VOCAB - 1) * BIG_HIDDEN * 4).toBeGreaterThan(2 ** 31);

    // the page's JS heap and ArrayBuffer memory, sampled while it downloads and loads
    const cdp = await page.context().newCDPSession(page);
    let peak = 0;
    const sampler = setInterval(() => {
      cdp.send('Runtime.getHeapUsage').then(
        (h) => (peak = Math.max(peak, h.usedSize + ((h as { backingStorageSize?: number }).backingStorageSize ?? 0))),
        () => undefined,
      );
    }, 250);
    const t0 = performance.now();
    let out;
    try {
      out = await page.evaluate(
        async ({ endpoint, id, rows, hidden }) => {
          const c = (globalThis as any).crucible;
          const t0 = performance.now();
          const model = await c.downloadModel(id, { store: c.browserStore(), endpoint });
          const t1 = performance.now();
          const gpu = await c.browserGpu();
          const session = await c.Session.open(gpu, model, {});
          const t2 = performance.now();
          type T = { shape: number[] };
          const readRow = async (w: T | T[], row: number): Promise<number[]> => {
            for (const t of Array.isArray(w) ? w : [w]) {
              if (row < t.shape[0]!) return [...new Float32Array(await gpu.readBytes(t, hidden * 4, row * hidden * 4))];
              row -= t.shape[0]!;
            }
            throw new Error(`no row ${row}`);
          };
          const embed = [];
          const head = [];
          for (const r of rows) {
            embed.push(await readRow(session.model.embed.value, r));
            head.push(await readRow(session.model.lmHead.weight, r));
          }
          return { downloadS: (t1 - t0) / 1000, loadS: (t2 - t1) / 1000, gpuBytes: gpu.allocated as number, embed, head };
        },
        { endpoint: hub.url, id: BIG, rows, hidden: BIG_HIDDEN },
      );
    } finally {
      clearInterval(sampler);
    }
    const seconds = (performance.now() - t0) / 1000;
    log(`${(big.size / 2 ** 30).toFixed(2)} GiB: download into IndexedDB ${out.downloadS.toFixed(0)} s, load to the GPU ${out.loadS.toFixed(0)} s, ${seconds.toFixed(0)} s in all; ` +
      `GPU ${(out.gpuBytes / 2 ** 30).toFixed(2)} GiB; page heap + ArrayBuffers peaked at ${(peak / MiB).toFixed(0)} MiB`);
    rows.forEach((r, i) => {
      expect(out.embed[i]).toEqual(Array.from({ length: BIG_HIDDEN }, (_, j) => bigValue(0, r * BIG_HIDDEN + j)));
      expect(out.head[i]).toEqual(Array.from({ length: BIG_HIDDEN }, (_, j) => bigValue(1, r * BIG_HIDDEN + j)));
    });
    expect(out.gpuBytes).toBeGreaterThan(big.size - 64 * MiB);
    expect(peak).toBeGreaterThan(0);
    // less than either 1 GiB tensor: neither the file nor a whole tensor was ever in the page
    expect(peak).toBeLessThan(768 * MiB);
  }, 1_800_000);
});
