// Downloading a resolved model into a store: resumable (Range from what the store holds),
// retried with backoff on 429/5xx, cut connections, stalls and short bodies, verified by sha256
// (LFS) or git oid (other files) before the file becomes visible, with progress.

import { HubError, formatBytes, httpError, isAbort, safeUrl, where } from './errors';
import { fileHasher, isGitOid, isSha256, type HashFactory, type HashKind, type IncrementalHash } from './hash';
import { abortReason, backoffDelay, childController, describeCause, errorBodyMessage, isRetryableStatus, sleep, throwIfAborted } from './http';
import { OFFLINE_WHY, fileMatcher, makeContext, resolveOnline, resolveStored, type Context, type FileFilter, type HubOptions } from './resolve';
import { StoredModel, isCommitSha, shortRev, type BlobWriter, type HubFile, type Manifest, type ModelStore } from './store';

export interface DownloadProgress {
  /** The file that just advanced. */
  file: string;
  /** Bytes of the whole download held so far (already stored ones included). */
  loaded: number;
  /** Bytes of the whole download. */
  total: number;
  fileLoaded: number;
  fileTotal: number;
  /** Network rate over the last few seconds. */
  bytesPerSecond: number;
  /** Seconds left at that rate (Infinity while unknown). */
  etaSeconds: number;
  /** The file was just completed and verified. */
  done?: boolean;
}

/** A file's transfer failed and is about to be tried again. */
export interface DownloadRetry {
  file: string;
  /** What went wrong ("terminated", "503 Service Unavailable", "no data for 60 s", ...). */
  problem: string;
  /** Failures in a row so far (1 for the first), of `retries` allowed. */
  attempt: number;
  retries: number;
  /** Milliseconds until the next attempt. */
  delayMs: number;
  /** The byte the next attempt asks for (Range): what the store holds of the file. */
  resumeFrom: number;
  fileTotal: number;
}

export interface DownloadOptions extends HubOptions {
  store: ModelStore;
  /** Which files (default: all of the repo). */
  files?: FileFilter;
  onProgress?(p: DownloadProgress): void;
  /** Files downloaded at once (default 2). */
  concurrency?: number;
  /** Told when the Hub could not be reached and the stored copy is returned instead. */
  onWarning?(message: string): void;
  /** Told before each automatic retry of a file (a cut connection, a stall, 429/5xx). */
  onRetry?(r: DownloadRetry): void;
}

class Progress {
  loaded = 0;
  private transferred = 0;
  private samples: Array<[number, number]> = [];
  private lastEmit = 0;
  constructor(
    readonly total: number,
    private readonly cb?: (p: DownloadProgress) => void,
  ) {}

  /** Bytes that were already stored (no transfer). */
  held(n: number) {
    this.loaded += n;
  }

  /** Bytes received from the network. */
  received(n: number) {
    this.loaded += n;
    this.transferred += n;
  }

  emit(file: string, fileLoaded: number, fileTotal: number, force = false) {
    if (!this.cb) return;
    const now = performance.now();
    if (!force && now - this.lastEmit < 100) return;
    this.lastEmit = now;
    this.samples.push([now, this.transferred]);
    while (this.samples.length > 2 && now - this.samples[0]![0] > 5000) this.samples.shift();
    const [t0, b0] = this.samples[0]!;
    const dt = (now - t0) / 1000;
    const rate = dt > 0.05 ? (this.transferred - b0) / dt : 0;
    const left = Math.max(0, this.total - this.loaded);
    this.cb({
      file,
      loaded: this.loaded,
      total: this.total,
      fileLoaded,
      fileTotal,
      bytesPerSecond: rate,
      etaSeconds: left === 0 ? 0 : rate > 0 ? left / rate : Infinity,
      ...(force ? { done: fileLoaded === fileTotal } : {}),
    });
  }
}

/** The key of a file's blob: its sha256 for LFS files, its git oid (= ETag) otherwise. */
export function blobKey(f: HubFile, commit: string): string {
  return f.sha256 ?? f.etag ?? `unverified-${commit}-${f.path.replace(/[^\w.-]/g, '_')}`;
}

function verification(f: HubFile): { kind: HashKind; expected: string } | undefined {
  if (isSha256(f.sha256)) return { kind: 'sha256', expected: f.sha256 };
  if (isGitOid(f.etag)) return { kind: 'git-sha1', expected: f.etag };
  return undefined;
}

