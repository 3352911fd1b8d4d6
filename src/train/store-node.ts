// RunStore over a folder: atomic writes (temp file + rename), so a crash never leaves a file that
// looks complete but is not.

import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { RunStore } from './trainer';

export function folderStore(root: string): RunStore {
  return {
    async write(path, data) {
      const full = join(root, path);
      await mkdir(dirname(full), { recursive: true });
      const tmp = `${full}.tmp-${process.pid}`;
      await writeFile(tmp, data);
      await rename(tmp, full);
    },
    async read(path) {
      return new Uint8Array(await readFile(join(root, path)));
    },
    exists: (path) => stat(join(root, path)).then(() => true, () => false),
  };
}
