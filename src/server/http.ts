// The OpenAI-compatible HTTP API on node:http.
//
//   GET  /v1/models                 the backend's models
//   GET  /v1/models/{id}
//   POST /v1/chat/completions       stream: false -> one chat.completion object;
//                                   stream: true  -> SSE `data: {chunk}\n\n` ... `data: [DONE]\n\n`
//   GET  /health                    {"status":"ok"} (no key needed)
//
// Access (access.ts): no CORS unless an origin is allowed, Host checked against the names the
// server answers to, an optional bearer key. Requests are bounded before any heavy work: the
// body by size (413), max_tokens by the model's context, the messages by their length in
// characters (the backend's precheck) and then by tokens (the backend, before it generates).
// Scheduling: a generation holds the GPU, so requests are admitted first come, first served, at
// most `maxConcurrent` at once (default 1); the others wait in line (up to `maxQueue`, then 429).
// Each request streams into its own response, so concurrent clients never see each other's
// tokens. A client that disconnects (while waiting or generating) aborts its generation.
// Stop strings are enforced here, whatever the backend does: text that could begin a stop string
// is held back until it is known not to, and generation ends at the first match.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { AccessPolicy } from './access';
import { ApiError, FALLBACK_DEFAULTS, chunkObject, completionObject, parseChatRequest, usageChunk, usageOf, type RequestDefaults } from './protocol';
import { FairQueue, QueueFullError } from './queue';
import { StopMatcher } from './stop';
import { DEFAULT_IMAGE_LIMITS, type ImageLimits } from './images';
import { ChatRequestError, type ChatBackend, type ChatResult } from '../engine/chat-backend';

export interface ApiServerOptions {
  /** Default: $API_HOST, else 127.0.0.1. */
  host?: string;
  /** Default: $API_PORT, else 8000. 0 picks a free port. */
  port?: number;
  /** Bearer key required on /v1 routes. Default: $API_KEY; null or '' disables the check. */
  apiKey?: string | null;
  /** Extra model id accepted and listed (LLaMA-Factory's $API_MODEL_NAME). */
  modelAlias?: string | null;
  /** Origins whose web pages may call the API (CORS); '*' allows any. Default: none. */
  corsOrigins?: readonly string[];
  /** Host header names accepted besides localhost, IP addresses and the machine's name; '*': any. */
  allowedHosts?: readonly string[];
  /** Generations at once (default 1). */
  maxConcurrent?: number;
  /** Requests waiting beyond the running ones before 429 (default 64). */
  maxQueue?: number;
  /** Sampling values for fields a request leaves out (from the config's generation keys). */
  defaults?: Partial<RequestDefaults>;
  /** Largest accepted request body in bytes (default 8 MiB). */
  maxBodyBytes?: number;
  /** Bounds on the images of a request (images.ts DEFAULT_IMAGE_LIMITS where left out). */
  imageLimits?: Partial<ImageLimits>;
  /** One line per finished request. */
  log?: (line: string) => void;
  env?: Record<string, string | undefined>;
}

export interface ApiServer {
  readonly server: Server;
  readonly host: string;
  readonly port: number;
  /** http://host:port/v1 */
  readonly url: string;
  /** Stop accepting, abort running generations, close connections. */
  close(): Promise<void>;
}

/** API_HOST / API_PORT / API_KEY / API_MODEL_NAME as options. */
export function apiOptionsFromEnv(env: Record<string, string | undefined> = process.env): Pick<ApiServerOptions, 'host' | 'port' | 'apiKey' | 'modelAlias'> {
  const port = env.API_PORT?.trim();
  if (port && !/^\d+$/.test(port)) throw new Error(`API_PORT must be a port number, got "${port}"`);
  return {
    host: env.API_HOST?.trim() || '127.0.0.1',
    port: port ? Number(port) : 8000,
    apiKey: env.API_KEY || null,
    modelAlias: env.API_MODEL_NAME?.trim() || null,
  };
}

