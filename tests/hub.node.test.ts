// src/hub with the Node store (HF cache layout) against the mock Hub, faults included.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtemp, readFile, readdir, readlink, rm, stat, writeFile, mkdir, symlink, lstat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import {
  HubError,
  deleteStoredModel,
  downloadModel,
  listStoredModels,
  nodeStore,
  openStoredFile,
  openStoredModel,
  resolveModel,
  type DownloadProgress,
} from '../src/hub/index';
import { hubDatasetAccess } from '../src/hub/datasets';
import { startMockHub, type MockHub } from './mockhub/server';
import { gitOidHex, pseudoRandomBytes, sameBytes, sha256Hex } from './mockhub/fixtures';

const ID = 'org/tiny';
const TOKEN = 'hf_mock_token';
const fast = { retries: 4, baseDelayMs: 1, maxDelayMs: 20 };

const bytes = pseudoRandomBytes;
const sha256 = sha256Hex;
const gitOid = gitOidHex;
function expectBytes(actual: Uint8Array, expected: Uint8Array) {
  expect(sameBytes(actual, expected)).toBe(true);
}

const WEIGHTS = bytes(300_000, 7);
const SHARD2 = bytes(120_000, 11);
const CONFIG = JSON.stringify({ hidden_size: 8, layers: 2 });
const TOKENIZER = JSON.stringify({ model: { vocab: { a: 0, b: 1 } } });
const files = () => ({
  'config.json': CONFIG,
  'model.safetensors': WEIGHTS,
  'extra/model-2.safetensors': SHARD2,
  'tokenizer/tokenizer.json': TOKENIZER,
});

let hub: MockHub;
let home: string;
let hubDir: string;
const repoDir = () => join(hubDir, 'models--org--tiny');

beforeAll(async () => {
  hub = await startMockHub({
    repos: {
      [ID]: { files: files() },
      'org/private': { files: { 'config.json': '{"p":1}' }, private: true },
      'org/gated': { files: { 'config.json': '{"g":1}' }, gated: true, grantedTokens: [TOKEN] },
    },
    tokens: [TOKEN, 'hf_other_token'],
  });
});
afterAll(async () => {
  await hub.close();
});

beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'crucible-hub-'));
  hubDir = join(home, 'hub');
  hub.setFaults({});
  hub.setRepo(ID, { files: files() });
  hub.clearRequests();
  for (const k of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_HUB_OFFLINE', 'HF_ENDPOINT', 'HF_HUB_CACHE', 'HF_TOKEN_PATH']) vi.stubEnv(k, '');
  vi.stubEnv('HF_HOME', home);
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await rm(home, { recursive: true, force: true });
});

const store = () => nodeStore({ hfHome: home });
const get = (extra: Partial<Parameters<typeof downloadModel>[1]> = {}) =>
  downloadModel(ID, { store: store(), endpoint: hub.url, retry: fast, ...extra });
const fileRequests = (file: string) => hub.requests.filter((r) => r.file === file && (r.kind === 'cdn' || (r.kind === 'resolve' && r.status !== 302)));

async function expectNoTrace(file: string) {
  // Nothing for `file` in snapshots, and no blob under its sha256 name.
  const snaps = await readdir(join(repoDir(), 'snapshots')).catch(() => [] as string[]);
  for (const s of snaps) await expect(lstat(join(repoDir(), 'snapshots', s, file))).rejects.toThrow();
}

