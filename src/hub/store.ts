// What a model store is (the Node HF cache, the browser's IndexedDB), and the StoredModel view on
// a stored revision that loaders read from.

import { HubError, where } from './errors';
import type { HashFactory } from './hash';

/** One file of a repo at a commit. */
export interface HubFile {
  path: string;
  /** Bytes (the real size for LFS files, not the pointer's). */
  size: number;
  /** LFS oid: sha256 of the content, for LFS / Xet files. */
  sha256?: string;
  /**
   * The name the HF cache gives the blob: the sha256 for LFS files, the git blob oid (sha1 of
   * "blob <size>\0" + content) for the others; this is the ETag the Hub serves.
   */
  etag?: string;
}

/** A repo pinned at a commit, with its file list. */
export interface ResolvedModel {
  id: string;
  /** The commit sha (40 hex digits). */
  revision: string;
  files: HubFile[];
}

/** What a finished download recorded about a revision. */
export interface Manifest extends ResolvedModel {
  /** ms since epoch. */
  updatedAt: number;
}

/** A random-access view of one stored file. Matches src/model/safetensors.ts ByteSource. */
export interface StoredFile {
  readonly size: number;
  /** For messages: "org/name@abc1234/model.safetensors". */
  readonly name: string;
  /**
   * Exactly `length` bytes at `offset` (a RangeError outside the file). A plain ArrayBuffer
   * behind it, so it goes straight to GPUQueue.writeBuffer or crypto.subtle.
   */
  read(offset: number, length: number): Promise<Uint8Array<ArrayBuffer>>;
}

export interface StoredRevision {
  revision: string;
  /** Branch or tag names that point here (refs/main ...). */
  refs: string[];
  files: number;
  /** Sum of the files' sizes. */
  size: number;
  /** A download finished for this revision (false: partial, or files added by hand). */
  complete: boolean;
}

export interface StoredModelInfo {
  id: string;
  /** Bytes the model takes in the store: its blobs, partial downloads included. */
  size: number;
  /** Bytes of partial downloads (resumable). */
  partialBytes: number;
  revisions: StoredRevision[];
}

/** Resumable writing of one blob (content-addressed by `key`). */
export interface BlobWriter {
  /** Bytes already held (the resume point). */
  readonly offset: number;
  /** The held bytes [0, offset), to re-hash on resume. */
  readPrefix(): AsyncIterable<Uint8Array>;
  write(bytes: Uint8Array): Promise<void>;
  /** Drop everything held (the server ignored a Range request). */
  reset(): Promise<void>;
  /** The content is verified: make it the blob, atomically. */
  commit(): Promise<void>;
  /** Remove the partial data (corrupt). */
  discard(): Promise<void>;
  /** Stop writing, keeping what is resumable. */
  close(): Promise<void>;
}

/**
 * A place models are stored. Implemented by nodeStore() (HF cache layout on disk) and
 * browserStore() (IndexedDB). The download logic (download.ts) is shared.
 */
export interface ModelStore {
  readonly kind: 'node' | 'browser';
  /** For messages: a directory, or "IndexedDB crucible-hub". */
  readonly location: string;
  hashFactory(): Promise<HashFactory>;
  /** A token the store's environment provides (Node: $HF_HOME/token). */
  defaultToken?(): Promise<string | undefined>;
  /** Throws a 'quota' HubError if `bytes` more cannot be stored; also asks for persistence. */
  checkSpace(id: string, bytes: number): Promise<void>;
  /** Whether blob `key` is complete, and how many bytes a partial download holds. */
  blobState(id: string, key: string): Promise<{ complete: boolean; stored: number }>;
  openWriter(id: string, key: string, size: number): Promise<BlobWriter>;
  /** Make `file.path` at `commit` point at blob `key` (the blob must be complete). */
  link(id: string, commit: string, file: HubFile, key: string): Promise<void>;
  readRef(id: string, ref: string): Promise<string | undefined>;
  writeRef(id: string, ref: string, commit: string): Promise<void>;
  readManifest(id: string, commit: string): Promise<Manifest | undefined>;
  writeManifest(m: Manifest): Promise<void>;
  /** Files present at a commit (what another tool may have put there too). */
  storedFiles(id: string, commit: string): Promise<HubFile[]>;
  openFile(id: string, commit: string, path: string): Promise<StoredFile | undefined>;
  list(): Promise<StoredModelInfo[]>;
  /** Delete a model (all revisions, partial downloads too); false if it was not there. */
  delete(id: string): Promise<boolean>;
  /** Run `fn` holding an exclusive lock on `name` (across tabs where the platform can). */
  lock<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

export const isCommitSha = (s: string) => /^[0-9a-f]{40}$/.test(s);

export function shortRev(rev: string): string {
  return isCommitSha(rev) ? rev.slice(0, 7) : rev;
}

/** In-process exclusive locks by name (the fallback when the platform has none). */
export function memoryLocks(): <T>(name: string, fn: () => Promise<T>) => Promise<T> {
  const tails = new Map<string, Promise<unknown>>();
  return async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const prev = tails.get(name) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    tails.set(name, tail);
    await prev.catch(() => {});
    try {
      return await fn();
    } finally {
      release();
      if (tails.get(name) === tail) tails.delete(name);
    }
  };
}