export async function startApiServer(backend: ChatBackend, options: ApiServerOptions = {}): Promise<ApiServer> {
  const fromEnv = apiOptionsFromEnv(options.env ?? process.env);
  const host = options.host ?? fromEnv.host!;
  const port = options.port ?? fromEnv.port!;
  const apiKey = (options.apiKey === undefined ? fromEnv.apiKey : options.apiKey) || null;
  const alias = options.modelAlias === undefined ? fromEnv.modelAlias : options.modelAlias;
  const defaults: RequestDefaults = { ...FALLBACK_DEFAULTS, ...options.defaults };
  const maxBody = options.maxBodyBytes ?? 8 * 1024 * 1024;
  const imageLimits = { ...DEFAULT_IMAGE_LIMITS, ...options.imageLimits };
  const queue = new FairQueue(options.maxConcurrent ?? 1, options.maxQueue ?? 64);
  const inFlight = new Set<AbortController>();
  const log = options.log ?? (() => {});
  const access = new AccessPolicy({ apiKey, corsOrigins: options.corsOrigins ?? [], allowedHosts: options.allowedHosts ?? [] });

  const modelIds = (): string[] => {
    const ids = [...backend.models()];
    if (alias && !ids.includes(alias)) ids.push(alias);
    return ids;
  };
  const backendModel = (requested: string): string => {
    const own = backend.models();
    return own.includes(requested) ? requested : (own[0] ?? requested);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = performance.now();
    let path = req.url ?? '/';
    let status = 200;
    let note = '';
    try {
      path = requestPath(path);
      for (const [k, v] of Object.entries(access.check(req))) res.setHeader(k, v);
      if (req.method === 'OPTIONS') {
        res.writeHead(204, {
          Allow: 'GET, POST, OPTIONS',
          ...(req.headers.origin !== undefined
            ? { 'Access-Control-Allow-Methods': 'GET, POST, OPTIONS', 'Access-Control-Allow-Headers': 'Authorization, Content-Type', 'Access-Control-Max-Age': '86400' }
            : {}),
        });
        res.end();
        status = 204;
        return;
      }
      if (path === '/health') {
        sendJson(res, 200, { status: 'ok' });
        return;
      }
      if (!path.startsWith('/v1/') && path !== '/v1') throw notFound(req, path);
      access.checkKey(req);

      if (path === '/v1/models') {
        allow(req, 'GET');
        const created = Math.floor(Date.now() / 1000);
        sendJson(res, 200, { object: 'list', data: modelIds().map((id) => ({ id, object: 'model', created, owned_by: 'crucible' })) });
        return;
      }
      if (path.startsWith('/v1/models/')) {
        allow(req, 'GET');
        const id = decodePathPart(path.slice('/v1/models/'.length));
        if (!modelIds().includes(id)) throw modelNotFound(id);
        sendJson(res, 200, { id, object: 'model', created: Math.floor(Date.now() / 1000), owned_by: 'crucible' });
        return;
      }
      if (path === '/v1/chat/completions') {
        allow(req, 'POST');
        const body = await readJson(req, maxBody);
        const parsed = parseChatRequest(body, defaults, backend.contextLength?.(), imageLimits);
        if (!modelIds().includes(parsed.request.model)) throw modelNotFound(parsed.request.model);
        const request = { ...parsed.request, model: backendModel(parsed.request.model) };
        try {
          backend.precheck?.(request);
        } catch (e) {
          throw e instanceof ChatRequestError ? badRequest(e) : e;
        }
        note = await serveChat(res, parsed.request.model, request, parsed.stream, parsed.includeUsage);
        return;
      }
      throw notFound(req, path);
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(500, `internal error: ${(e as Error).message}`, 'server_error', null, null);
      status = err.status;
      note = err.message;
      if (res.destroyed) note = `${note} (client gone)`;
      else if (!res.headersSent) sendJson(res, err.status, err.body());
      else if (!res.writableEnded) res.end();
    } finally {
      const ms = performance.now() - started;
      log(`${req.method} ${path.slice(0, 200)} ${res.headersSent ? res.statusCode : status} ${(ms / 1000).toFixed(2)}s${note ? ` ${note}` : ''}`);
    }
  };

  /** Runs one generation in its turn; returns a note for the log line. */
  const serveChat = async (
    res: ServerResponse,
    shownModel: string,
    request: Parameters<ChatBackend['chat']>[0],
    stream: boolean,
    includeUsage: boolean,
  ): Promise<string> => {
    const controller = new AbortController();
    let clientGone = false;
    const onClose = () => {
      if (res.writableFinished) return;
      clientGone = true;
      controller.abort(new Error('client disconnected'));
    };
    res.on('close', onClose);
    inFlight.add(controller);
    let release: (() => void) | null = null;
    /** Ends the exchange after an abort: nothing to send to a client that left; a 503 when the server closes. */
    const aborted = (when: string): string => {
      if (clientGone || res.destroyed || res.writableEnded) return `aborted ${when}: client disconnected`;
      if (!res.headersSent) throw new ApiError(503, 'The server is shutting down.', 'server_error', null, 'server_shutting_down');
      writeEvent(res, new ApiError(503, 'The server is shutting down.', 'server_error', null, 'server_shutting_down').body());
      res.end();
      return `aborted ${when}: server closing`;
    };
    try {
      try {
        release = await queue.acquire(controller.signal);
      } catch (e) {
        if (e instanceof QueueFullError) {
          throw new ApiError(429, `The server is busy: ${e.message}. Try again later.`, 'rate_limit_error', null, 'rate_limit_exceeded');
        }
        return aborted('while waiting');
      }
      if (controller.signal.aborted) return aborted('while waiting');

      const id = `chatcmpl-${randomUUID().replace(/-/g, '')}`;
      const created = Math.floor(Date.now() / 1000);
      const matcher = new StopMatcher(request.stop);
      let text = '';
      let streamed = false;
      // The stream starts with the first text, so that a request the backend refuses before
      // generating (its messages do not fit) still gets a plain 400.
      const startStream = () => {
        if (!stream || res.headersSent) return;
        res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
        writeEvent(res, chunkObject(id, created, shownModel, { role: 'assistant', content: '' }, null, includeUsage ? null : undefined));
      };
      const send = (piece: string) => {
        if (piece.length === 0) return;
        text += piece;
        if (!stream) return;
        startStream();
        writeEvent(res, chunkObject(id, created, shownModel, { content: piece }, null, includeUsage ? null : undefined));
      };
      let result: ChatResult;
      try {
        result = await backend.chat(
          request,
          (piece) => {
            if (matcher.stopped || controller.signal.aborted) return false;
            streamed = true;
            send(matcher.push(piece));
            return !matcher.stopped;
          },
          controller.signal,
        );
      } catch (e) {
        if (controller.signal.aborted) return aborted('during generation');
        if (e instanceof ChatRequestError && !res.headersSent) throw badRequest(e);
        const err = new ApiError(500, `generation failed: ${(e as Error).message}`, 'server_error', null, 'generation_failed');
        if (!stream) throw err;
        startStream();
        writeEvent(res, err.body());
        res.end();
        return err.message;
      }
      if (controller.signal.aborted) return aborted('during generation');
      if (!streamed && result.text) send(matcher.push(result.text));
      send(matcher.flush());
      const finish = matcher.stopped ? 'stop' : result.finishReason;
      const usage = usageOf(result);
      if (stream) {
        startStream();
        writeEvent(res, chunkObject(id, created, shownModel, {}, finish, includeUsage ? null : usage));
        if (includeUsage) writeEvent(res, usageChunk(id, created, shownModel, usage));
        res.end('data: [DONE]\n\n');
      } else {
        sendJson(res, 200, completionObject(id, created, shownModel, text, finish, usage));
      }
      return `${usage.completion_tokens} tokens (${finish})`;
    } finally {
      release?.();
      inFlight.delete(controller);
      res.off('close', onClose);
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.writableEnded) res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server,
    host: addr.address,
    port: addr.port,
    url: `http://${shownHost}:${addr.port}/v1`,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const c of inFlight) c.abort(new Error('server closing'));
      server.closeIdleConnections();
      setTimeout(() => server.closeAllConnections(), 1000).unref();
      await closed;
    },
  };
}

