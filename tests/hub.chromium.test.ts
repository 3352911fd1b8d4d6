// src/hub in a real browser (headless Chromium): real IndexedDB, real fetch with CORS (the page and
// the mock Hub are different origins; Authorization and Range need a preflight; LFS files redirect
// to the "CDN"), navigator.storage, and a real page reload between a cut download and its resume.
// Skipped where there is no Chromium (scripts/setup.sh installs it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMockHub, type MockHub } from './mockhub/server';
import { pseudoRandomBytes, sha256Hex } from './mockhub/fixtures';
import { hasChromium, openModulePage, type ModulePage } from './helpers/module-page.ts';

const ID = 'org/tiny';
const TOKEN = 'hf_mock_token';
const CHUNK = 64 * 1024;
const WEIGHTS = pseudoRandomBytes(400_000, 9);
const CONFIG = JSON.stringify({ hidden_size: 8 });

type Page = import('playwright-core').Page;

describe.skipIf(!hasChromium)('hub: in Chromium (real IndexedDB and fetch)', () => {
  let hub: MockHub;
  let browserPage: ModulePage;
  let page: Page;

  beforeAll(async () => {
    hub = await startMockHub({ repos: { [ID]: { files: { 'config.json': CONFIG, 'model.safetensors': WEIGHTS } } }, tokens: [TOKEN] });
    browserPage = await openModulePage('hub', ['src/hub/index.ts']);
    page = browserPage.page;
  });

  afterAll(async () => {
    await browserPage?.close();
    await hub?.close();
  });

  /** downloadModel in the page; returns what it read back, or the error. */
  const download = (retries: number) =>
    page.evaluate(
      async ({ endpoint, id, token, chunk, retries }) => {
        const h = (globalThis as any).hub;
        const store = h.browserStore({ chunkSize: chunk });
        try {
          const m = await h.downloadModel(id, { store, endpoint, token, retry: { retries, baseDelayMs: 1, maxDelayMs: 20 } });
          const f = await m.open('model.safetensors');
          const all: Uint8Array<ArrayBuffer> = await f.read(0, f.size);
          const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
          const mid: Uint8Array = await f.read(chunk - 3, 6);
          return {
            ok: true as const,
            revision: m.revision as string,
            sha: [...digest].map((b) => b.toString(16).padStart(2, '0')).join(''),
            mid: [...mid],
            config: await m.readText('config.json'),
            listed: await h.listStoredModels(store),
          };
        } catch (e) {
          return { ok: false as const, code: (e as any).code as string, message: (e as Error).message };
        }
      },
      { endpoint: hub.url, id: ID, token: TOKEN, chunk: CHUNK, retries },
    );

  it('downloads across origins, resumes after a reload from the last complete chunk, verifies, lists, deletes', async () => {
    hub.setFaults({ cut: { file: 'model.safetensors', afterBytes: 300_000 } });
    const first = await download(0);
    expect(first.ok).toBe(false);
    expect(first).toMatchObject({ code: 'network' });

    await page.reload();
    await page.waitForFunction(() => 'hub' in globalThis);
    hub.clearRequests();
    const second = await download(3);
    if (!second.ok) throw new Error(second.message);
    expect(second.sha).toBe(sha256Hex(WEIGHTS));
    expect(second.mid).toEqual([...WEIGHTS.subarray(CHUNK - 3, CHUNK + 3)]);
    expect(second.config).toBe(CONFIG);
    expect(second.revision).toBe(hub.head(ID));
    const cdn = hub.requests.filter((r) => r.kind === 'cdn' && r.method === 'GET');
    expect(cdn.length).toBe(1);
    // from a whole chunk (at most 4 of 64 KiB before the cut at 300000; bytes in flight may be lost)
    const from = Number(/^bytes=(\d+)-$/.exec(cdn[0]!.range ?? '')?.[1]);
    expect(from % CHUNK).toBe(0);
    expect(from / CHUNK).toBeGreaterThanOrEqual(1);
    expect(from / CHUNK).toBeLessThanOrEqual(4);
    expect(cdn[0]!.bytes).toBe(WEIGHTS.length - from);
    // the token went with every request (CORS preflights carry none, by design)
    expect(hub.requests.filter((r) => r.method !== 'OPTIONS').every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(second.listed).toEqual([
      {
        id: ID,
        size: WEIGHTS.length + CONFIG.length,
        partialBytes: 0,
        revisions: [{ revision: hub.head(ID), refs: ['main'], files: 2, size: WEIGHTS.length + CONFIG.length, complete: true }],
      },
    ]);

    const after = await page.evaluate(async (id) => {
      const h = (globalThis as any).hub;
      const store = h.browserStore();
      const deleted = await h.deleteStoredModel(store, id);
      const persisted = await navigator.storage.persisted();
      return { deleted, left: await h.listStoredModels(store), persisted: typeof persisted };
    }, ID);
    expect(after).toEqual({ deleted: true, left: [], persisted: 'boolean' });
  });
});
