// The app's datasets as the engine reads them (DataFiles): files the user dropped in (a virtual
// "upload/" folder), a LLaMA-Factory data folder served next to the app, or a Hub dataset repo
// fetched on demand. Each comes with the dataset name and the dataset_dir to read it under.

import type { DataFiles } from '../src/engine/train';
import { memoryFileAccess } from '../src/data';
import { hubDatasetAccess } from '../src/hub/datasets';
import type { DataSource } from './api';
import { fetchBytes } from './model-files';

export interface AppData {
  files: DataFiles;
  dataset: string;
  dir: string;
}

export interface HubAccess {
  endpoint: string;
  token?: string;
  /** Hub dataset files fetched in this session: the preview and the run read them once. */
  cache: Map<string, Promise<Uint8Array>>;
}

export function appDataFiles(source: DataSource, hub: HubAccess): AppData {
  if (source.kind === 'upload') {
    const files: Record<string, Uint8Array> = {};
    for (const [k, v] of Object.entries(source.files)) files[`upload/${k}`] = v;
    return { files: memoryFileAccess(files), dataset: source.dataset, dir: 'upload' };
  }
  if (source.kind === 'url') {
    const base = source.base.endsWith('/') ? source.base : `${source.base}/`;
    const cache = new Map<string, Promise<Uint8Array>>();
    const readFile = (path: string) => {
      const rel = path.replace(/^data\//, '');
      let p = cache.get(rel);
      if (!p) {
        p = fetchBytes(new URL(rel, base).href);
        cache.set(rel, p);
      }
      return p;
    };
    return { files: { readFile, listFiles: async () => null }, dataset: source.dataset, dir: 'data' };
  }
  const access = hubDatasetAccess({ endpoint: hub.endpoint, ...(hub.token ? { token: hub.token } : {}) });
  const fetchFile = (repo: string, path: string) => {
    const key = `${hub.endpoint}|${repo}|${path}`;
    let p = hub.cache.get(key);
    if (!p) {
      p = access.fetchFile(repo, path);
      p.catch(() => hub.cache.delete(key));
      hub.cache.set(key, p);
    }
    return p;
  };
  return {
    files: { readFile: async (p) => { throw new Error(`no local file ${p}`); }, fetchFile, listRepoFiles: access.listRepoFiles },
    dataset: source.repo,
    dir: 'ONLINE',
  };
}