// ---- helpers ---------------------------------------------------------------------------------

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function writeEvent(res: ServerResponse, body: unknown): void {
  if (!res.writableEnded && !res.destroyed) res.write(`data: ${JSON.stringify(body)}\n\n`);
}

function allow(req: IncomingMessage, method: string): void {
  if (req.method !== method && !(method === 'GET' && req.method === 'HEAD')) {
    throw new ApiError(405, `Method ${req.method} is not allowed here; use ${method}.`, 'invalid_request_error', null, 'method_not_allowed');
  }
}

function notFound(req: IncomingMessage, path: string): ApiError {
  return new ApiError(404, `Invalid URL (${req.method} ${path})`, 'invalid_request_error', null, 'not_found');
}

function modelNotFound(id: string): ApiError {
  return new ApiError(404, `The model \`${id}\` does not exist or you do not have access to it.`, 'invalid_request_error', 'model', 'model_not_found');
}

function badRequest(e: ChatRequestError): ApiError {
  return new ApiError(400, e.message, 'invalid_request_error', e.param, e.code);
}

/** The path of a request target, without the query and trailing slashes; 400 for one that does not parse. */
function requestPath(target: string): string {
  let pathname: string;
  try {
    pathname = new URL(target, 'http://localhost').pathname;
  } catch {
    throw invalidUrl(target);
  }
  return pathname.replace(/\/+$/, '') || '/';
}

/** A percent-encoded path segment, decoded; 400 for malformed encoding ("%E0%A4%A"). */
function decodePathPart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw invalidUrl(part);
  }
}

function invalidUrl(what: string): ApiError {
  return new ApiError(400, `Invalid URL: ${JSON.stringify(what.slice(0, 200))} is not a well-formed (percent-encoded) path.`, 'invalid_request_error', null, 'invalid_url');
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new ApiError(413, `The request body is larger than ${limit} bytes.`, 'invalid_request_error', null, 'request_too_large');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(
      400,
      `We could not parse the JSON body of your request (${(e as Error).message}). The body must be valid JSON.`,
      'invalid_request_error',
      null,
      'invalid_json',
    );
  }
}
