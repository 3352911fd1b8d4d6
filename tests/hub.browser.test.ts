// src/hub with the browser store (IndexedDB through idb-keyval, on fake-indexeddb) against the
// mock Hub: chunked storage, range reads, resume after a cut and after a "reload" (a new store
// instance on the same database), faults, quota refusal, offline switch, listing and deletion.
import 'fake-indexeddb/auto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createStore, get as idbGet, keys } from 'idb-keyval';
import {
  HubError,
  browserStore,
  deleteStoredModel,
  downloadModel,
  listStoredModels,
  openStoredFile,
  setOfflineMode,
  setSessionToken,
  type BrowserStoreOptions,
  type DownloadRetry,
} from '../src/hub/index';
import { startMockHub, type MockHub } from './mockhub/server';
import { gitOidHex, pseudoRandomBytes, sameBytes, sha256Hex } from './mockhub/fixtures';

const ID = 'org/tiny';
const TOKEN = 'hf_mock_token';
const CHUNK = 64 * 1024;
const fast = { retries: 4, baseDelayMs: 1, maxDelayMs: 20 };

const WEIGHTS = pseudoRandomBytes(300_000, 5); // 4 full chunks of 64 KiB + 37856 bytes
const CONFIG = JSON.stringify({ hidden_size: 8 });
const TOKENIZER = JSON.stringify({ vocab: ['a', 'b'] });
const files = () => ({ 'config.json': CONFIG, 'model.safetensors': WEIGHTS, 'tokenizer/tokenizer.json': TOKENIZER });
const TOTAL = WEIGHTS.length + CONFIG.length + TOKENIZER.length;
const expectBytes = (a: Uint8Array, b: Uint8Array) => expect(sameBytes(a, b)).toBe(true);

let hub: MockHub;
let db: string;
let dbCounter = 0;
type Estimate = { quota?: number; usage?: number };
let storage: {
  estimate: ReturnType<typeof vi.fn<() => Promise<Estimate>>>;
  persist: ReturnType<typeof vi.fn<() => Promise<boolean>>>;
  persisted: ReturnType<typeof vi.fn<() => Promise<boolean>>>;
};

beforeAll(async () => {
  hub = await startMockHub({
    repos: {
      [ID]: { files: files() },
      'org/twin': { files: { 'config.json': '{"twin":1}', 'model.safetensors': WEIGHTS } },
      'org/private': { files: { 'config.json': '{"p":1}' }, private: true },
    },
    tokens: [TOKEN],
  });
});
afterAll(() => hub.close());

beforeEach(() => {
  db = `crucible-hub-test-${++dbCounter}`;
  hub.setFaults({});
  hub.setRepo(ID, { files: files() });
  hub.clearRequests();
  for (const k of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_HUB_OFFLINE', 'HF_ENDPOINT']) vi.stubEnv(k, '');
  storage = {
    estimate: vi.fn(async (): Promise<Estimate> => ({ quota: 10e9, usage: 1e6 })),
    persist: vi.fn(async () => true),
    persisted: vi.fn(async () => false),
  };
});
afterEach(() => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
  setOfflineMode(false);
  setSessionToken(undefined);
});

const store = (o: BrowserStoreOptions = {}) => browserStore({ dbName: db, chunkSize: CHUNK, storage, ...o });
const get = (extra: Partial<Parameters<typeof downloadModel>[1]> = {}, id = ID) =>
  downloadModel(id, { store: store(), endpoint: hub.url, retry: fast, ...extra });
const raw = () => createStore(db, 'kv');
const fileRequests = (file: string) => hub.requests.filter((r) => r.file === file && (r.kind === 'cdn' || (r.kind === 'resolve' && r.status !== 302)));
const allKeys = async () => (await keys(raw())) as unknown as Array<[string, ...unknown[]]>;
const keysOf = async (kind: string) => (await allKeys()).filter((k) => k[0] === kind);

