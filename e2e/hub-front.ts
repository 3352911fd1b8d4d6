// A front for the mock Hub (tests/mockhub) that adds what the app's model search needs:
// GET /api/models?search=… (the Hub's model list, with safetensors parameter counts),
// GET /api/datasets?search=…, and dataset repos (GET /api/datasets/{id}/tree/{rev},
// GET /datasets/{id}/resolve/{rev}/{path}). Everything else is passed through to the mock.

import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';

export interface HubFront {
  url: string;
  close(): Promise<void>;
}

export async function startHubFront(upstream: string, models: { id: string; params: number }[], datasets: Record<string, Record<string, Uint8Array | string>> = {}): Promise<HubFront> {
  const up = new URL(upstream);
  const cors = { 'access-control-allow-origin': '*', 'access-control-allow-headers': '*', 'access-control-expose-headers': '*' };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'OPTIONS' && (url.pathname === '/api/models' || url.pathname === '/api/datasets')) {
      res.writeHead(204, { ...cors, 'access-control-allow-methods': 'GET, OPTIONS' });
      res.end();
      return;
    }
    if (url.pathname === '/api/models' || url.pathname === '/api/datasets') {
      const q = (url.searchParams.get('search') ?? '').toLowerCase();
      const body =
        url.pathname === '/api/models'
          ? models
              .filter((m) => m.id.toLowerCase().includes(q))
              .map((m) => ({ _id: m.id, id: m.id, modelId: m.id, private: false, gated: false, downloads: 42, likes: 1, pipeline_tag: 'text-generation', lastModified: '2026-01-01T00:00:00.000Z', safetensors: { parameters: { F32: m.params }, total: m.params } }))
          : Object.keys(datasets).filter((d) => d.toLowerCase().includes(q)).map((d) => ({ _id: d, id: d, private: false, gated: false, downloads: 7, likes: 0, lastModified: '2026-01-01T00:00:00.000Z' }));
      res.writeHead(200, { ...cors, 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
      return;
    }
    let m: RegExpExecArray | null;
    if ((m = /^\/api\/datasets\/(.+?)\/tree\/[^/]+$/.exec(url.pathname)) && datasets[decodeURIComponent(m[1]!)]) {
      const files = datasets[decodeURIComponent(m[1]!)]!;
      const list = Object.entries(files).map(([path, c]) => ({ type: 'file', path, size: typeof c === 'string' ? Buffer.byteLength(c) : c.length, oid: '0'.repeat(40) }));
      res.writeHead(200, { ...cors, 'content-type': 'application/json' });
      res.end(JSON.stringify(list));
      return;
    }
    if ((m = /^\/datasets\/(.+?)\/resolve\/[^/]+\/(.+)$/.exec(url.pathname))) {
      const file = datasets[decodeURIComponent(m[1]!)]?.[decodeURIComponent(m[2]!)];
      res.writeHead(file === undefined ? 404 : 200, { ...cors, 'content-type': 'application/octet-stream' });
      res.end(file ?? 'not found');
      return;
    }
    const fwd = request(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: { ...req.headers, host: up.host } },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        // a connection the mock cuts mid-body is cut here too (and a client that hangs up, upstream)
        pipeline(r, res, () => undefined);
      },
    );
    fwd.on('error', () => {
      if (res.headersSent) return void res.destroy();
      res.writeHead(502);
      res.end();
    });
    res.on('close', () => fwd.destroy());
    req.pipe(fwd);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
