// The Node store: the Hugging Face cache layout, shared with Python tools (huggingface_hub,
// transformers):
//
//   $HF_HUB_CACHE (default $HF_HOME/hub, $HF_HOME default ~/.cache/huggingface)
//     models--org--name/
//       blobs/<etag>               content; etag = sha256 for LFS files, git blob oid otherwise
//       blobs/<etag>.incomplete    a download in progress (resumed from its length, as Python does)
//       snapshots/<commit>/<path>  relative symlink to ../../blobs/<etag> (a copy where links fail)
//       refs/<branch>              the commit sha a branch or tag pointed to
//       .crucible/<commit>.json    ours: the file list of a finished download (Python ignores it)
//
// A blob appears under its name only by rename after verification, and a snapshot entry only
// after that, so a partial file never looks complete. Node modules are imported lazily so this
// module can be bundled for the browser.

import { HubError, formatBytes, where } from './errors';
import type { HashFactory } from './hash';
import { isGitOid, isSha256 } from './hash';
import {
  checkRange,
  checkRelPath,
  isCommitSha,
  memoryLocks,
  shortRev,
  type BlobWriter,
  type HubFile,
  type Manifest,
  type ModelStore,
  type StoredFile,
  type StoredModelInfo,
  type StoredRevision,
} from './store';

export interface NodeStoreOptions {
  /** $HF_HOME (the hub cache is its hub/ folder). */
  hfHome?: string;
  /** The hub cache folder itself ($HF_HUB_CACHE); wins over hfHome. */
  cacheDir?: string;
  /** Free bytes on the cache's disk (default: statfs); for tests. */
  freeSpace?: () => Promise<number>;
}

type Fs = typeof import('node:fs/promises');
type Path = typeof import('node:path');
let mods: Promise<{ fs: Fs; path: Path; crypto: typeof import('node:crypto') }> | undefined;
// Specifiers in variables: browser bundles leave them alone (this store is never used there).
const FS = 'node:fs/promises';
const PATH = 'node:path';
const CRYPTO = 'node:crypto';
const node = () =>
  (mods ??= (async () => ({
    fs: (await import(/* @vite-ignore */ FS)) as Fs,
    path: (await import(/* @vite-ignore */ PATH)) as Path,
    crypto: (await import(/* @vite-ignore */ CRYPTO)) as typeof import('node:crypto'),
  }))());

function env(name: string): string | undefined {
  const v = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
  return v || undefined;
}

function joinPath(...parts: string[]): string {
  return parts.join('/').replace(/\/+/g, '/');
}

export function defaultHfHome(): string {
  const home = env('HOME') ?? env('USERPROFILE') ?? '.';
  return env('HF_HOME') ?? joinPath(env('XDG_CACHE_HOME') ?? joinPath(home, '.cache'), 'huggingface');
}

/** "org/name" -> "models--org--name". */
export function repoFolderName(id: string): string {
  return `models--${id.split('/').join('--')}`;
}

const errno = (e: unknown) => (e as NodeJS.ErrnoException)?.code;

async function exists(fs: Fs, p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch {
    return false;
  }
}

const sharedLocks = memoryLocks();
let tmpCounter = 0;
/** The project's atomic write (flushed before the rename); imported lazily like the other Node modules. */
async function atomicWrite(p: string, data: string): Promise<void> {
  const { writeFileAtomic } = await import('../files/atomic-node');
  await writeFileAtomic(p, data);
}

async function walk(fs: Fs, dir: string, prefix = ''): Promise<string[]> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const e of entries) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await walk(fs, `${dir}/${e.name}`, rel)));
    else if (e.isFile() || e.isSymbolicLink()) out.push(rel);
  }
  return out;
}

class NodeBlobWriter implements BlobWriter {
  private state: 'open' | 'done' = 'open';
  constructor(
    private fh: import('node:fs/promises').FileHandle,
    private readonly incomplete: string,
    private readonly final: string,
    public offset: number,
  ) {}

  async *readPrefix(): AsyncIterable<Uint8Array> {
    const step = 8 << 20;
    const buf = new Uint8Array(step);
    for (let pos = 0; pos < this.offset; ) {
      const n = Math.min(step, this.offset - pos);
      const { bytesRead } = await this.fh.read(buf, 0, n, pos);
      if (bytesRead <= 0) throw new Error(`${this.incomplete}: shorter than expected`);
      yield buf.subarray(0, bytesRead);
      pos += bytesRead;
    }
  }

  async write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await this.fh.write(bytes, done, bytes.length - done, this.offset + done);
      done += bytesWritten;
    }
    this.offset += bytes.length;
  }

  async reset(): Promise<void> {
    await this.fh.truncate(0);
    this.offset = 0;
  }

  async commit(): Promise<void> {
    const { fs } = await node();
    await this.fh.truncate(this.offset);
    await this.fh.sync();
    await this.fh.close();
    this.state = 'done';
    await fs.rename(this.incomplete, this.final);
  }

  async discard(): Promise<void> {
    if (this.state === 'done') return;
    const { fs } = await node();
    this.state = 'done';
    await this.fh.close().catch(() => {});
    await fs.rm(this.incomplete, { force: true });
  }

  async close(): Promise<void> {
    if (this.state === 'done') return;
    this.state = 'done';
    await this.fh.close();
  }
}

