// The browser store: IndexedDB through idb-keyval, one database ("crucible-hub", object store
// "kv"), array keys:
//
//   ['blob', key]                 { key, size, chunkSize, chunks, complete, owners: model ids }
//   ['chunk', key, i]             Uint8Array, bytes [i*chunkSize, min(size, (i+1)*chunkSize))
//   ['file', id, commit, path]    { path, size, sha256?, etag?, blob: key }   (a snapshot entry)
//   ['manifest', id, commit]      { id, revision, files, updatedAt }          (a finished download)
//   ['ref', id, branch]           commit sha
//
// key = the file's sha256 (LFS) or git blob oid, so identical files are stored once. A chunk is
// written together with its blob record's `chunks` count in one transaction, so after a reload or
// a dropped connection the download resumes from the last complete chunk; `complete` is set only
// after the sha256 matched, and a file entry only after that. A range read fetches just the
// chunks it covers: a multi-GB file is never in memory.

import { createStore, delMany, get, getMany, promisifyRequest, set, setMany, update, type UseStore } from 'idb-keyval';
import { HubError, formatBytes, where } from './errors';
import { nobleHash, type HashFactory } from './hash';
import {
  checkRange,
  memoryLocks,
  shortRev,
  sliceChunks,
  type BlobWriter,
  type HubFile,
  type Manifest,
  type ModelStore,
  type StoredFile,
  type StoredModelInfo,
  type StoredRevision,
} from './store';

export const DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024;

/** Where there are no Web Locks: shared by every store of this realm. */
const sharedLocks = memoryLocks();

export interface BrowserStoreOptions {
  /** IndexedDB database name (default "crucible-hub"). */
  dbName?: string;
  /** Bytes per chunk record (default 16 MiB; the resume granularity). */
  chunkSize?: number;
  /**
   * Incremental hashes (default @noble/hashes). noble runs at tens of MB/s in a browser, which can
   * bound the download rate: an app may plug a faster (WASM) one here.
   */
  hash?: HashFactory;
  /** Default navigator.storage. */
  storage?: Pick<StorageManager, 'estimate'> & Partial<Pick<StorageManager, 'persist' | 'persisted'>>;
}

interface BlobMeta {
  key: string;
  size: number;
  chunkSize: number;
  /** Chunks stored (each full, but the file's last). */
  chunks: number;
  complete: boolean;
  owners: string[];
}

interface FileRecord extends HubFile {
  blob: string;
}

const blobK = (key: string) => ['blob', key];
const chunkK = (key: string, i: number) => ['chunk', key, i];
const fileK = (id: string, commit: string, path: string) => ['file', id, commit, path];
const manifestK = (id: string, commit: string) => ['manifest', id, commit];
const refK = (id: string, ref: string) => ['ref', id, ref];
/** All keys starting with `prefix` (strings sort before arrays in IndexedDB). */
const prefixRange = (...prefix: IDBValidKey[]) => IDBKeyRange.bound(prefix, [...prefix, []]);

function chunkLen(meta: { size: number; chunkSize: number }, i: number): number {
  return Math.min(meta.chunkSize, meta.size - i * meta.chunkSize);
}

function quotaError(e: unknown, id: string, location: string): unknown {
  const name = (e as { name?: string })?.name;
  if (name === 'QuotaExceededError')
    return new HubError('quota', `${where(id)}: browser storage is full (${location}): delete stored models or free disk space, then retry`, { id, cause: e });
  return e;
}

class IdbBlobWriter implements BlobWriter {
  private buf: Uint8Array | undefined;
  private fill = 0;
  private state: 'open' | 'done' = 'open';
  constructor(
    private readonly db: UseStore,
    private meta: BlobMeta,
    private readonly id: string,
    private readonly location: string,
  ) {}

  get offset(): number {
    return Math.min(this.meta.size, this.meta.chunks * this.meta.chunkSize) + this.fill;
  }

  async *readPrefix(): AsyncIterable<Uint8Array> {
    for (let i = 0; i < this.meta.chunks; i++) {
      const c = await get<Uint8Array>(chunkK(this.meta.key, i), this.db);
      if (!c || c.length !== chunkLen(this.meta, i)) throw new Error(`chunk ${i} of ${this.meta.key} is missing`);
      yield c;
    }
    if (this.fill) yield this.buf!.subarray(0, this.fill);
  }