describe('hub: Node store (HF cache layout)', () => {
  it('downloads into blobs/snapshots/refs as huggingface_hub does, and reads byte ranges back', async () => {
    const progress: DownloadProgress[] = [];
    const m = await get({ onProgress: (p) => progress.push(p) });
    const commit = hub.head(ID);
    expect(m.revision).toBe(commit);
    expect(m.files.map((f) => f.path)).toEqual(['config.json', 'extra/model-2.safetensors', 'model.safetensors', 'tokenizer/tokenizer.json']);
    expect(m.file('model.safetensors')).toEqual({ path: 'model.safetensors', size: WEIGHTS.length, sha256: sha256(WEIGHTS), etag: sha256(WEIGHTS) });
    expect(m.file('config.json')).toEqual({ path: 'config.json', size: CONFIG.length, etag: gitOid(CONFIG) });

    // blobs named by sha256 (LFS) or git oid (= ETag), no partial left
    const blobs = (await readdir(join(repoDir(), 'blobs'))).sort();
    expect(blobs).toEqual([sha256(WEIGHTS), sha256(SHARD2), gitOid(CONFIG), gitOid(TOKENIZER)].sort());
    expectBytes(new Uint8Array(await readFile(join(repoDir(), 'blobs', sha256(WEIGHTS)))), WEIGHTS);
    // snapshots/<commit>/<path>: relative symlinks into blobs
    const snap = join(repoDir(), 'snapshots', commit);
    expect(await readlink(join(snap, 'model.safetensors'))).toBe(`../../blobs/${sha256(WEIGHTS)}`);
    expect(await readlink(join(snap, 'tokenizer/tokenizer.json'))).toBe(`../../../blobs/${gitOid(TOKENIZER)}`);
    expect(await readFile(join(snap, 'config.json'), 'utf8')).toBe(CONFIG);
    expect(await readFile(join(repoDir(), 'refs', 'main'), 'utf8')).toBe(commit);

    // reading
    expect(await m.readJson('config.json')).toEqual(JSON.parse(CONFIG));
    const f = await m.open('model.safetensors');
    expect(f.size).toBe(WEIGHTS.length);
    expect(f.name).toBe(`${ID}@${commit.slice(0, 7)}/model.safetensors`);
    for (const [o, n] of [[0, 8], [123_456, 70_000], [WEIGHTS.length - 5, 5], [17, 0]] as const) expectBytes(await f.read(o, n), WEIGHTS.subarray(o, o + n));
    await expect(f.read(WEIGHTS.length - 4, 5)).rejects.toThrow(RangeError);
    await expect(m.open('missing.bin')).rejects.toThrow(/not stored/);
    const g = await openStoredFile(store(), ID, 'extra/model-2.safetensors');
    expectBytes(await g.read(1000, 10), SHARD2.subarray(1000, 1010));

    // progress: whole-download totals, ends at total with one `done` per file
    const total = WEIGHTS.length + SHARD2.length + CONFIG.length + TOKENIZER.length;
    expect(progress.every((p) => p.total === total && p.loaded <= total)).toBe(true);
    expect(progress.filter((p) => p.done).map((p) => p.file).sort()).toEqual(m.files.map((f) => f.path));
    expect(progress.at(-1)!.loaded).toBe(total);
    expect(progress.at(-1)!.etaSeconds).toBe(0);

    // a second download is served from the store (no file transfers)
    hub.clearRequests();
    await get();
    expect(hub.requests.filter((r) => r.kind === 'resolve' || r.kind === 'cdn')).toEqual([]);

    // listing and deleting
    const list = await listStoredModels(store());
    expect(list).toEqual([
      { id: ID, size: total, partialBytes: 0, revisions: [{ revision: commit, refs: ['main'], files: 4, size: total, complete: true }] },
    ]);
    expect(await deleteStoredModel(store(), ID)).toBe(true);
    expect(await listStoredModels(store())).toEqual([]);
    expect(await deleteStoredModel(store(), ID)).toBe(false);
  });

  it('resumes after a cut connection with a Range request, transferring only the rest', async () => {
    hub.setFaults({ cut: { file: 'model.safetensors', afterBytes: 100_000, mode: 'reset' } });
    const m = await get({ files: ['model.safetensors'] });
    expectBytes(await (await m.open('model.safetensors')).read(0, WEIGHTS.length), WEIGHTS);
    const reqs = fileRequests('model.safetensors');
    expect(reqs.map((r) => r.fault ?? r.status)).toEqual(['cut', 206]);
    expect(reqs[0]!.range).toBeUndefined();
    const from = Number(/^bytes=(\d+)-$/.exec(reqs[1]!.range!)![1]);
    expect(from).toBeGreaterThan(0);
    expect(reqs[1]!.bytes).toBe(WEIGHTS.length - from);
    expect(reqs[1]!.bytes).toBeLessThan(WEIGHTS.length);
    // exact paths go through paths-info, not the tree listing
    expect(hub.requests.some((r) => r.kind === 'paths-info')).toBe(true);
    expect(hub.requests.some((r) => r.kind === 'tree')).toBe(false);
  });

  it('keeps the partial file across runs (.incomplete, never in snapshots) and resumes it next time', async () => {
    hub.setFaults({ cut: { file: 'model.safetensors', afterBytes: 150_000 } });
    const err = await get({ files: ['model.safetensors'], retry: { ...fast, retries: 0 } }).catch((e) => e);
    expect(err).toBeInstanceOf(HubError);
    expect(err.code).toBe('network');
    expect(err.message).toMatch(/model org\/tiny file model\.safetensors: download failed after 1 attempts .*partial download is kept/);
    const partial = join(repoDir(), 'blobs', `${sha256(WEIGHTS)}.incomplete`);
    const held = (await stat(partial)).size;
    expect(held).toBeGreaterThan(0);
    await expect(stat(join(repoDir(), 'blobs', sha256(WEIGHTS)))).rejects.toThrow();
    await expectNoTrace('model.safetensors');
    expect((await listStoredModels(store()))[0]!.partialBytes).toBe(held);

    hub.clearRequests();
    const m = await get({ files: ['model.safetensors'] });
    const reqs = fileRequests('model.safetensors');
    expect(reqs.map((r) => r.range)).toEqual([`bytes=${held}-`]);
    expect(reqs[0]!.bytes).toBe(WEIGHTS.length - held);
    expectBytes(await m.readBytes('model.safetensors'), WEIGHTS);
    await expect(stat(partial)).rejects.toThrow();
  });

  it('retries 429 and 503 answers (API and files) with backoff, and says so when they persist', async () => {
    hub.setFaults({
      status: [
        { code: 429, match: '/api/models/org/tiny/revision', times: 2, retryAfter: 0 },
        { code: 503, match: '/tree/', times: 1 },
        { code: 503, match: 'model.safetensors', times: 2 },
        { code: 429, match: 'config.json', times: 1, retryAfter: 0 },
      ],
    });
    const m = await get({ files: ['*.json', '*.safetensors'] });
    expect(m.files.map((f) => f.path)).toEqual(['config.json', 'model.safetensors']);
    expectBytes(await m.readBytes('model.safetensors'), WEIGHTS);
    expect(hub.requests.filter((r) => r.kind === 'info').map((r) => r.status)).toEqual([429, 429, 200]);
    expect(fileRequests('model.safetensors').map((r) => r.status)).toEqual([503, 503, 200]);

    await deleteStoredModel(store(), ID);
    hub.setFaults({ status: { code: 503, match: 'model.safetensors', times: Infinity } });
    const err = await get({ files: ['model.safetensors'], retry: { ...fast, retries: 2 } }).catch((e) => e);
    expect(err.code).toBe('network');
    expect(err.message).toMatch(/model org\/tiny file model\.safetensors: download failed after 3 attempts .*503/);
    await expectNoTrace('model.safetensors');
  });

  it('a truncated body is retried from where it stopped; a body that keeps ending early is a clear error', async () => {
    hub.setFaults({ truncate: { file: 'model.safetensors', bytes: 40_000, times: 2 } });
    const m = await get({ files: ['model.safetensors'] });
    expectBytes(await m.readBytes('model.safetensors'), WEIGHTS);
    expect(fileRequests('model.safetensors').map((r) => r.range)).toEqual([undefined, 'bytes=40000-', 'bytes=80000-']);

    await deleteStoredModel(store(), ID);
    hub.setFaults({ truncate: { file: 'model.safetensors', bytes: 0, times: Infinity } });
    const err = await get({ files: ['model.safetensors'], retry: { ...fast, retries: 2 } }).catch((e) => e);
    expect(err.code).toBe('network');
    expect(err.message).toMatch(/model\.safetensors: download failed .*ended early/);
    await expectNoTrace('model.safetensors');
    await expect(stat(join(repoDir(), 'blobs', sha256(WEIGHTS)))).rejects.toThrow();
  });

  it('a wrong hash is a clear error and leaves nothing: no blob, no partial, no snapshot entry', async () => {
    hub.setFaults({ corrupt: { file: 'model.safetensors' } });
    const err = await get().catch((e) => e);
    expect(err).toBeInstanceOf(HubError);
    expect(err.code).toBe('integrity');
    expect(err.message).toBe(
      `model org/tiny file model.safetensors: sha256 mismatch (expected ${sha256(WEIGHTS)}, got ${err.message.match(/got ([0-9a-f]{64})/)![1]}): the download was corrupted; removed, retry`,
    );
    const blobs = await readdir(join(repoDir(), 'blobs'));
    expect(blobs.filter((b) => b.startsWith(sha256(WEIGHTS)))).toEqual([]);
    await expectNoTrace('model.safetensors');
    expect(await readdir(join(repoDir(), 'refs')).catch(() => [])).toEqual([]);
    // offline, the model does not exist
    await expect(get({ offline: true })).rejects.toMatchObject({ code: 'offline' });

    // small non-LFS files are checked against their git oid (the ETag)
    await deleteStoredModel(store(), ID);
    hub.setFaults({ corrupt: { file: 'config.json' } });
    await expect(get({ files: ['config.json'] })).rejects.toThrow(/config\.json: git oid mismatch \(expected [0-9a-f]{40}, got [0-9a-f]{40}\)/);
    await expectNoTrace('config.json');

    // the retry works
    hub.setFaults({});
    expectBytes(await (await get()).readBytes('model.safetensors'), WEIGHTS);
  });

  it('a corrupt partial file is dropped and downloaded again from scratch', async () => {
    await mkdir(join(repoDir(), 'blobs'), { recursive: true });
    await writeFile(join(repoDir(), 'blobs', `${sha256(WEIGHTS)}.incomplete`), bytes(50_000, 99));
    const m = await get({ files: ['model.safetensors'] });
    expectBytes(await m.readBytes('model.safetensors'), WEIGHTS);
    expect(fileRequests('model.safetensors').map((r) => r.range)).toEqual(['bytes=50000-', undefined]);
  });

  it('a connection that goes silent is dropped after the stall timeout and resumed', async () => {
    hub.setFaults({ stall: { file: 'model.safetensors', afterBytes: 70_000 } });
    const m = await get({ files: ['model.safetensors'], retry: { ...fast, stallTimeoutMs: 300 } });
    expectBytes(await m.readBytes('model.safetensors'), WEIGHTS);
    const reqs = fileRequests('model.safetensors');
    expect(reqs.map((r) => r.fault ?? r.status)).toEqual(['stall', 206]);
    expect(reqs[1]!.range).toBe('bytes=70000-');
  });

  it('the server ignoring Range starts the file over', async () => {
    hub.setFaults({ cut: { file: 'model.safetensors', afterBytes: 64_000 }, ignoreRange: {} });
    const m = await get({ files: ['model.safetensors'] });
    expectBytes(await m.readBytes('model.safetensors'), WEIGHTS);
    expect(fileRequests('model.safetensors').map((r) => [r.status, r.fault])).toEqual([
      [200, 'cut'],
      [200, 'ignoreRange'],
    ]);
  });

  it('a changed revision gives a new snapshot and moves refs/main; unchanged blobs are not fetched again', async () => {
    const a = (await get()).revision;
    hub.clearRequests();
    const config2 = JSON.stringify({ hidden_size: 16 });
    const b = hub.commit(ID, { ...files(), 'config.json': config2 });
    const m = await get();
    expect(m.revision).toBe(b);
    expect(b).not.toBe(a);
    expect(await m.readText('config.json')).toBe(config2);
    expect(await readFile(join(repoDir(), 'refs', 'main'), 'utf8')).toBe(b);
    expect((await readdir(join(repoDir(), 'snapshots'))).sort()).toEqual([a, b].sort());
    expect(await readFile(join(repoDir(), 'snapshots', a, 'config.json'), 'utf8')).toBe(CONFIG);
    expect(hub.requests.filter((r) => r.kind === 'resolve' || r.kind === 'cdn').map((r) => r.file)).toEqual(['config.json']);

    // the old revision by commit sha, offline too (no refs written for a sha)
    const old = await get({ revision: a, offline: true });
    expect(await old.readText('config.json')).toBe(CONFIG);
    const list = await listStoredModels(store());
    expect(list[0]!.revisions.find((r) => r.revision === a)!.refs).toEqual([]);
    expect(list[0]!.revisions.find((r) => r.revision === b)!.refs).toEqual(['main']);
  });

  it('a branch that moves during a download does not mix revisions (files are pinned to the commit)', async () => {
    let moved: string | undefined;
    const m = await get({
      concurrency: 1,
      onProgress: () => {
        moved ??= hub.commit(ID, { 'config.json': '{"new":true}', 'model.safetensors': bytes(1000, 3) });
      },
    });
    expect(moved).toBeDefined();
    expect(m.revision).not.toBe(moved);
    expect(await m.readText('config.json')).toBe(CONFIG);
    expectBytes(await m.readBytes('model.safetensors'), WEIGHTS);
    expect(await readFile(join(repoDir(), 'refs', 'main'), 'utf8')).toBe(m.revision);
  });

  it('offline (HF_HUB_OFFLINE=1) reads the cache without a request and errors clearly for what is missing', async () => {
    const online = await get({ files: ['config.json', 'model.safetensors'] });
    hub.clearRequests();
    vi.stubEnv('HF_HUB_OFFLINE', '1');
    vi.stubEnv('HF_ENDPOINT', hub.url);
    const r = await resolveModel(ID, { store: store() });
    expect(r).toEqual({ id: ID, revision: online.revision, files: online.files });
    const m = await downloadModel(ID, { store: store() });
    expectBytes(await m.readBytes('model.safetensors'), WEIGHTS);
    expect(hub.requests).toEqual([]);

    await expect(downloadModel('org/absent', { store: store() })).rejects.toThrow(
      (`model org/absent: revision main is not stored in ${hubDir} and offline mode is on (HF_HUB_OFFLINE=1 or the offline switch): download it first while online`),
    );
    await expect(downloadModel(ID, { store: store(), files: ['tokenizer/tokenizer.json'] })).rejects.toThrow(
      /model org\/tiny file tokenizer\/tokenizer\.json: not stored .* offline mode is on/,
    );
    await expect(downloadModel(ID, { store: store(), revision: 'dev' })).rejects.toMatchObject({ code: 'offline' });
    expect(hub.requests).toEqual([]);
  });

  it('falls back to the stored copy when the Hub cannot be reached, with a warning', async () => {
    await get({ files: ['config.json'] });
    const warnings: string[] = [];
    const closed = await new Promise<number>((r) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const port = (srv.address() as AddressInfo).port;
        srv.close(() => r(port));
      });
    });
    const endpoint = `http://127.0.0.1:${closed}`;
    const down = { store: store(), endpoint, retry: { retries: 1, baseDelayMs: 1 }, onWarning: (w: string) => warnings.push(w) };
    const m = await downloadModel(ID, { ...down, files: ['config.json'] });
    expect(await m.readText('config.json')).toBe(CONFIG);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`model org/tiny: could not reach ${endpoint} after 2 attempts: fetch failed (`);
    expect(warnings[0]).toMatch(/ECONNREFUSED.*; using the stored copy \(revision [0-9a-f]{7}\), which may be out of date$/);
    // what is not stored: the network error itself
    await expect(downloadModel(ID, { ...down, files: ['model.safetensors'] })).rejects.toMatchObject({ code: 'network' });
    await expect(downloadModel('org/absent', down)).rejects.toMatchObject({ code: 'network' });
    expect(await openStoredModel(store(), 'org/absent')).toBeUndefined();
    await expect(openStoredFile(store(), 'org/absent', 'config.json')).rejects.toMatchObject({
      code: 'not_stored',
      message: `model org/absent: revision main is not stored in ${hubDir}: download it first`,
    });
  });

  it('offline reads a snapshot written by Python tools (no manifest), inferring sha256 from blob names', async () => {
    const commit = 'a'.repeat(40);
    const dir = join(hubDir, 'models--py--model');
    await mkdir(join(dir, 'blobs'), { recursive: true });
    await mkdir(join(dir, 'snapshots', commit), { recursive: true });
    await mkdir(join(dir, 'refs'), { recursive: true });
    await writeFile(join(dir, 'blobs', sha256(WEIGHTS)), WEIGHTS);
    await writeFile(join(dir, 'blobs', gitOid(CONFIG)), CONFIG);
    await symlink(`../../blobs/${sha256(WEIGHTS)}`, join(dir, 'snapshots', commit, 'model.safetensors'));
    await symlink(`../../blobs/${gitOid(CONFIG)}`, join(dir, 'snapshots', commit, 'config.json'));
    await writeFile(join(dir, 'refs', 'main'), commit);
    const r = await resolveModel('py/model', { store: store(), offline: true });
    expect(r.revision).toBe(commit);
    expect(r.files).toEqual([
      { path: 'config.json', size: CONFIG.length, etag: gitOid(CONFIG) },
      { path: 'model.safetensors', size: WEIGHTS.length, sha256: sha256(WEIGHTS), etag: sha256(WEIGHTS) },
    ]);
    const f = await openStoredFile(store(), 'py/model', 'model.safetensors');
    expectBytes(await f.read(5, 3), WEIGHTS.subarray(5, 8));
    expect((await listStoredModels(store())).find((m) => m.id === 'py/model')!.revisions[0]!.complete).toBe(true);
  });

  it('sends the token as Bearer (HF_TOKEN, or $HF_HOME/token) and explains 401/403/404', async () => {
    const priv = (o: Partial<Parameters<typeof downloadModel>[1]> = {}) => downloadModel('org/private', { store: store(), endpoint: hub.url, retry: fast, ...o });
    await expect(priv()).rejects.toThrow(
      (`model org/private: no such model at ${hub.url}, or it is private or gated and needs a token (HF_TOKEN) / accept the license at ${hub.url}/org/private`),
    );
    vi.stubEnv('HF_TOKEN', TOKEN);
    hub.clearRequests();
    const m = await priv();
    expect(await m.readText('config.json')).toBe('{"p":1}');
    expect(hub.requests.length).toBeGreaterThanOrEqual(3);
    expect(hub.requests.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);

    vi.stubEnv('HF_TOKEN', 'hf_revoked');
    const bad = await priv({ files: ['config.json'] }).catch((e) => e);
    expect(bad.code).toBe('unauthorized');
    expect(bad.message).toMatch(/refused the token \(401\)/);
    expect(bad.message).not.toContain('hf_revoked');

    // the token file written by `huggingface-cli login`
    vi.stubEnv('HF_TOKEN', '');
    await writeFile(join(home, 'token'), `${TOKEN}\n`);
    hub.clearRequests();
    await deleteStoredModel(store(), 'org/private');
    await priv();
    expect(hub.requests.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);
    await rm(join(home, 'token'));

    // gated: no token -> 401, a token that did not accept the license -> 403
    const gated = (token?: string) => downloadModel('org/gated', { store: store(), endpoint: hub.url, retry: fast, token });
    await expect(gated()).rejects.toThrow(`model org/gated: the model is gated: needs a token (HF_TOKEN) of an account that accepted the license at ${hub.url}/org/gated`);
    await expect(gated('hf_other_token')).rejects.toThrow(`model org/gated: the model is gated and this token has no access: accept the license at ${hub.url}/org/gated`);
    expect(await (await gated(TOKEN)).readText('config.json')).toBe('{"g":1}');

    // 404s
    await expect(downloadModel('org/nope', { store: store(), endpoint: hub.url, token: TOKEN })).rejects.toThrow(`model org/nope: no such model/revision at ${hub.url} (404)`);
    await expect(get({ revision: 'v9' })).rejects.toThrow(`model org/tiny: no such revision "v9" at ${hub.url}`);
    await expect(get({ files: ['nope.bin'] })).rejects.toMatchObject({ code: 'not_found', message: expect.stringMatching(/file nope\.bin: no such file/) });
    await expect(resolveModel('bad id!', { endpoint: hub.url })).rejects.toMatchObject({ code: 'invalid' });
  });

  it('takes the endpoint from HF_ENDPOINT and pages through long tree listings', async () => {
    await hub.close();
    hub = await startMockHub({ repos: { [ID]: { files: files() } }, treePageSize: 2, tokens: [TOKEN, 'hf_other_token'] });
    vi.stubEnv('HF_ENDPOINT', hub.url);
    const r = await resolveModel(ID);
    expect(r.files.map((f) => f.path)).toEqual(['config.json', 'extra/model-2.safetensors', 'model.safetensors', 'tokenizer/tokenizer.json']);
    expect(hub.requests.filter((q) => q.kind === 'tree').length).toBeGreaterThan(2);
    // put the shared hub back as the other tests expect it
    await hub.close();
    hub = await startMockHub({
      repos: {
        [ID]: { files: files() },
        'org/private': { files: { 'config.json': '{"p":1}' }, private: true },
        'org/gated': { files: { 'config.json': '{"g":1}' }, gated: true, grantedTokens: [TOKEN] },
      },
      tokens: [TOKEN, 'hf_other_token'],
    });
  });

  it('refuses to start without the disk space, writing nothing', async () => {
    const err = await downloadModel(ID, { store: nodeStore({ hfHome: home, freeSpace: async () => 500 }), endpoint: hub.url }).catch((e) => e);
    expect(err.code).toBe('quota');
    expect(err.message).toBe(`model org/tiny: needs 420 KB of disk space in ${hubDir} but only 500 B is free: free some space (or set HF_HOME to another disk) and retry`);
    await expect(stat(repoDir())).rejects.toThrow();
  });

  it('an abort stops at once with an AbortError; the partial data resumes later', async () => {
    hub.setFaults({ bytesPerSecond: 2_000_000 });
    const ac = new AbortController();
    const p = get({
      files: ['model.safetensors'],
      signal: ac.signal,
      onProgress: (e) => {
        if (e.fileLoaded > 50_000) ac.abort();
      },
    });
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    const held = (await stat(join(repoDir(), 'blobs', `${sha256(WEIGHTS)}.incomplete`))).size;
    expect(held).toBeGreaterThan(0);
    hub.setFaults({});
    hub.clearRequests();
    const m = await get({ files: ['model.safetensors'] });
    expect(fileRequests('model.safetensors')[0]!.range).toBe(`bytes=${held}-`);
    expectBytes(await m.readBytes('model.safetensors'), WEIGHTS);
  });
});

