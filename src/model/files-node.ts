// ModelFiles over a local folder (Node).

import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ByteSource } from './safetensors';
import type { ModelFiles } from './weights';

/** Reads open the file for each range, so no handle outlives a read. */
export async function fileSource(path: string): Promise<ByteSource> {
  const { size } = await stat(path);
  return {
    name: path,
    size,
    async read(offset, length) {
      const handle = await open(path, 'r');
      try {
        const buf = new Uint8Array(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await handle.read(buf, done, length - done, offset + done);
          if (bytesRead === 0) throw new Error(`${path}: unexpected end of file at byte ${offset + done} (file is ${size} bytes)`);
          done += bytesRead;
        }
        return buf;
      } finally {
        await handle.close();
      }
    },
  };
}

export function dirFiles(dir: string): ModelFiles {
  return {
    name: dir,
    readText: async (p) => {
      try {
        return await readFile(join(dir, p), 'utf8');
      } catch (e) {
        throw new Error(`${join(dir, p)}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (e as Error).message}`);
      }
    },
    open: (p) => fileSource(join(dir, p)),
    exists: async (p) => stat(join(dir, p)).then(() => true, () => false),
  };
}
