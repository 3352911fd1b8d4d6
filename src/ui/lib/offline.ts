// Offline use: a service worker (public/sw.js) caches the app shell. Vite fingerprints the bundle's
// files, so after the worker is ready the page tells it which URLs this visit loaded (the page's,
// the engine worker's and the demo model's), and it stores them; later visits work without network.

import { getEngine } from './engine';

export async function registerOffline(): Promise<void> {
  // not under the dev server (its modules are not fingerprinted and change on every edit)
  if (!('serviceWorker' in navigator) || import.meta.hot) return;
  try {
    const reg = await navigator.serviceWorker.register(new URL('./sw.js', document.baseURI), { scope: './' });
    await navigator.serviceWorker.ready;
    const sw = reg.active ?? navigator.serviceWorker.controller;
    if (!sw) return;
    const page = performance.getEntriesByType('resource').map((e) => e.name);
    let worker: string[] = [];
    try {
      worker = await getEngine().loadedUrls();
    } catch {
      /* the worker failed to start: cache what we have */
    }
    const base = document.baseURI;
    const demo = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors'].map((f) => new URL(`demo/model/${f}`, base).href);
    const data = [new URL('demo/data/dataset_info.json', base).href];
    try {
      const info = (await (await fetch(data[0]!)).json()) as Record<string, { file_name?: string }>;
      for (const e of Object.values(info)) if (e.file_name) data.push(new URL(`demo/data/${e.file_name}`, base).href);
    } catch {
      /* no demo data */
    }
    const urls = [new URL('./', base).href, ...page, ...worker, ...demo, ...data];
    sw.postMessage({ type: 'cache-urls', urls: [...new Set(urls)] });
  } catch (e) {
    console.warn('offline cache unavailable:', e);
  }
}