describe('hub: browser store (IndexedDB)', () => {
  it('stores files in 64 KiB chunk records, verified, and range reads fetch only the chunks they cover', async () => {
    const progress: number[] = [];
    const m = await get({ onProgress: (p) => progress.push(p.loaded) });
    const commit = hub.head(ID);
    expect(m.revision).toBe(commit);
    expect(m.files).toEqual([
      { path: 'config.json', size: CONFIG.length, etag: gitOidHex(CONFIG) },
      { path: 'model.safetensors', size: WEIGHTS.length, sha256: sha256Hex(WEIGHTS), etag: sha256Hex(WEIGHTS) },
      { path: 'tokenizer/tokenizer.json', size: TOKENIZER.length, etag: gitOidHex(TOKENIZER) },
    ]);
    expect(progress.at(-1)).toBe(TOTAL);
    expect(storage.persist).toHaveBeenCalled();
    expect(storage.estimate).toHaveBeenCalled();

    // the records, per the documented key scheme
    const key = sha256Hex(WEIGHTS);
    expect(await idbGet(['blob', key], raw())).toEqual({ key, size: WEIGHTS.length, chunkSize: CHUNK, chunks: 5, complete: true, owners: [ID] });
    const chunks = (await keysOf('chunk')).filter((k) => k[1] === key).map((k) => k[2]);
    expect(chunks).toEqual([0, 1, 2, 3, 4]);
    expect(((await idbGet(['chunk', key, 4], raw())) as Uint8Array).length).toBe(WEIGHTS.length - 4 * CHUNK);
    expect(await idbGet(['file', ID, commit, 'model.safetensors'], raw())).toMatchObject({ blob: key, size: WEIGHTS.length });
    expect(await idbGet(['ref', ID, 'main'], raw())).toBe(commit);
    expect(await idbGet(['manifest', ID, commit], raw())).toMatchObject({ id: ID, revision: commit, files: m.files });

    // range reads: correct bytes, and only the chunk records that hold them are read
    const f = await m.open('model.safetensors');
    const spy = vi.spyOn(IDBObjectStore.prototype, 'get');
    const chunkReads = () => spy.mock.calls.map((c) => c[0] as unknown[]).filter((k) => Array.isArray(k) && k[0] === 'chunk').map((k) => k[2]);
    expectBytes(await f.read(CHUNK - 10, 20), WEIGHTS.subarray(CHUNK - 10, CHUNK + 10));
    expect(chunkReads()).toEqual([0, 1]);
    spy.mockClear();
    expectBytes(await f.read(3 * CHUNK + 5, 100), WEIGHTS.subarray(3 * CHUNK + 5, 3 * CHUNK + 105));
    expect(chunkReads()).toEqual([3]);
    spy.mockClear();
    expectBytes(await f.read(3 * CHUNK + 500, 100), WEIGHTS.subarray(3 * CHUNK + 500, 3 * CHUNK + 600));
    expect(chunkReads()).toEqual([]); // the last chunks read are kept
    expectBytes(await f.read(0, WEIGHTS.length), WEIGHTS);
    expect(await f.read(10, 0)).toEqual(new Uint8Array(0));
    await expect(f.read(WEIGHTS.length - 1, 2)).rejects.toThrow(RangeError);
    spy.mockRestore();
    expect(await m.readJson('tokenizer/tokenizer.json')).toEqual(JSON.parse(TOKENIZER));
    const g = await openStoredFile(store(), ID, 'model.safetensors');
    expectBytes(await g.read(1, 3), WEIGHTS.subarray(1, 4));
  });

  it('reads byte ranges past 2 GiB of a large stored file, touching only the chunks needed', async () => {
    // A synthetic 3 GB blob of which only two chunk records exist: a read must fetch just those.
    const big = 3_000_000_000;
    const cs = 1 << 20;
    const key = 'f'.repeat(64);
    const commit = 'c'.repeat(40);
    const at = 2_500_000_000; // chunk 2384, 1 MiB chunks; the read crosses into 2385
    const first = Math.floor(at / cs);
    const a = pseudoRandomBytes(cs, 1);
    const b = pseudoRandomBytes(cs, 2);
    const { setMany } = await import('idb-keyval');
    await setMany(
      [
        [['blob', key], { key, size: big, chunkSize: cs, chunks: Math.ceil(big / cs), complete: true, owners: ['org/big'] }],
        [['chunk', key, first], a],
        [['chunk', key, first + 1], b],
        [['file', 'org/big', commit, 'model.safetensors'], { path: 'model.safetensors', size: big, blob: key }],
        [['manifest', 'org/big', commit], { id: 'org/big', revision: commit, files: [{ path: 'model.safetensors', size: big }], updatedAt: 0 }],
        [['ref', 'org/big', 'main'], commit],
      ],
      raw(),
    );
    const f = await openStoredFile(store({ chunkSize: cs }), 'org/big', 'model.safetensors');
    expect(f.size).toBe(big);
    const off = at - first * cs;
    const len = cs - off + 1000;
    const got = await f.read(at, len);
    expectBytes(got.subarray(0, cs - off), a.subarray(off));
    expectBytes(got.subarray(cs - off), b.subarray(0, 1000));
    await expect(f.read(big - 10, 20)).rejects.toThrow(RangeError);
    await expect(f.read(0, 10)).rejects.toMatchObject({ code: 'not_stored' });
  });

  it('resumes a reset connection within the session with Range from the last byte received', async () => {
    hub.setFaults({ cut: { file: 'model.safetensors', afterBytes: 100_000, mode: 'reset' } });
    const retries: DownloadRetry[] = [];
    const m = await get({ files: ['model.safetensors'], onRetry: (r) => retries.push(r) });
    expectBytes(await m.readBytes('model.safetensors'), WEIGHTS);
    const reqs = fileRequests('model.safetensors');
    expect(reqs.map((r) => r.fault ?? r.status)).toEqual(['cut', 206]);
    // from what arrived (bytes in flight at the cut may be lost), not from a chunk boundary
    const from = Number(/^bytes=(\d+)-$/.exec(reqs[1]!.range!)![1]);
    expect(from).toBeGreaterThan(0);
    expect(from).toBeLessThanOrEqual(100_000);
    expect(reqs[1]!.bytes).toBe(WEIGHTS.length - from);
    // told before the retry, with the point it resumes from
    expect(retries).toEqual([
      { file: 'model.safetensors', problem: expect.any(String), attempt: 1, retries: fast.retries, delayMs: expect.any(Number), resumeFrom: from, fileTotal: WEIGHTS.length },
    ]);
  });

  it('after a reload (a new store instance), continues from the last complete chunk', async () => {
    hub.setFaults({ cut: { file: 'model.safetensors', afterBytes: 150_000 } });
    const err = await get({ files: ['model.safetensors'], retry: { ...fast, retries: 0 } }).catch((e) => e);
    expect(err).toBeInstanceOf(HubError);
    expect(err.code).toBe('network');
    const key = sha256Hex(WEIGHTS);
    // the complete chunks received before the cut (at 150000: at most 2) are stored; nothing looks complete
    const meta = (await idbGet(['blob', key], raw())) as { chunks: number; complete: boolean };
    expect(meta.complete).toBe(false);
    expect(meta.chunks).toBeGreaterThanOrEqual(1);
    expect(meta.chunks).toBeLessThanOrEqual(2);
    const held = meta.chunks * CHUNK;
    expect(await keysOf('file')).toEqual([]);
    expect(await keysOf('ref')).toEqual([]);
    const listed = await listStoredModels(store());
    expect(listed).toEqual([{ id: ID, size: held, partialBytes: held, revisions: [] }]);

    hub.clearRequests();
    const m = await downloadModel(ID, { store: browserStore({ dbName: db, chunkSize: CHUNK, storage }), endpoint: hub.url, retry: fast, files: ['model.safetensors'] });
    const reqs = fileRequests('model.safetensors');
    expect(reqs.map((r) => r.range)).toEqual([`bytes=${held}-`]);
    expect(reqs[0]!.bytes).toBe(WEIGHTS.length - held);
    expectBytes(await m.readBytes('model.safetensors'), WEIGHTS);
    expect(await idbGet(['blob', key], raw())).toMatchObject({ chunks: 5, complete: true });
  });

  it('an aborted download (page closed) resumes from its stored chunks', async () => {
    hub.setFaults({ bytesPerSecond: 500_000 });
    const ac = new AbortController();
    const p = get({ files: ['model.safetensors'], signal: ac.signal, onProgress: (e) => e.fileLoaded > 3 * CHUNK && ac.abort() });
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    const held = ((await idbGet(['blob', sha256Hex(WEIGHTS)], raw())) as { chunks: number }).chunks;
    expect(held).toBeGreaterThanOrEqual(3);
    hub.setFaults({});
    hub.clearRequests();
    const m = await get({ files: ['model.safetensors'] });
    expect(fileRequests('model.safetensors')[0]!.range).toBe(`bytes=${held * CHUNK}-`);
    expectBytes(await m.readBytes('model.safetensors'), WEIGHTS);
  });

  it('retries 429 and 503; a truncated body is resumed; one that keeps ending early is a clear error', async () => {
    hub.setFaults({
      status: [
        { code: 429, match: '/revision/', times: 1, retryAfter: 0 },
        { code: 503, match: 'model.safetensors', times: 2 },
      ],
      truncate: { file: 'tokenizer/tokenizer.json', bytes: 5, times: 1 },
    });
    const m = await get();
    expectBytes(await m.readBytes('model.safetensors'), WEIGHTS);
    expect(await m.readText('tokenizer/tokenizer.json')).toBe(TOKENIZER);
    expect(fileRequests('model.safetensors').map((r) => r.status)).toEqual([503, 503, 200]);
    expect(fileRequests('tokenizer/tokenizer.json').map((r) => r.range)).toEqual([undefined, 'bytes=5-']);

    await deleteStoredModel(store(), ID);
    hub.setFaults({ truncate: { file: 'model.safetensors', bytes: 10, times: Infinity } });
    const err = await get({ retry: { ...fast, retries: 1 } }).catch((e) => e);
    expect(err.code).toBe('network');
    expect(err.message).toMatch(/^model org\/tiny file model\.safetensors: download failed .*ended early/);
    expect((await keysOf('file')).filter((k) => k[3] === 'model.safetensors')).toEqual([]);
    expect(await idbGet(['blob', sha256Hex(WEIGHTS)], raw())).toMatchObject({ complete: false });
  });

  it('a wrong hash is a clear error and leaves no record of the file (no blob, chunks, entry or ref)', async () => {
    hub.setFaults({ corrupt: { file: 'model.safetensors', at: 200_000 } });
    const err = await get({ files: ['model.safetensors'] }).catch((e) => e);
    expect(err.code).toBe('integrity');
    expect(err.message).toMatch(
      new RegExp(`^model org/tiny file model\\.safetensors: sha256 mismatch \\(expected ${sha256Hex(WEIGHTS)}, got [0-9a-f]{64}\\): the download was corrupted; removed, retry$`),
    );
    expect(await allKeys()).toEqual([]);
    // corrupted in the resumed part too: the same
    hub.setFaults({ cut: { file: 'model.safetensors', afterBytes: 70_000 }, corrupt: { file: 'model.safetensors', at: 10, times: Infinity } });
    await expect(get({ files: ['model.safetensors'] })).rejects.toMatchObject({ code: 'integrity' });
    expect(await allKeys()).toEqual([]);
  });

  it('a changed revision gives a new snapshot; the unchanged weights are not fetched again', async () => {
    const a = (await get()).revision;
    hub.clearRequests();
    const b = hub.commit(ID, { ...files(), 'config.json': '{"v":2}' });
    const m = await get();
    expect(m.revision).toBe(b);
    expect(await m.readText('config.json')).toBe('{"v":2}');
    expect(hub.requests.filter((r) => r.kind === 'resolve' || r.kind === 'cdn').map((r) => r.file)).toEqual(['config.json']);
    expect(await idbGet(['ref', ID, 'main'], raw())).toBe(b);
    const [info] = await listStoredModels(store());
    expect(info!.revisions.map((r) => [r.revision, r.refs, r.complete]).sort()).toEqual(
      [
        [a, [], true],
        [b, ['main'], true],
      ].sort(),
    );
    expect(info!.size).toBe(TOTAL + '{"v":2}'.length);
  });

  it('the offline switch reads the store without a request and errors clearly for a missing model', async () => {
    await get({ files: ['config.json', 'model.safetensors'] });
    hub.clearRequests();
    setOfflineMode(true);
    const m = await downloadModel(ID, { store: store(), endpoint: hub.url });
    expect(m.files.map((f) => f.path)).toEqual(['config.json', 'model.safetensors']);
    expectBytes(await m.readBytes('model.safetensors'), WEIGHTS);
    await expect(downloadModel('org/other', { store: store(), endpoint: hub.url })).rejects.toThrow(
      `model org/other: revision main is not stored in IndexedDB ${db} and offline mode is on (HF_HUB_OFFLINE=1 or the offline switch): download it first while online`,
    );
    expect(hub.requests).toEqual([]);
  });

  it('refuses a download that does not fit (navigator.storage.estimate), writing nothing; asks for persistence', async () => {
    storage.estimate.mockResolvedValue({ quota: 200_000, usage: 50_000 });
    const err = await get().catch((e) => e);
    expect(err).toBeInstanceOf(HubError);
    expect(err.code).toBe('quota');
    expect(err.message).toBe(
      'model org/tiny: needs 300 KB of browser storage but only 150 KB is available (quota 200 KB, used 50.0 KB): delete stored models or free disk space, then retry',
    );
    expect(storage.persist).toHaveBeenCalledTimes(1);
    expect(await allKeys()).toEqual([]);
    // what is already stored is not counted again
    storage.estimate.mockResolvedValue({ quota: 10e9, usage: 0 });
    await get({ files: ['model.safetensors'] });
    storage.estimate.mockResolvedValue({ quota: 1000, usage: 0 });
    await get(); // only the two small files are missing: 71 bytes
    expect(hub.requests.filter((r) => r.kind === 'cdn').length).toBe(1);
  });

  it('lists models with sizes; identical files are stored once and survive deleting one owner', async () => {
    await get();
    await get({}, 'org/twin');
    const key = sha256Hex(WEIGHTS);
    expect(await idbGet(['blob', key], raw())).toMatchObject({ owners: [ID, 'org/twin'] });
    expect(hub.requests.filter((r) => r.kind === 'cdn').length).toBe(1);
    const list = await listStoredModels(store());
    expect(list.map((m) => [m.id, m.size, m.revisions.length, m.revisions[0]!.files])).toEqual([
      [ID, TOTAL, 1, 3],
      ['org/twin', WEIGHTS.length + '{"twin":1}'.length, 1, 2],
    ]);
    expect(await deleteStoredModel(store(), ID)).toBe(true);
    expect((await listStoredModels(store())).map((m) => m.id)).toEqual(['org/twin']);
    const twin = await downloadModel('org/twin', { store: store(), offline: true });
    expectBytes(await twin.readBytes('model.safetensors'), WEIGHTS);
    expect(await deleteStoredModel(store(), 'org/twin')).toBe(true);
    expect(await allKeys()).toEqual([]);
    expect(await deleteStoredModel(store(), 'org/twin')).toBe(false);
  });

  it('uses the session token (memory only) as Bearer', async () => {
    await expect(get({}, 'org/private')).rejects.toMatchObject({ code: 'unauthorized', message: expect.stringContaining('needs a token (HF_TOKEN)') });
    setSessionToken(TOKEN);
    hub.clearRequests();
    const m = await get({}, 'org/private');
    expect(await m.readText('config.json')).toBe('{"p":1}');
    expect(hub.requests.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);
    // nothing of the token in the store
    const dump = JSON.stringify(await Promise.all((await allKeys()).map(async (k) => [k, await idbGet(k as IDBValidKey, raw())])), (_k, v) => (v instanceof Uint8Array ? `${v.length} bytes` : v));
    expect(dump).not.toContain(TOKEN);
  });
});