export function resolveUrl(endpoint: string, id: string, commit: string, path: string): string {
  return `${endpoint}/${id}/resolve/${encodeURIComponent(commit)}/${path.split('/').map(encodeURIComponent).join('/')}`;
}

/** Bytes an attempt must bring to reset the count of failures in a row. */
const MIN_PROGRESS = 1 << 20;

/** Errors of the store while writing: not retried. */
class WriteFailure extends Error {
  constructor(readonly original: unknown) {
    super('store write failed');
  }
}

interface FileJob {
  ctx: Context;
  onRetry?: DownloadOptions['onRetry'];
  store: ModelStore;
  hashes: HashFactory;
  commit: string;
  file: HubFile;
  key: string;
  progress: Progress;
}

/** Bring the bytes of `w` from w.offset to the file's size. `hasher` is fed everything. */
async function transfer(job: FileJob, w: BlobWriter, hash: { h?: IncrementalHash; reset(): void }): Promise<void> {
  const { ctx, file, progress } = job;
  const size = file.size;
  const url = resolveUrl(ctx.endpoint, ctx.id, job.commit, file.path);
  const errCtx = { id: ctx.id, endpoint: ctx.endpoint, revision: job.commit, file: file.path, hasToken: !!ctx.token };
  let failures = 0;
  let lastProblem = '';
  let attempts = 0;
  while (w.offset < size) {
    throwIfAborted(ctx.signal);
    attempts++;
    const start = w.offset;
    const { controller, dispose } = childController(ctx.signal);
    let stalled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        controller.abort(new DOMException('stalled', 'TimeoutError'));
      }, ctx.policy.stallTimeoutMs);
    };
    let retryAfter: string | null = null;
    let progressed = false;
    try {
      const headers = new Headers();
      if (ctx.token) headers.set('authorization', `Bearer ${ctx.token}`);
      if (start > 0) headers.set('range', `bytes=${start}-`);
      arm();
      // no-store: the bytes go to our store; the browser's HTTP cache must not keep (or resume) a copy.
      const res = await ctx.fetch(url, { headers, signal: controller.signal, redirect: 'follow', cache: 'no-store' });
      if (!res.ok) {
        if (isRetryableStatus(res.status)) {
          retryAfter = res.headers.get('retry-after');
          await res.body?.cancel().catch(() => {});
          throw new Error(`${res.status} ${res.statusText}`.trim());
        }
        if (res.status === 416 && start > 0) {
          // Not satisfiable: what we hold does not fit the file; start over.
          await res.body?.cancel().catch(() => {});
          await writeOrFail(() => w.reset());
          progress.held(-start);
          hash.reset();
          throw new Error('416 range not satisfiable');
        }
        throw httpError(res.status, res.headers, res.url || url, errCtx, await errorBodyMessage(res));
      }
      if (start > 0 && res.status !== 206) {
        // The server ignored Range and sends everything: drop what we hold.
        await writeOrFail(() => w.reset());
        progress.held(-start);
        hash.reset();
      } else if (res.status === 206) {
        const m = /bytes\s+(\d+)-(\d+)\/(\d+|\*)/i.exec(res.headers.get('content-range') ?? '');
        if (!m || Number(m[1]) !== start) {
          await res.body?.cancel().catch(() => {});
          throw new Error(`bad Content-Range "${res.headers.get('content-range')}" for a request from byte ${start}`);
        }
        if (m[3] !== '*' && Number(m[3]) !== size) {
          await res.body?.cancel().catch(() => {});
          throw new HubError(
            'integrity',
            `${where(ctx.id, file.path)}: the server has ${Number(m[3])} bytes, the listing said ${size} (revision ${shortRev(job.commit)}): the file changed; retry`,
            { id: ctx.id, file: file.path, revision: job.commit },
          );
        }
      }
      if (!res.body) throw new Error('empty response body');
      const reader = res.body.getReader();
      try {
        for (;;) {
          arm();
          const { done, value } = await reader.read();
          if (done) break;
          if (!value?.length) continue;
          if (w.offset + value.length > size) {
            await reader.cancel().catch(() => {});
            const had = w.offset;
            await w.discard();
            progress.held(-had);
            throw new HubError(
              'integrity',
              `${where(ctx.id, file.path)}: the server sent more than the ${size} bytes listed (revision ${shortRev(job.commit)}): the download was corrupted; removed, retry`,
              { id: ctx.id, file: file.path, revision: job.commit },
            );
          }
          // The store's write (IndexedDB works off the main thread) overlaps the hashing.
          const written = writeOrFail(() => w.write(value));
          hash.h?.update(value);
          await written;
          progress.received(value.length);
          progress.emit(file.path, w.offset, size);
          progressed = true;
        }
      } finally {
        reader.releaseLock();
      }
      if (w.offset < size) throw new Error(`the answer ended early (${w.offset - start} bytes from byte ${start})`);
    } catch (e) {
      if (e instanceof WriteFailure) throw e.original;
      if (e instanceof HubError) throw e;
      if (ctx.signal?.aborted) throw abortReason(ctx.signal);
      if (isAbort(e) && !stalled) throw e;
      lastProblem = stalled ? `no data for ${Math.round(ctx.policy.stallTimeoutMs / 1000)} s` : describeCause(e);
      // An attempt that brought a good amount resets the count; a server that keeps cutting after a
      // few bytes does not get to crawl through the file.
      if (progressed && w.offset - start >= Math.min(MIN_PROGRESS, size - start)) failures = 0;
      failures++;
      if (failures > ctx.policy.retries)
        throw new HubError(
          'network',
          `${where(ctx.id, file.path)}: download failed after ${attempts} attempts (${failures} in a row): ${lastProblem}; got ${formatBytes(w.offset)} of ${formatBytes(size)} from ${safeUrl(url)} (the partial download is kept and resumes next time)`,
          { id: ctx.id, file: file.path, revision: job.commit, url: safeUrl(url), cause: e },
        );
      const delayMs = backoffDelay(ctx.policy, failures, retryAfter);
      job.onRetry?.({ file: file.path, problem: lastProblem, attempt: failures, retries: ctx.policy.retries, delayMs, resumeFrom: w.offset, fileTotal: size });
      await sleep(delayMs, ctx.signal);
    } finally {
      clearTimeout(timer);
      dispose();
    }
  }
}

