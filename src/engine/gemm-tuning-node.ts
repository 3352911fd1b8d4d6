// GEMM tuning in Node: choices in the cache folder (one JSON file per adapter, written
// atomically), switched by $CRUCIBLE_GEMM_TUNING (auto | on | off; auto tunes on real GPUs only).

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../files/atomic-node';
import { crucibleCacheDir } from '../files/cache-dir';
import type { Gpu } from '../gpu/runtime';
import { enableGemmTuning, tuningEnabled, type TuneOptions, type TuningStore } from '../kernels/gemm-tuner';

export function nodeTuningStore(dir = join(crucibleCacheDir(), 'gemm-tuning')): TuningStore {
  const file = (key: string) => join(dir, `${key}.json`);
  return {
    where: dir,
    async load(key) {
      try {
        return await readFile(file(key), 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw e;
      }
    },
    save: (key, text) => writeFileAtomic(file(key), text),
  };
}

/** Enables tuning on `gpu` where $CRUCIBLE_GEMM_TUNING (or `mode`) says so; returns whether it did. */
export async function nodeGemmTuning(gpu: Gpu, opts: TuneOptions & { mode?: string; store?: TuningStore } = {}): Promise<boolean> {
  if (!tuningEnabled(gpu, opts.mode ?? process.env.CRUCIBLE_GEMM_TUNING)) return false;
  await enableGemmTuning(gpu, opts.store ?? nodeTuningStore(), opts);
  return true;
}