/**
 * A stored revision of a model, ready to read. Structurally a `ModelFiles`
 * (src/model/weights.ts): name, open, readText, exists.
 */
export class StoredModel implements ResolvedModel {
  readonly name: string;
  constructor(
    readonly store: ModelStore,
    readonly id: string,
    readonly revision: string,
    readonly files: HubFile[],
  ) {
    this.name = `${id}@${shortRev(revision)}`;
  }

  file(path: string): HubFile | undefined {
    return this.files.find((f) => f.path === path);
  }

  async exists(path: string): Promise<boolean> {
    return this.file(path) !== undefined;
  }

  /** A byte-range reader; never loads the whole file. */
  async open(path: string): Promise<StoredFile> {
    const f = await this.store.openFile(this.id, this.revision, path);
    if (!f || !this.file(path)) {
      const have = this.files.map((x) => x.path);
      throw new HubError(
        'not_stored',
        `${where(this.id, path)}: not stored at revision ${shortRev(this.revision)} in ${this.store.location} (stored: ${have.slice(0, 12).join(', ')}${have.length > 12 ? ', …' : ''})`,
        { id: this.id, file: path, revision: this.revision },
      );
    }
    return f;
  }

  async readBytes(path: string): Promise<Uint8Array<ArrayBuffer>> {
    const f = await this.open(path);
    return f.read(0, f.size);
  }

  async readText(path: string): Promise<string> {
    return new TextDecoder().decode(await this.readBytes(path));
  }

  async readJson<T = unknown>(path: string): Promise<T> {
    const text = await this.readText(path);
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new HubError('invalid', `${where(this.id, path)}: not valid JSON: ${(e as Error).message}`, { id: this.id, file: path });
    }
  }
}

/** Copy the parts of `chunks` (consecutive, starting at byte `first`) that cover [offset, offset+length). */
export function sliceChunks(chunks: Uint8Array<ArrayBuffer>[], chunkStart: number, offset: number, length: number): Uint8Array<ArrayBuffer> {
  if (chunks.length === 1) {
    const c = chunks[0]!;
    return c.subarray(offset - chunkStart, offset - chunkStart + length);
  }
  const out = new Uint8Array(length);
  let pos = chunkStart;
  let written = 0;
  for (const c of chunks) {
    const from = Math.max(offset, pos);
    const to = Math.min(offset + length, pos + c.length);
    if (to > from) {
      out.set(c.subarray(from - pos, to - pos), written);
      written += to - from;
    }
    pos += c.length;
  }
  return out;
}

export function checkRange(name: string, size: number, offset: number, length: number): void {
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > size)
    throw new RangeError(`${name}: read of ${length} bytes at ${offset} is outside the file (${size} bytes)`);
}

/** A repo-relative path that cannot escape its directory ("a/b.json"; no "..", no absolute). */
export function checkRelPath(id: string, path: string): string[] {
  const parts = path.split('/');
  if (!path || path.startsWith('/') || path.includes('\\') || path.includes('\0') || parts.some((p) => p === '' || p === '.' || p === '..') || /^[A-Za-z]:/.test(path))
    throw new HubError('invalid', `${where(id, path)}: not a safe relative path`, { id, file: path });
  return parts;
}