  async write(bytes: Uint8Array): Promise<void> {
    let pos = 0;
    while (pos < bytes.length) {
      const i = this.meta.chunks;
      const want = chunkLen(this.meta, i);
      if (want <= 0) throw new Error(`write past the end of ${this.meta.key}`);
      if (!this.buf || this.buf.length !== want) {
        const old = this.buf?.subarray(0, this.fill);
        this.buf = new Uint8Array(want);
        if (old) this.buf.set(old);
      }
      const n = Math.min(want - this.fill, bytes.length - pos);
      this.buf.set(bytes.subarray(pos, pos + n), this.fill);
      this.fill += n;
      pos += n;
      if (this.fill === want) {
        const meta = { ...this.meta, chunks: i + 1 };
        try {
          await setMany([[chunkK(meta.key, i), this.buf], [blobK(meta.key), meta]], this.db);
        } catch (e) {
          throw quotaError(e, this.id, this.location);
        }
        this.meta = meta;
        this.fill = 0;
      }
    }
  }

  async reset(): Promise<void> {
    await this.db('readwrite', (s) => {
      s.delete(prefixRange('chunk', this.meta.key));
      s.put({ ...this.meta, chunks: 0 }, blobK(this.meta.key));
      return promisifyRequest(s.transaction);
    });
    this.meta = { ...this.meta, chunks: 0 };
    this.fill = 0;
  }

  async commit(): Promise<void> {
    if (this.offset !== this.meta.size || this.fill) throw new Error(`commit of ${this.meta.key} before its end`);
    this.meta = { ...this.meta, complete: true };
    await set(blobK(this.meta.key), this.meta, this.db);
    this.state = 'done';
    this.buf = undefined;
  }

  async discard(): Promise<void> {
    if (this.state === 'done') return;
    this.state = 'done';
    this.buf = undefined;
    this.fill = 0;
    await this.db('readwrite', (s) => {
      s.delete(prefixRange('chunk', this.meta.key));
      s.delete(blobK(this.meta.key));
      return promisifyRequest(s.transaction);
    });
  }

  async close(): Promise<void> {
    // What is not in a complete chunk is lost; the chunks stay for the next attempt.
    this.state = 'done';
    this.buf = undefined;
    this.fill = 0;
  }
}

class BrowserStore implements ModelStore {
  readonly kind = 'browser' as const;
  readonly location: string;
  private readonly db: UseStore;
  private readonly chunkSize: number;