class NodeStore implements ModelStore {
  readonly kind = 'node' as const;
  readonly location: string;
  readonly hfHome: string;
  /** In-process only (shared by all instances): two processes downloading one blob is not guarded. */
  lock = sharedLocks;

  constructor(private readonly opts: NodeStoreOptions) {
    this.hfHome = (opts.hfHome ?? defaultHfHome()).replace(/\/+$/, '');
    this.location = (opts.cacheDir ?? (opts.hfHome ? undefined : env('HF_HUB_CACHE')) ?? joinPath(this.hfHome, 'hub')).replace(/\/+$/, '');
  }

  private repo(id: string): string {
    return joinPath(this.location, repoFolderName(id));
  }

  async hashFactory(): Promise<HashFactory> {
    const { crypto } = await node();
    return (kind) => {
      const h = crypto.createHash(kind);
      return { update: (b) => void h.update(b), hex: () => h.digest('hex') };
    };
  }

  async defaultToken(): Promise<string | undefined> {
    const { fs } = await node();
    const file = (this.opts.hfHome ? undefined : env('HF_TOKEN_PATH')) ?? joinPath(this.hfHome, 'token');
    try {
      return (await fs.readFile(file, 'utf8')).trim() || undefined;
    } catch {
      return undefined;
    }
  }

  async checkSpace(id: string, bytes: number): Promise<void> {
    const { fs, path } = await node();
    let free: number | undefined;
    if (this.opts.freeSpace) free = await this.opts.freeSpace();
    else {
      let dir = this.location;
      for (;;) {
        try {
          const s = await fs.statfs(dir);
          free = Number(s.bavail) * Number(s.bsize);
          break;
        } catch {
          const up = path.dirname(dir);
          if (up === dir) break;
          dir = up;
        }
      }
    }
    if (free !== undefined && free < bytes)
      throw new HubError(
        'quota',
        `${where(id)}: needs ${formatBytes(bytes)} of disk space in ${this.location} but only ${formatBytes(free)} is free: free some space (or set HF_HOME to another disk) and retry`,
        { id },
      );
  }

  async blobState(id: string, key: string): Promise<{ complete: boolean; stored: number }> {
    const { fs } = await node();
    const blob = joinPath(this.repo(id), 'blobs', key);
    try {
      await fs.stat(blob);
      return { complete: true, stored: 0 };
    } catch {}
    try {
      return { complete: false, stored: (await fs.stat(`${blob}.incomplete`)).size };
    } catch {
      return { complete: false, stored: 0 };
    }
  }

  async openWriter(id: string, key: string, size: number): Promise<BlobWriter> {
    const { fs } = await node();
    checkRelPath(id, key);
    const dir = joinPath(this.repo(id), 'blobs');
    await fs.mkdir(dir, { recursive: true });
    const incomplete = joinPath(dir, `${key}.incomplete`);
    let fh: import('node:fs/promises').FileHandle;
    try {
      fh = await fs.open(incomplete, 'r+');
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw e;
      fh = await fs.open(incomplete, 'w+');
    }
    let offset = (await fh.stat()).size;
    if (offset > size) {
      await fh.truncate(0);
      offset = 0;
    }
    return new NodeBlobWriter(fh, incomplete, joinPath(dir, key), offset);
  }

  async link(id: string, commit: string, file: HubFile, key: string): Promise<void> {
    const { fs, path } = await node();
    const parts = checkRelPath(id, file.path);
    const snap = joinPath(this.repo(id), 'snapshots', commit, ...parts);
    const blob = joinPath(this.repo(id), 'blobs', key);
    await fs.mkdir(path.dirname(snap), { recursive: true });
    const target = path.relative(path.dirname(snap), blob);
    try {
      if ((await fs.readlink(snap)) === target) return;
    } catch {}
    const tmp = `${snap}.tmp-${process.pid}-${++tmpCounter}`;
    try {
      await fs.symlink(target, tmp);
    } catch (e) {
      // No symlinks (Windows without developer mode): a copy, as huggingface_hub does.
      if (errno(e) !== 'EPERM' && errno(e) !== 'ENOTSUP' && errno(e) !== 'EACCES') throw e;
      await fs.copyFile(blob, tmp);
    }
    await fs.rename(tmp, snap);
  }

  async readRef(id: string, ref: string): Promise<string | undefined> {
    const { fs } = await node();
    const parts = checkRelPath(id, ref);
    try {
      const sha = (await fs.readFile(joinPath(this.repo(id), 'refs', ...parts), 'utf8')).trim();
      return isCommitSha(sha) ? sha : undefined;
    } catch {
      return undefined;
    }
  }

  async writeRef(id: string, ref: string, commit: string): Promise<void> {
    const parts = checkRelPath(id, ref);
    await atomicWrite(joinPath(this.repo(id), 'refs', ...parts), commit);
  }

