// RunStore over a folder: atomic writes (temp file + fsync + rename), so a crash never leaves a
// file that looks complete but is not.

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../files/atomic-node';
import type { RunStore } from './store';

export function folderStore(root: string): RunStore {
  return {
    write: (path, data) => writeFileAtomic(join(root, path), data),
    async read(path) {
      return new Uint8Array(await readFile(join(root, path)));
    },
    exists: (path) => stat(join(root, path)).then(() => true, () => false),
  };
}
