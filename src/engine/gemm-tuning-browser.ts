// GEMM tuning in the browser: choices in IndexedDB (database "crucible-tuning", object store "kv",
// one entry per adapter), on where tuningEnabled() says so (real GPUs).

import { createStore, get, set } from 'idb-keyval';
import type { Gpu } from '../gpu/runtime';
import { enableGemmTuning, tuningEnabled, type TuneOptions, type TuningStore } from '../kernels/gemm-tuner';

export function browserTuningStore(): TuningStore {
  const db = createStore('crucible-tuning', 'kv');
  return {
    where: 'IndexedDB crucible-tuning',
    load: async (key) => ((await get<string>(key, db)) ?? null),
    save: (key, text) => set(key, text, db),
  };
}

export async function browserGemmTuning(gpu: Gpu, opts: TuneOptions & { mode?: string } = {}): Promise<boolean> {
  if (!tuningEnabled(gpu, opts.mode)) return false;
  await enableGemmTuning(gpu, browserTuningStore(), opts);
  return true;
}