  async readManifest(id: string, commit: string): Promise<Manifest | undefined> {
    const { fs } = await node();
    try {
      const m = JSON.parse(await fs.readFile(joinPath(this.repo(id), '.crucible', `${commit}.json`), 'utf8')) as Manifest;
      // Valid only while its files are all there (someone may have pruned the snapshot).
      for (const f of m.files) {
        const st = await fs.stat(joinPath(this.repo(id), 'snapshots', commit, ...checkRelPath(id, f.path))).catch(() => undefined);
        if (!st || st.size !== f.size) return undefined;
      }
      return m;
    } catch {
      return undefined;
    }
  }

  async writeManifest(m: Manifest): Promise<void> {
    await atomicWrite(joinPath(this.repo(m.id), '.crucible', `${m.revision}.json`), JSON.stringify(m, null, 1));
  }

  async storedFiles(id: string, commit: string): Promise<HubFile[]> {
    const { fs, path } = await node();
    const dir = joinPath(this.repo(id), 'snapshots', commit);
    const out: HubFile[] = [];
    for (const rel of await walk(fs, dir)) {
      if (/\.tmp-\d+-\d+$/.test(rel)) continue;
      const p = joinPath(dir, rel);
      const st = await fs.stat(p).catch(() => undefined);
      if (!st?.isFile()) continue;
      const f: HubFile = { path: rel, size: st.size };
      const target = await fs.readlink(p).catch(() => undefined);
      const name = target ? path.basename(target) : undefined;
      if (isSha256(name)) {
        f.sha256 = name;
        f.etag = name;
      } else if (isGitOid(name)) f.etag = name;
      out.push(f);
    }
    return out.sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  async openFile(id: string, commit: string, relPath: string): Promise<StoredFile | undefined> {
    const { fs } = await node();
    const p = joinPath(this.repo(id), 'snapshots', commit, ...checkRelPath(id, relPath));
    const st = await fs.stat(p).catch(() => undefined);
    if (!st?.isFile()) return undefined;
    const size = st.size;
    const name = `${id}@${shortRev(commit)}/${relPath}`;
    return {
      size,
      name,
      async read(offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
        checkRange(name, size, offset, length);
        const out = new Uint8Array(length);
        const fh = await fs.open(p, 'r');
        try {
          let done = 0;
          while (done < length) {
            const { bytesRead } = await fh.read(out, done, length - done, offset + done);
            if (bytesRead <= 0) throw new HubError('not_stored', `${name}: the file shrank while reading (at ${offset + done} of ${size} bytes)`, { id, file: relPath });
            done += bytesRead;
          }
        } finally {
          await fh.close();
        }
        return out;
      },
    };
  }

  async list(): Promise<StoredModelInfo[]> {
    const { fs } = await node();
    let names: string[];
    try {
      names = (await fs.readdir(this.location)).filter((n) => n.startsWith('models--'));
    } catch {
      return [];
    }
    const out: StoredModelInfo[] = [];
    for (const folder of names.sort()) {
      const id = folder.slice('models--'.length).split('--').join('/');
      const dir = joinPath(this.location, folder);
      let size = 0;
      let partialBytes = 0;
      for (const b of await fs.readdir(joinPath(dir, 'blobs')).catch(() => [] as string[])) {
        const st = await fs.stat(joinPath(dir, 'blobs', b)).catch(() => undefined);
        if (!st?.isFile()) continue;
        size += st.size;
        if (b.endsWith('.incomplete')) partialBytes += st.size;
      }
      const refsByCommit = new Map<string, string[]>();
      for (const ref of await walk(fs, joinPath(dir, 'refs'))) {
        const sha = await this.readRef(id, ref);
        if (sha) refsByCommit.set(sha, [...(refsByCommit.get(sha) ?? []), ref]);
      }
      const hasOurs = await exists(fs, joinPath(dir, '.crucible'));
      const revisions: StoredRevision[] = [];
      for (const commit of await fs.readdir(joinPath(dir, 'snapshots')).catch(() => [] as string[])) {
        const files = await this.storedFiles(id, commit);
        const manifest = hasOurs ? await this.readManifest(id, commit) : undefined;
        revisions.push({
          revision: commit,
          refs: refsByCommit.get(commit) ?? [],
          files: files.length,
          size: files.reduce((a, f) => a + f.size, 0),
          // Without our manifest (downloaded by Python), a snapshot is taken as complete.
          complete: manifest ? true : !hasOurs && files.length > 0,
        });
      }
      out.push({ id, size, partialBytes, revisions });
    }
    return out;
  }

  async delete(id: string): Promise<boolean> {
    const { fs } = await node();
    const dir = this.repo(id);
    if (!(await exists(fs, dir))) return false;
    await fs.rm(dir, { recursive: true, force: true });
    return true;
  }
}

/** The HF cache on disk (see the layout above). */
export function nodeStore(opts: NodeStoreOptions = {}): ModelStore & { readonly hfHome: string } {
  return new NodeStore(opts);
}