async function writeOrFail(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    throw new WriteFailure(e);
  }
}

/** Download and verify one blob (the caller holds its lock). */
async function fetchBlob(job: FileJob): Promise<void> {
  const { ctx, store, file, key, progress } = job;
  const check = verification(file);
  let fresh = false;
  for (;;) {
    const w = await store.openWriter(ctx.id, key, file.size);
    let finished = false;
    try {
      const resumedFrom = w.offset;
      const hash = {
        h: check ? fileHasher(job.hashes, check.kind, file.size) : undefined,
        reset() {
          this.h = check ? fileHasher(job.hashes, check.kind, file.size) : undefined;
        },
      };
      if (resumedFrom > 0 && hash.h) for await (const c of w.readPrefix()) hash.h.update(c);
      progress.held(resumedFrom);
      await transfer(job, w, hash);
      if (check) {
        const got = hash.h!.hex();
        if (got !== check.expected) {
          finished = true;
          await w.discard();
          progress.held(-file.size);
          if (resumedFrom > 0 && !fresh) {
            // The held part may be what went wrong: once more from scratch.
            fresh = true;
            continue;
          }
          const what = check.kind === 'sha256' ? 'sha256' : 'git oid';
          throw new HubError(
            'integrity',
            `${where(ctx.id, file.path)}: ${what} mismatch (expected ${check.expected}, got ${got}): the download was corrupted; removed, retry`,
            { id: ctx.id, file: file.path, revision: job.commit },
          );
        }
      }
      finished = true;
      await w.commit();
      progress.emit(file.path, file.size, file.size, true);
      return;
    } finally {
      if (!finished) await w.close().catch(() => {});
    }
  }
}

