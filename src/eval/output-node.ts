// An output folder on disk for the eval jobs: every file written atomically (temp file, flush,
// rename), so an interrupted run never leaves half a results file.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../files/atomic-node';
import type { OutputFolder } from './predict';

export function diskFolder(dir: string): OutputFolder {
  return {
    write: (name, text) => writeFileAtomic(join(dir, name), text),
    async read(name) {
      try {
        return await readFile(join(dir, name), 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw e;
      }
    },
  };
}
