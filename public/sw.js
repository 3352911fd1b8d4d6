// Crucible's service worker: the app works offline after the first visit.
// - The page posts the URLs it loaded ({type: 'cache-urls'}); they are stored in the cache.
// - Fingerprinted build files (assets/) are served cache-first; everything else of this origin
//   network-first, falling back to the cache (and page navigations to the cached app shell).
// - Hugging Face Hub requests (other origins) are never touched: models are stored in IndexedDB.
const CACHE = 'crucible-v1';

self.addEventListener('install', () => self.skipWaiting());

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const k of await caches.keys()) if (k !== CACHE) await caches.delete(k);
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('message', (event) => {
  const msg = event.data;
  if (!msg || msg.type !== 'cache-urls' || !Array.isArray(msg.urls)) return;
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      await Promise.all(
        msg.urls
          .filter((u) => typeof u === 'string' && new URL(u).origin === self.location.origin)
          .map(async (u) => {
            try {
              if (await cache.match(u, { ignoreSearch: true })) return;
              const res = await fetch(u, { cache: 'no-cache' });
              if (res.ok && res.status === 200) await cache.put(u, res);
            } catch {
              /* offline or gone: skip */
            }
          }),
      );
    })(),
  );
});

const isAsset = (url) => /\/assets\//.test(url.pathname);

async function networkFirst(req) {
  const cache = await caches.open(CACHE);
  try {
    const res = await fetch(req);
    if (res.ok && res.status === 200 && req.method === 'GET') cache.put(req, res.clone()).catch(() => {});
    return res;
  } catch (e) {
    const hit = await cache.match(req, { ignoreSearch: true });
    if (hit) return hit;
    if (req.mode === 'navigate') {
      const shell = (await cache.match(new URL('./', self.registration.scope).href)) ?? (await cache.match(new URL('./index.html', self.registration.scope).href));
      if (shell) return shell;
    }
    throw e;
  }
}

async function cacheFirst(req) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(req, { ignoreSearch: true });
  if (hit) return hit;
  const res = await fetch(req);
  if (res.ok && res.status === 200) cache.put(req, res.clone()).catch(() => {});
  return res;
}

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET' || req.headers.has('range')) return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  event.respondWith(isAsset(url) ? cacheFirst(req) : networkFirst(req));
});