async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  let hasFailed = false;
  const worker = async () => {
    while (!hasFailed && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (e) {
        if (!hasFailed) {
          hasFailed = true;
          failed = e;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
  if (hasFailed) throw failed;
}

function mergeFiles(a: HubFile[], b: HubFile[]): HubFile[] {
  const m = new Map(a.map((f) => [f.path, f]));
  for (const f of b) m.set(f.path, f);
  return [...m.values()].sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
}

/** The stored files of a revision that a selection asks for, or an 'offline' error. */
async function storedSelection(store: ModelStore, id: string, revision: string, filter: FileFilter | undefined, why?: string): Promise<StoredModel> {
  const stored = await resolveStored(store, id, revision, why ?? OFFLINE_WHY);
  const match = fileMatcher(filter);
  const files = match ? stored.files.filter(match) : stored.files;
  if (Array.isArray(filter)) {
    const wanted = filter.filter((p) => !/[*?]/.test(p));
    const missing = wanted.filter((p) => !files.some((f) => f.path === p));
    if (missing.length)
      throw new HubError(
        'offline',
        `${where(id, missing[0])}: not stored at revision ${revision} (${shortRev(stored.revision)}) in ${store.location} and ${why ?? OFFLINE_WHY}: download it first while online`,
        { id, file: missing[0], revision },
      );
  }
  if (!files.length)
    throw new HubError('offline', `${where(id)}: no stored file matches the selection at revision ${revision} in ${store.location} and ${why ?? OFFLINE_WHY}`, { id, revision });
  return new StoredModel(store, id, stored.revision, files);
}

/**
 * Download a model (or the files `files` selects) into `store` and return it, ready to read.
 * Offline: the stored copy, or a clear error.
 */
export async function downloadModel(id: string, opts: DownloadOptions): Promise<StoredModel> {
  const { store } = opts;
  if (!store) throw new HubError('invalid', `${where(id)}: downloadModel needs a store (nodeStore() or browserStore())`, { id });
  const ctx = await makeContext(id, opts, store);
  const revision = opts.revision ?? 'main';

  if (ctx.offline) return storedSelection(store, id, revision, opts.files);

  let resolved;
  try {
    resolved = await resolveOnline(ctx, revision, opts.files);
  } catch (e) {
    // The Hub cannot be reached: a stored copy of this revision will do (as huggingface_hub does).
    if (!(e instanceof HubError && e.code === 'network')) throw e;
    const stored = await storedSelection(store, id, revision, opts.files, 'the Hub cannot be reached').catch(() => undefined);
    if (!stored) throw e;
    opts.onWarning?.(`${e.message}; using the stored copy (revision ${shortRev(stored.revision)}), which may be out of date`);
    return stored;
  }
  const commit = resolved.revision;
  const files = resolved.files;
  if (!files.length) throw new HubError('not_found', `${where(id)}: no file matches the selection at revision ${revision} (${shortRev(commit)})`, { id, revision });

  // What is missing, and room for it, before anything is written.
  const states = new Map<string, { complete: boolean; stored: number; size: number }>();
  for (const f of files) {
    const k = blobKey(f, commit);
    if (!states.has(k)) states.set(k, { ...(await store.blobState(id, k)), size: f.size });
  }
  let needed = 0;
  for (const s of states.values()) if (!s.complete) needed += Math.max(0, s.size - s.stored);
  throwIfAborted(ctx.signal);
  if (needed > 0) await store.checkSpace(id, needed);

  const hashes = await store.hashFactory();
  const progress = new Progress(
    files.reduce((a, f) => a + f.size, 0),
    opts.onProgress,
  );
  await pool(files, opts.concurrency ?? 2, async (file) => {
    const key = blobKey(file, commit);
    await store.lock(`${store.location}\u0000${key}`, async () => {
      const st = await store.blobState(id, key);
      if (st.complete) {
        progress.held(file.size);
        progress.emit(file.path, file.size, file.size, true);
        return;
      }
      await fetchBlob({ ctx, onRetry: opts.onRetry, store, hashes, commit, file, key, progress });
    });
    await store.link(id, commit, file, key);
  });

  const prev = await store.readManifest(id, commit);
  const manifest: Manifest = { id, revision: commit, files: mergeFiles(prev?.files ?? [], files), updatedAt: Date.now() };
  await store.writeManifest(manifest);
  if (!isCommitSha(revision)) await store.writeRef(id, revision, commit);
  return new StoredModel(store, id, commit, files);
}

/** A stored model's file as a byte-range reader (for loaders that have no StoredModel). */
export async function openStoredFile(store: ModelStore, id: string, path: string, opts: { revision?: string } = {}) {
  const r = await resolveStored(store, id, opts.revision ?? 'main', null);
  return new StoredModel(store, id, r.revision, r.files).open(path);
}

/** A stored model (offline view), or undefined. */
export async function openStoredModel(store: ModelStore, id: string, opts: { revision?: string } = {}): Promise<StoredModel | undefined> {
  try {
    const r = await resolveStored(store, id, opts.revision ?? 'main', null);
    return new StoredModel(store, id, r.revision, r.files);
  } catch (e) {
    if (e instanceof HubError && e.code === 'not_stored') return undefined;
    throw e;
  }
}
