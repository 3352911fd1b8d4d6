/**
 * In-memory file access for buildDataset (browser: files the user dropped in; tests).
 * Paths are '/'-separated; a directory is any prefix of stored paths.
 */
export type FileBytes = Uint8Array | Blob | string;

export function memoryFileAccess(files: Record<string, FileBytes>): {
  readFile(path: string): Promise<Uint8Array>;
  listFiles(path: string): Promise<string[] | null>;
} {
  const norm = (p: string) => p.replace(/^\.\//, '').replace(/\/+$/, '');
  const map = new Map(Object.entries(files).map(([k, v]) => [norm(k), v]));
  return {
    async readFile(path) {
      const v = map.get(norm(path));
      if (v === undefined) throw new Error(`no such file: ${path}`);
      if (typeof v === 'string') return new TextEncoder().encode(v);
      if (v instanceof Uint8Array) return v;
      return new Uint8Array(await v.arrayBuffer());
    },
    async listFiles(path) {
      const dir = norm(path) + '/';
      if (map.has(norm(path))) return null;
      const names = new Set<string>();
      for (const k of map.keys()) if (k.startsWith(dir)) names.add(k.slice(dir.length).split('/')[0]);
      return names.size ? [...names] : null;
    },
  };
}
