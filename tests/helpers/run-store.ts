// A RunStore in memory, for trainer tests that checkpoint and resume.
import type { RunStore } from '../../src/train/store';

export function memoryStore(): RunStore & { files: Map<string, Uint8Array | string> } {
  const files = new Map<string, Uint8Array | string>();
  return {
    files,
    write: async (p, d) => void files.set(p, d),
    read: async (p) => {
      const d = files.get(p);
      if (d === undefined) throw new Error(`${p}: not written`);
      return typeof d === 'string' ? new TextEncoder().encode(d) : d;
    },
    exists: async (p) => files.has(p),
  };
}
