// Where a run's checkpoints go: a folder in Node (store-node.ts), IndexedDB in the browser
// (store-browser.ts). The trainer and its objectives read and write through this interface only.

import type { ByteSource } from '../model/safetensors';

export interface RunStore {
  write(path: string, data: Uint8Array | string): Promise<void>;
  read(path: string): Promise<Uint8Array>;
  exists(path: string): Promise<boolean>;
}

/** A stored file as a ByteSource (what the safetensors reader takes). */
export async function storedSource(store: RunStore, path: string): Promise<ByteSource> {
  const bytes = await store.read(path);
  return { name: path, size: bytes.length, read: async (o, n) => bytes.subarray(o, o + n) };
}

/** `file` inside `dir`; the empty dir is the store's root (the output folder). */
export const inDir = (dir: string, file: string): string => (dir ? `${dir}/${file}` : file);