describe('Hub datasets offline', () => {
  it('are an error naming the dataset and what to do (they are fetched, never stored)', async () => {
    const access = hubDatasetAccess({ endpoint: 'http://127.0.0.1:9', offline: true });
    await expect(access.fetchFile('org/data', 'train.json')).rejects.toThrow(/dataset org\/data: offline mode .* file_name/);
    await expect(access.listRepoFiles('org/data')).rejects.toMatchObject({ code: 'offline' });
  });

  it('that cannot be reached are an error naming the dataset and the endpoint, suggesting HF_HUB_OFFLINE', async () => {
    // a port nothing listens on any more: fetch itself fails ("TypeError: fetch failed")
    const server = createServer();
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const port = (server.address() as AddressInfo).port;
    await new Promise((done) => server.close(done));
    const access = hubDatasetAccess({ endpoint: `http://127.0.0.1:${port}`, offline: false, token: false });
    for (const request of [() => access.fetchFile('org/data', 'train.json'), () => access.listRepoFiles('org/data')]) {
      const e = await request().then(() => null, (err: unknown) => err);
      expect(e).toMatchObject({ code: 'network' });
      expect((e as Error).message).toMatch(new RegExp(`^dataset org/data (file train\\.json|file list): cannot reach the Hub at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\);.* HF_HUB_OFFLINE=1`));
    }
  });
});
