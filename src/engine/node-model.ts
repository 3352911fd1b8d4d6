// Model (and adapter) folders for Node: a local path as it is, or a Hub id fetched into the
// Hugging Face cache ($HF_HOME/hub, shared with Python tools) and read from there.

import { existsSync, statSync } from 'node:fs';
import { downloadModel, nodeStore } from '../hub';
import { dirFiles } from '../model/files-node';
import type { ModelFiles } from '../model/weights';

export interface ResolveHooks {
  onStatus?: (message: string) => void;
  signal?: AbortSignal;
  revision?: string | null;
  cacheDir?: string | null;
  token?: string | null;
}

/** Files a model (or adapter) needs: configs, tokenizer, chat template, safetensors weights. */
const MODEL_FILES = (f: { path: string }) => /\.(json|safetensors|jinja)$/.test(f.path);

export async function resolveModelFiles(nameOrPath: string, hooks: ResolveHooks = {}): Promise<ModelFiles> {
  if (existsSync(nameOrPath)) {
    if (!statSync(nameOrPath).isDirectory()) throw new Error(`${nameOrPath} is a file; model_name_or_path must be a model folder or a Hub id`);
    return dirFiles(nameOrPath);
  }
  if (!/^[\w.-]+\/[\w.-]+$/.test(nameOrPath)) {
    throw new Error(`${nameOrPath}: no such folder, and not a Hub model id (org/name)`);
  }
  let lastPct = -10;
  const stored = await downloadModel(nameOrPath, {
    store: nodeStore(hooks.cacheDir ? { cacheDir: hooks.cacheDir } : {}),
    files: MODEL_FILES,
    ...(hooks.revision ? { revision: hooks.revision } : {}),
    ...(hooks.token ? { token: hooks.token } : {}),
    ...(hooks.signal ? { signal: hooks.signal } : {}),
    onProgress: (p) => {
      const pct = p.total > 0 ? Math.floor((100 * p.loaded) / p.total) : 100;
      if (pct >= lastPct + 10 || p.done) {
        lastPct = pct;
        hooks.onStatus?.(`downloading ${nameOrPath}: ${pct}% of ${(p.total / 2 ** 20).toFixed(1)} MiB${p.done ? ` (${p.file} done)` : ''}`);
      }
    },
    onWarning: (m) => hooks.onStatus?.(`warning: ${m}`),
  });
  return stored;
}
