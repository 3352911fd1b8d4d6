// A plain static file server (what any static host does: files as they are, no SPA fallback),
// for the end-to-end test of the built app. Range requests are answered, as CDNs do.

import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, resolve, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.wasm': 'application/wasm',
  '.jsonl': 'application/jsonl',
  '.csv': 'text/csv',
};

export interface StaticServer {
  url: string;
  requests: string[];
  close(): Promise<void>;
}

/** Serve `roots` (first match wins) on 127.0.0.1. */
export async function serveStatic(roots: string[], port = 0): Promise<StaticServer> {
  const requests: string[] = [];
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(url.pathname);
    let rel = decodeURIComponent(url.pathname);
    if (rel.endsWith('/')) rel += 'index.html';
    for (const root of roots) {
      const full = normalize(join(resolve(root), rel));
      if (!full.startsWith(resolve(root) + sep)) continue;
      try {
        const st = await stat(full);
        if (!st.isFile()) continue;
        const headers: Record<string, string | number> = { 'content-type': TYPES[extname(full)] ?? 'application/octet-stream', 'accept-ranges': 'bytes', 'cache-control': 'no-cache' };
        const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
        if (range) {
          const start = Number(range[1]);
          const end = range[2] ? Math.min(Number(range[2]), st.size - 1) : st.size - 1;
          res.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${end}/${st.size}`, 'content-length': end - start + 1 });
          createReadStream(full, { start, end }).pipe(res);
        } else {
          res.writeHead(200, { ...headers, 'content-length': st.size });
          if (req.method === 'HEAD') res.end();
          else createReadStream(full).pipe(res);
        }
        return;
      } catch {
        /* next root */
      }
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    requests,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
