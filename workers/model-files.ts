// ModelFiles over plain HTTP: a model folder served next to the app (the embedded demo model in
// public/demo/model/). Each file is fetched once, whole, and kept in memory: such models are small,
// and a whole-file GET is what the service worker caches for offline use.

import type { ByteSource } from '../src/model/safetensors';
import type { ModelFiles } from '../src/model/weights';

export function urlModelFiles(base: string, name: string): ModelFiles & { bytes(path: string): Promise<Uint8Array> } {
  const root = base.endsWith('/') ? base : `${base}/`;
  const files = new Map<string, Promise<Uint8Array | null>>();
  const load = (path: string): Promise<Uint8Array | null> => {
    let p = files.get(path);
    if (!p) {
      p = (async () => {
        let res: Response;
        try {
          res = await fetch(new URL(path, root).href);
        } catch (e) {
          throw new Error(`${name}/${path}: cannot fetch (${(e as Error).message}); offline and not cached yet?`);
        }
        if (res.status === 404) return null;
        if (!res.ok) throw new Error(`${name}/${path}: HTTP ${res.status}`);
        // a static host's SPA fallback answers every path with index.html
        if (/text\/html/.test(res.headers.get('content-type') ?? '') && !path.endsWith('.html')) return null;
        return new Uint8Array(await res.arrayBuffer());
      })();
      p.catch(() => files.delete(path));
      files.set(path, p);
    }
    return p;
  };
  const need = async (path: string): Promise<Uint8Array> => {
    const b = await load(path);
    if (!b) throw new Error(`${name}: ${path} is missing`);
    return b;
  };
  return {
    name,
    async readText(path) {
      return new TextDecoder().decode(await need(path));
    },
    async open(path): Promise<ByteSource> {
      const b = await need(path);
      return { name: `${name}/${path}`, size: b.length, read: async (o, n) => b.subarray(o, o + n) };
    },
    async exists(path) {
      try {
        return (await load(path)) !== null;
      } catch (e) {
        // offline, an optional file that was never cached (chat_template.jinja, ...) is absent;
        // the ones the model needs fail on read with the fetch error
        if (/cannot fetch/.test((e as Error).message)) return false;
        throw e;
      }
    },
    bytes: need,
  };
}

/** A data folder served next to the app: dataset_info.json and the files it names. */
export async function fetchBytes(url: string, headers?: Record<string, string>): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetch(url, headers ? { headers } : {});
  } catch (e) {
    throw new Error(`cannot fetch ${url}: ${(e as Error).message}`);
  }
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}
