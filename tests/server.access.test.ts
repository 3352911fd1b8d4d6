// Who may talk to `crucible api`: the defaults are safe on a machine with a browser (no CORS, a
// Host check against DNS rebinding, pages from other origins refused), and what can be opened
// up on purpose (--cors-origin, --allowed-host). Malformed URLs are a 400, not a crash.
import { request } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { isLoopback } from '../src/server/access';
import { startApiServer, type ApiServer, type ApiServerOptions } from '../src/server/http';
import type { ChatBackend } from '../src/engine/chat-backend';

/** A backend that answers "ok": these tests are about the HTTP layer in front of it. */
const okBackend: ChatBackend = {
  models: () => ['m'],
  async chat(_req, onToken) {
    onToken('ok');
    return { text: 'ok', finishReason: 'stop', promptTokens: 1, completionTokens: 1 };
  },
};

const servers: ApiServer[] = [];
async function serve(opts: ApiServerOptions = {}): Promise<ApiServer> {
  const s = await startApiServer(okBackend, { host: '127.0.0.1', port: 0, apiKey: null, modelAlias: null, ...opts });
  servers.push(s);
  return s;
}
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A raw request (fetch cannot set Host), with the raw target as given. */
function send(s: ApiServer, method: string, target: string, headers: Record<string, string> = {}, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: s.port, method, path: target, headers: { ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
const chatBody = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
const errorOf = (r: Reply) => (JSON.parse(r.body) as { error: { message: string; type: string; param: string | null; code: string | null } }).error;

describe('CORS and browser origins', () => {
  it('sends no CORS headers by default and refuses requests and preflights from web pages', async () => {
    const s = await serve();
    const plain = await send(s, 'GET', '/v1/models');
    expect(plain.status).toBe(200);
    expect(plain.headers['access-control-allow-origin']).toBeUndefined();
    // a page's form post needs no preflight: refused all the same, before the model runs
    const page = await send(s, 'POST', '/v1/chat/completions', { Origin: 'http://evil.example', 'Content-Type': 'text/plain' }, chatBody);
    expect(page.status).toBe(403);
    expect(errorOf(page)).toMatchObject({ type: 'invalid_request_error', param: null, code: 'origin_not_allowed' });
    expect(errorOf(page).message).toContain('--cors-origin http://evil.example');
    expect(page.headers['access-control-allow-origin']).toBeUndefined();
    const preflight = await send(s, 'OPTIONS', '/v1/chat/completions', { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST' });
    expect(preflight.status).toBe(403);
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
    expect(preflight.headers['access-control-allow-methods']).toBeUndefined();
  });

  it('lets the allowed origins in, and only them', async () => {
    const s = await serve({ corsOrigins: ['http://app.example', 'https://ui.example:8443'] });
    const ok = await send(s, 'POST', '/v1/chat/completions', { Origin: 'https://ui.example:8443' }, chatBody);
    expect(ok.status).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe('https://ui.example:8443');
    expect(ok.headers.vary).toBe('Origin');
    const preflight = await send(s, 'OPTIONS', '/v1/chat/completions', { Origin: 'http://app.example', 'Access-Control-Request-Method': 'POST' });
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe('http://app.example');
    expect(preflight.headers['access-control-allow-headers']).toMatch(/Authorization/);
    expect((await send(s, 'GET', '/v1/models', { Origin: 'http://other.example' })).status).toBe(403);
  });

  it("opens to every origin only when told '*'", async () => {
    const s = await serve({ corsOrigins: ['*'] });
    const r = await send(s, 'GET', '/v1/models', { Origin: 'http://any.example' });
    expect(r.status).toBe(200);
    expect(r.headers['access-control-allow-origin']).toBe('*');
  });
});

describe('Host header (DNS rebinding)', () => {
  it('answers to localhost names and IP addresses, and refuses other names', async () => {
    const s = await serve();
    for (const host of [`127.0.0.1:${s.port}`, `localhost:${s.port}`, 'LOCALHOST', `[::1]:${s.port}`, 'app.localhost', '192.168.1.20:8000']) {
      expect((await send(s, 'GET', '/health', { Host: host })).status, host).toBe(200);
    }
    const rebound = await send(s, 'GET', '/v1/models', { Host: `attacker.example:${s.port}` });
    expect(rebound.status).toBe(403);
    expect(errorOf(rebound)).toMatchObject({ type: 'invalid_request_error', code: 'host_not_allowed' });
    expect(errorOf(rebound).message).toContain('--allowed-host');
    expect((await send(s, 'GET', '/health', { Host: 'attacker.example' })).status).toBe(403);
  });

  it('accepts the names it is told to', async () => {
    const s = await serve({ allowedHosts: ['api.example'] });
    expect((await send(s, 'GET', '/v1/models', { Host: 'api.example:8000' })).status).toBe(200);
    expect((await send(s, 'GET', '/v1/models', { Host: 'other.example' })).status).toBe(403);
    const any = await serve({ allowedHosts: ['*'] });
    expect((await send(any, 'GET', '/v1/models', { Host: 'other.example' })).status).toBe(200);
  });

  it('tells loopback addresses from the others (for the startup warning)', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '192.168.1.2', 'example.com']) expect(isLoopback(h), h).toBe(false);
  });
});

describe('malformed URLs', () => {
  it('answers 400 in the OpenAI error shape for bad percent-encoding, and keeps serving', async () => {
    const s = await serve();
    for (const target of ['/v1/models/%E0%A4%A', '/v1/models/%', '/v1/models/a%ZZ']) {
      const r = await send(s, 'GET', target);
      expect(r.status, target).toBe(400);
      expect(errorOf(r)).toMatchObject({ type: 'invalid_request_error', param: null, code: 'invalid_url' });
    }
    expect((await send(s, 'GET', '/v1/models/m')).status).toBe(200);
    expect((await send(s, 'GET', '/v1/models/%6D')).status).toBe(200);
  });
});
