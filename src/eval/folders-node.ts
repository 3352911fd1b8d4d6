// The eval jobs' folders on disk: the output folder, every file written atomically (temp file,
// flush, rename, so an interrupted run never leaves half a results file), and the task folder
// the multiple-choice benchmarks are read from.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../files/atomic-node';
import type { TaskReader } from './choice-task';
import type { OutputFolder } from './predict';

export function diskFolder(dir: string): OutputFolder {
  return {
    write: (name, text) => writeFileAtomic(join(dir, name), text),
    read: async (name) => {
      const bytes = await readIfExists(join(dir, name));
      return bytes && new TextDecoder().decode(bytes);
    },
  };
}

export function diskTaskReader(taskDir: string): TaskReader {
  return (path) => readIfExists(join(taskDir, ...path.split('/')));
}

async function readIfExists(path: string): Promise<Uint8Array | null> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}