  constructor(private readonly opts: BrowserStoreOptions) {
    const name = opts.dbName ?? 'crucible-hub';
    this.location = `IndexedDB ${name}`;
    this.db = createStore(name, 'kv');
    this.chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!(this.chunkSize > 0) || !Number.isInteger(this.chunkSize)) throw new HubError('invalid', `chunkSize must be a positive integer, not ${opts.chunkSize}`);
  }

  private get storage() {
    return this.opts.storage ?? (globalThis.navigator as Navigator | undefined)?.storage;
  }

  lock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const locks = (globalThis.navigator as Navigator | undefined)?.locks;
    if (locks?.request) return locks.request(`crucible-hub:${name}`, fn) as Promise<T>;
    return sharedLocks(name, fn);
  }

  async hashFactory(): Promise<HashFactory> {
    return this.opts.hash ?? nobleHash;
  }

  async checkSpace(id: string, bytes: number): Promise<void> {
    const storage = this.storage;
    if (!storage) return;
    try {
      if (storage.persist && !(await storage.persisted?.())) await storage.persist();
    } catch {
      // Persistence is a request; the browser may refuse.
    }
    if (!storage.estimate) return;
    const { quota, usage } = await storage.estimate();
    if (quota === undefined) return;
    const free = Math.max(0, quota - (usage ?? 0));
    if (free < bytes)
      throw new HubError(
        'quota',
        `${where(id)}: needs ${formatBytes(bytes)} of browser storage but only ${formatBytes(free)} is available (quota ${formatBytes(quota)}, used ${formatBytes(usage ?? 0)}): delete stored models or free disk space, then retry`,
        { id },
      );
  }

  async blobState(_id: string, key: string): Promise<{ complete: boolean; stored: number }> {
    const m = await get<BlobMeta>(blobK(key), this.db);
    if (!m) return { complete: false, stored: 0 };
    if (m.complete) return { complete: true, stored: m.size };
    return { complete: false, stored: m.chunkSize === this.chunkSize ? Math.min(m.size, m.chunks * m.chunkSize) : 0 };
  }

  async openWriter(id: string, key: string, size: number): Promise<BlobWriter> {
    let meta = await get<BlobMeta>(blobK(key), this.db);
    if (meta && (meta.size !== size || meta.chunkSize !== this.chunkSize || meta.complete)) {
      // Another chunking (or an odd record): start over.
      await this.db('readwrite', (s) => {
        s.delete(prefixRange('chunk', key));
        return promisifyRequest(s.transaction);
      });
      meta = undefined;
    }
    meta = meta
      ? { ...meta, owners: meta.owners.includes(id) ? meta.owners : [...meta.owners, id] }
      : { key, size, chunkSize: this.chunkSize, chunks: 0, complete: false, owners: [id] };
    await set(blobK(key), meta, this.db);
    return new IdbBlobWriter(this.db, meta, id, this.location);
  }

  async link(id: string, commit: string, file: HubFile, key: string): Promise<void> {
    await update<BlobMeta>(
      blobK(key),
      (m) => {
        if (!m?.complete) throw new Error(`blob ${key} is not complete`);
        return m.owners.includes(id) ? m : { ...m, owners: [...m.owners, id] };
      },
      this.db,
    );
    const rec: FileRecord = { path: file.path, size: file.size, blob: key };
    if (file.sha256) rec.sha256 = file.sha256;
    if (file.etag) rec.etag = file.etag;
    await set(fileK(id, commit, file.path), rec, this.db);
  }

  async readRef(id: string, ref: string): Promise<string | undefined> {
    return get<string>(refK(id, ref), this.db);
  }

  async writeRef(id: string, ref: string, commit: string): Promise<void> {
    await set(refK(id, ref), commit, this.db);
  }

  async readManifest(id: string, commit: string): Promise<Manifest | undefined> {
    return get<Manifest>(manifestK(id, commit), this.db);
  }

  async writeManifest(m: Manifest): Promise<void> {
    await set(manifestK(m.id, m.revision), m, this.db);
  }

  private getAll<T>(range: IDBKeyRange): Promise<T[]> {
    return this.db('readonly', (s) => promisifyRequest(s.getAll(range) as IDBRequest<T[]>));
  }

  private getAllKeys(range: IDBKeyRange): Promise<IDBValidKey[]> {
    return this.db('readonly', (s) => promisifyRequest(s.getAllKeys(range)));
  }

  /** Keys and values of a range, read in one transaction. */
  private entries<K, T>(range: IDBKeyRange): Promise<Array<[K, T]>> {
    return this.db('readonly', async (s) => {
      const [k, v] = await Promise.all([promisifyRequest(s.getAllKeys(range)), promisifyRequest(s.getAll(range))]);
      return k.map((key, i) => [key as K, v[i] as T]);
    });
  }

  async storedFiles(id: string, commit: string): Promise<HubFile[]> {
    const recs = await this.getAll<FileRecord>(prefixRange('file', id, commit));
    return recs.map(({ blob: _b, ...f }) => f);
  }

  async openFile(id: string, commit: string, path: string): Promise<StoredFile | undefined> {
    const rec = await get<FileRecord>(fileK(id, commit, path), this.db);
    if (!rec) return undefined;
    const meta = await get<BlobMeta>(blobK(rec.blob), this.db);
    if (!meta?.complete) return undefined;
    const db = this.db;
    const name = `${id}@${shortRev(commit)}/${path}`;
    const cs = meta.chunkSize;
    // The last two chunks read: consecutive small tensors often share one.
    const cache: Array<[number, Uint8Array<ArrayBuffer>]> = [];
    return {
      size: meta.size,
      name,
      async read(offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
        checkRange(name, meta.size, offset, length);
        if (length === 0) return new Uint8Array(0);
        const first = Math.floor(offset / cs);
        const last = Math.floor((offset + length - 1) / cs);
        const idx = Array.from({ length: last - first + 1 }, (_, k) => first + k);
        const missing = idx.filter((i) => !cache.some(([j]) => j === i));
        const got = missing.length ? await getMany<Uint8Array<ArrayBuffer>>(missing.map((i) => chunkK(meta.key, i)), db) : [];
        const chunks = idx.map((i) => {
          const hit = cache.find(([j]) => j === i);
          if (hit) return hit[1];
          const c = got[missing.indexOf(i)];
          if (!c || c.length !== chunkLen(meta, i))
            throw new HubError('not_stored', `${name}: chunk ${i} is missing from ${'IndexedDB'}: the store was modified; delete the model and download it again`, { id, file: path });
          return c;
        });
        for (const i of idx.slice(-2)) {
          if (cache.some(([j]) => j === i)) continue;
          cache.push([i, chunks[idx.indexOf(i)]!]);
          if (cache.length > 2) cache.shift();
        }
        const out = sliceChunks(chunks, first * cs, offset, length);
        // Never hand out a view of a cached chunk (the caller may transfer or mutate it).
        return chunks.length === 1 ? out.slice() : out;
      },
    };
  }

  async list(): Promise<StoredModelInfo[]> {
    const metas = await this.getAll<BlobMeta>(prefixRange('blob'));
    const files = await this.entries<[string, string, string, string], FileRecord>(prefixRange('file'));
    const refs = await this.entries<[string, string, string], string>(prefixRange('ref'));
    const manifests = await this.getAll<Manifest>(prefixRange('manifest'));

    const models = new Map<string, StoredModelInfo>();
    const model = (id: string) => {
      let m = models.get(id);
      if (!m) models.set(id, (m = { id, size: 0, partialBytes: 0, revisions: [] }));
      return m;
    };
    for (const b of metas)
      for (const id of b.owners) {
        const m = model(id);
        const held = b.complete ? b.size : Math.min(b.size, b.chunks * b.chunkSize);
        m.size += held;
        if (!b.complete) m.partialBytes += held;
      }
    const revs = new Map<string, StoredRevision>();
    const rev = (id: string, commit: string) => {
      const k = `${id}\0${commit}`;
      let r = revs.get(k);
      if (!r) {
        revs.set(k, (r = { revision: commit, refs: [], files: 0, size: 0, complete: false }));
        model(id).revisions.push(r);
      }
      return r;
    };
    for (const [[, id, commit], f] of files) {
      const r = rev(id, commit);
      r.files++;
      r.size += f.size;
    }
    for (const m of manifests) rev(m.id, m.revision).complete = true;
    for (const [[, id, ref], sha] of refs) if (revs.has(`${id}\0${sha}`)) rev(id, sha).refs.push(ref);
    return [...models.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  async delete(id: string): Promise<boolean> {
    const metas = await this.getAll<BlobMeta>(prefixRange('blob'));
    const owned = metas.filter((b) => b.owners.includes(id));
    const keys = [
      ...(await this.getAllKeys(prefixRange('file', id))),
      ...(await this.getAllKeys(prefixRange('manifest', id))),
      ...(await this.getAllKeys(prefixRange('ref', id))),
    ];
    if (!owned.length && !keys.length) return false;
    // Entries first: nothing may point at a blob being removed.
    await delMany(keys, this.db);
    for (const b of owned) {
      const owners = b.owners.filter((o) => o !== id);
      if (owners.length) await set(blobK(b.key), { ...b, owners }, this.db);
      else
        await this.db('readwrite', (s) => {
          s.delete(blobK(b.key));
          s.delete(prefixRange('chunk', b.key));
          return promisifyRequest(s.transaction);
        });
    }
    return true;
  }

  /** Drop everything (tests, "reset app"). */
  async clear(): Promise<void> {
    await this.db('readwrite', (s) => promisifyRequest((s.clear(), s.transaction)));
  }
}

/** Models in IndexedDB (see the key scheme above). */
export function browserStore(opts: BrowserStoreOptions = {}): ModelStore & { clear(): Promise<void> } {
  return new BrowserStore(opts);
}

