// Node file writes that never leave a half-written file under the final name: data goes to a
// temporary file beside it, is flushed to the disk, then renamed over the target. A failure
// (disk full, no permission) removes the temporary file and says which file and how much space.

import { mkdir, open, readdir, rename, rm, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { formatBytes, StorageError } from './errors';

const TEMP = /\.tmp-(\d+)(-\d+)?$/;
let counter = 0;

export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const tmp = `${path}.tmp-${process.pid}-${++counter}`;
  try {
    await mkdir(dirname(path), { recursive: true });
    const file = await open(tmp, 'w');
    try {
      await file.writeFile(bytes);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw await storageError(e, path, bytes.byteLength);
  }
}

/**
 * Appends to a file in order, one write at a time, through one open handle; `flush()` waits for
 * them, closes the handle (the next append reopens it) and throws the first failure.
 */
export function appendQueue(path: string): { append(data: string | Uint8Array): void; flush(): Promise<void> } {
  let chain: Promise<void> = Promise.resolve();
  let failure: unknown = null;
  let file: import('node:fs/promises').FileHandle | null = null;
  const step = (work: () => Promise<void>, bytes: number) => {
    chain = chain.then(async () => {
      if (failure) return;
      try {
        await work();
      } catch (e) {
        failure = await storageError(e, path, bytes);
      }
    });
  };
  return {
    append(data) {
      step(async () => {
        file ??= await open(path, 'a');
        await file.writeFile(data);
      }, typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength);
    },
    async flush() {
      // closes even after a failure, so the handle never outlives the queue
      chain = chain.then(async () => {
        const f = file;
        file = null;
        await f?.close().catch(() => undefined);
      });
      await chain;
      if (failure) throw failure;
    },
  };
}

/**
 * Removes temporary files that a killed process left in `dir` (recursively), before this process
 * writes there: another live process's are kept.
 */
export async function removeStaleTemps(dir: string): Promise<void> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const full = join(dir, e.name);
    if (e.isDirectory()) await removeStaleTemps(full);
    else {
      const m = TEMP.exec(e.name);
      if (m && !processAlive(Number(m[1]))) await rm(full, { force: true });
    }
  }
}

/** A Node file-system error as a StorageError naming the path (and, when the disk is full, the space). */
export async function storageError(e: unknown, path: string, bytes?: number): Promise<Error> {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    const free = await statfs(dirname(path)).then((s) => s.bavail * s.bsize, () => null);
    const need = bytes !== undefined ? `${formatBytes(bytes)} needed` : '';
    const have = free !== null ? `${formatBytes(free)} free` : '';
    const space = [need, have].filter(Boolean).join(', ');
    return new StorageError(`${code === 'EDQUOT' ? 'disk quota exceeded' : 'no space left on the disk'} writing ${path}${space ? ` (${space})` : ''}; free some space and rerun: finished checkpoints are intact`);
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return new StorageError(`cannot write ${path}: ${code === 'EROFS' ? 'the file system is read-only' : 'permission denied'}`);
  if (code === 'ENOTDIR' || code === 'EEXIST') return new StorageError(`cannot write ${path}: a file stands where a folder is needed`);
  return e instanceof Error ? e : new Error(String(e));
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return false; // a reused pid: this process has written nothing there yet
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
