// The OpenAI-compatible HTTP layer, driven by the official `openai` client, against a scripted
// test double of the engine (ScriptedBackend below: it replays fixed tokens, it is not a model).

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { startApiServer, type ApiServer, type ApiServerOptions } from '../src/server/http';
import { FairQueue } from '../src/server/queue';
import { StopMatcher } from '../src/server/stop';
import type { ChatBackend, ChatRequest, ChatResult, TokenSink } from '../src/engine/chat-backend';

// ---- test double ---------------------------------------------------------------------------

interface Call {
  request: ChatRequest;
  aborted: boolean;
  stoppedEarly: boolean;
  emitted: number;
  done: boolean;
}

/**
 * Scripted stand-in for the engine: the last user message chooses the tokens.
 *   "echo a b c"            -> "a", " b", " c"
 *   "tag X n [ms]"          -> "[X0]", "[X1]", ... n tokens, ms apart
 *   "pieces p1|p2|p3"       -> the pieces exactly
 *   "fail"                  -> throws after one token
 */
class ScriptedBackend implements ChatBackend {
  readonly calls: Call[] = [];
  active = 0;
  maxActive = 0;

  models(): string[] {
    return ['test-model'];
  }

  async chat(request: ChatRequest, onToken: TokenSink, signal: AbortSignal): Promise<ChatResult> {
    const call: Call = { request, aborted: false, stoppedEarly: false, emitted: 0, done: false };
    this.calls.push(call);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      const last = [...request.messages].reverse().find((m) => m.role === 'user')?.content ?? '';
      const promptTokens = request.messages.reduce((n, m) => n + m.content.split(/\s+/).filter(Boolean).length, 0);
      let tokens: string[] = [];
      let delay = 0;
      const [cmd, ...rest] = last.split(' ');
      if (cmd === 'echo') tokens = rest.map((w, i) => (i === 0 ? w : ` ${w}`));
      if (cmd === 'tag') {
        tokens = Array.from({ length: Number(rest[1]) }, (_, i) => `[${rest[0]}${i}]`);
        delay = Number(rest[2] ?? 0);
      }
      if (cmd === 'pieces') tokens = rest.join(' ').split('|');
      let text = '';
      for (let i = 0; i < tokens.length; i++) {
        if (i >= request.maxTokens) return { text, finishReason: 'length', promptTokens, completionTokens: call.emitted };
        if (delay > 0) await sleep(delay);
        if (signal.aborted) {
          call.aborted = true;
          throw signal.reason;
        }
        if (cmd === 'fail' || (last === 'fail' && i === 1)) throw new Error('the GPU caught fire');
        text += tokens[i];
        call.emitted++;
        if (onToken(tokens[i]!) === false) {
          call.stoppedEarly = true;
          return { text, finishReason: 'stop', promptTokens, completionTokens: call.emitted };
        }
      }
      if (last === 'fail') throw new Error('the GPU caught fire');
      return { text, finishReason: 'stop', promptTokens, completionTokens: call.emitted };
    } finally {
      call.done = true;
      this.active--;
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(5);
  }
}

// ---- fixtures --------------------------------------------------------------------------------

const servers: ApiServer[] = [];
async function serve(backend: ChatBackend, opts: ApiServerOptions = {}): Promise<ApiServer> {
  const s = await startApiServer(backend, { host: '127.0.0.1', port: 0, apiKey: null, modelAlias: null, ...opts });
  servers.push(s);
  return s;
}
const client = (s: ApiServer, apiKey = 'none') => new OpenAI({ baseURL: s.url, apiKey, maxRetries: 0, timeout: 10_000 });
const user = (content: string) => [{ role: 'user' as const, content }];

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

// ---- tests -------------------------------------------------------------------------------------

describe('GET /v1/models', () => {
  it('lists the backend models and the alias', async () => {
    const s = await serve(new ScriptedBackend(), { modelAlias: 'gpt-3.5-turbo' });
    const models = await client(s).models.list();
    expect(models.data.map((m) => m.id)).toEqual(['test-model', 'gpt-3.5-turbo']);
    expect(models.data[0]!.object).toBe('model');
    const one = await client(s).models.retrieve('test-model');
    expect(one.id).toBe('test-model');
    await expect(client(s).models.retrieve('nope')).rejects.toMatchObject({ status: 404 });
  });
});

describe('POST /v1/chat/completions', () => {
  let backend: ScriptedBackend;
  let s: ApiServer;
  beforeAll(async () => {
    backend = new ScriptedBackend();
    s = await serve(backend, { defaults: { maxTokens: 77, temperature: 0.3, topP: 0.9, topK: 20, repetitionPenalty: 1.1 } });
  });

  it('answers without streaming', async () => {
    const r = await client(s).chat.completions.create({
      model: 'test-model',
      messages: [{ role: 'system', content: 'be brief' }, ...user('echo Hello there world')],
      temperature: 0.5,
      top_p: 0.8,
      seed: 1234,
      max_tokens: 50,
    });
    expect(r.object).toBe('chat.completion');
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.model).toBe('test-model');
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]!.message).toMatchObject({ role: 'assistant', content: 'Hello there world' });
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(r.usage).toEqual({ prompt_tokens: 6, completion_tokens: 3, total_tokens: 9 });
    const req = backend.calls.at(-1)!.request;
    expect(req).toMatchObject({ model: 'test-model', maxTokens: 50, temperature: 0.5, topP: 0.8, seed: 1234, topK: 20, repetitionPenalty: 1.1, stop: [] });
    expect(req.messages).toEqual([
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'echo Hello there world' },
    ]);
  });

  it('fills left-out sampling fields from the defaults, and reads text parts and developer messages', async () => {
    await client(s).chat.completions.create({
      model: 'test-model',
      messages: [
        { role: 'developer', content: 'rules' },
        { role: 'user', content: [{ type: 'text', text: 'echo one' }, { type: 'text', text: ' two' }] },
      ],
    });
    const req = backend.calls.at(-1)!.request;
    expect(req).toMatchObject({ maxTokens: 77, temperature: 0.3, topP: 0.9, seed: null });
    expect(req.messages).toEqual([
      { role: 'system', content: 'rules' },
      { role: 'user', content: 'echo one two' },
    ]);
  });

  it('stops at max_tokens with finish_reason length', async () => {
    const r = await client(s).chat.completions.create({ model: 'test-model', messages: user('tag L 10'), max_tokens: 4 });
    expect(r.choices[0]!.message.content).toBe('[L0][L1][L2][L3]');
    expect(r.choices[0]!.finish_reason).toBe('length');
    expect(r.usage!.completion_tokens).toBe(4);
  });

  it('streams chunks, then the finish reason with usage, then [DONE]', async () => {
    const stream = await client(s).chat.completions.create({ model: 'test-model', messages: user('echo a b c d'), stream: true });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0]!.id)).toBe(true);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe('a b c d');
    expect(chunks.filter((c) => c.choices[0]?.delta.content).length).toBe(4);
    const last = chunks.at(-1)!;
    expect(last.choices[0]!.finish_reason).toBe('stop');
    expect(last.usage).toEqual({ prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 });
  });

  it('sends the OpenAI usage chunk with stream_options.include_usage', async () => {
    const stream = await client(s).chat.completions.create({
      model: 'test-model',
      messages: user('echo x y'),
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('stop');
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it('ends the SSE body with data: [DONE]', async () => {
    const res = await fetch(`${s.url}/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'test-model', messages: user('echo hi'), stream: true }),
    });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const body = await res.text();
    const events = body.split('\n\n').filter(Boolean);
    expect(events.every((e) => e.startsWith('data: '))).toBe(true);
    expect(events.at(-1)).toBe('data: [DONE]');
  });

  it('cuts at stop strings, also across token boundaries, and asks the backend to stop', async () => {
    const before = backend.calls.length;
    const r = await client(s).chat.completions.create({
      model: 'test-model',
      messages: user('pieces Hel|lo wo|rld. ST|OP and|more'),
      stop: ['STOP', 'never'],
    });
    expect(r.choices[0]!.message.content).toBe('Hello world. ');
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(backend.calls[before]!.stoppedEarly).toBe(true);
    expect(backend.calls[before]!.emitted).toBe(4);

    const stream = await client(s).chat.completions.create({
      model: 'test-model',
      messages: user('pieces Hel|lo wo|rld. ST|OP and|more'),
      stop: 'STOP',
      stream: true,
    });
    const pieces: string[] = [];
    let finish: string | null = null;
    for await (const c of stream) {
      if (c.choices[0]?.delta.content) pieces.push(c.choices[0].delta.content);
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    expect(pieces.join('')).toBe('Hello world. ');
    expect(pieces.some((p) => p.includes('S'))).toBe(false);
    expect(finish).toBe('stop');
  });

  it('lets a held-back partial stop string through when it does not complete', async () => {
    const r = await client(s).chat.completions.create({ model: 'test-model', messages: user('pieces one ST|Ofine|ST'), stop: ['STOP'] });
    expect(r.choices[0]!.message.content).toBe('one STOfineST');
    expect(r.choices[0]!.finish_reason).toBe('stop');
  });

  it('reports a backend failure as a 500 and an error event in a stream, and keeps serving', async () => {
    await expect(client(s).chat.completions.create({ model: 'test-model', messages: user('fail') })).rejects.toMatchObject({
      status: 500,
      error: { type: 'server_error' },
    });
    const stream = await client(s).chat.completions.create({ model: 'test-model', messages: user('fail'), stream: true });
    await expect(
      (async () => {
        for await (const _ of stream) void _;
      })(),
    ).rejects.toThrow(/GPU caught fire/);
    const ok = await client(s).chat.completions.create({ model: 'test-model', messages: user('echo still here') });
    expect(ok.choices[0]!.message.content).toBe('still here');
  });
});

describe('concurrency', () => {
  async function collect(c: OpenAI, tag: string, n: number, ms: number): Promise<string> {
    const stream = await c.chat.completions.create({ model: 'test-model', messages: user(`tag ${tag} ${n} ${ms}`), stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    return text;
  }
  const expected = (tag: string, n: number) => Array.from({ length: n }, (_, i) => `[${tag}${i}]`).join('');

  it('serves concurrent streams one generation at a time, in arrival order, without mixing them', async () => {
    const backend = new ScriptedBackend();
    const s = await serve(backend);
    const c = client(s);
    const tags = ['A', 'B', 'C', 'D'];
    const pending: Array<Promise<string>> = [];
    for (const t of tags) {
      pending.push(collect(c, t, 30, 4));
      // let each request reach the server before the next one is sent
      if (t === 'A') await until(() => backend.active === 1);
      else await sleep(50);
    }
    const results = await Promise.all(pending);
    results.forEach((text, i) => expect(text).toBe(expected(tags[i]!, 30)));
    expect(backend.maxActive).toBe(1);
    expect(backend.calls.map((call) => call.request.messages[0]!.content.split(' ')[1])).toEqual(tags);
  });

  it('interleaves generations when maxConcurrent allows, still without mixing', async () => {
    const backend = new ScriptedBackend();
    const s = await serve(backend, { maxConcurrent: 3 });
    const c = client(s);
    const results = await Promise.all(['X', 'Y', 'Z'].map((t) => collect(c, t, 12, 4)));
    expect(results).toEqual([expected('X', 12), expected('Y', 12), expected('Z', 12)]);
    expect(backend.maxActive).toBe(3);
  });

  it('answers 429 when the line is full', async () => {
    const backend = new ScriptedBackend();
    const s = await serve(backend, { maxQueue: 1 });
    const c = client(s);
    const a = collect(c, 'A', 20, 5);
    await until(() => backend.active === 1);
    const b = collect(c, 'B', 2, 0);
    await sleep(50);
    await expect(collect(c, 'C', 2, 0)).rejects.toMatchObject({ status: 429 });
    expect(await a).toBe(expected('A', 20));
    expect(await b).toBe(expected('B', 2));
  });
});

describe('client disconnect', () => {
  it('aborts the generation when a streaming client goes away, and keeps serving', async () => {
    const backend = new ScriptedBackend();
    const s = await serve(backend);
    const c = client(s);
    const stream = await c.chat.completions.create({ model: 'test-model', messages: user('tag S 1000 5'), stream: true });
    let seen = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) seen++;
      if (seen === 3) {
        stream.controller.abort();
        break;
      }
    }
    await until(() => backend.calls[0]!.done);
    expect(backend.calls[0]!.aborted).toBe(true);
    expect(backend.calls[0]!.emitted).toBeLessThan(100);
    const r = await c.chat.completions.create({ model: 'test-model', messages: user('echo next') });
    expect(r.choices[0]!.message.content).toBe('next');
  });

  it('aborts a non-streaming generation, and drops a waiting request whose client left', async () => {
    const backend = new ScriptedBackend();
    const s = await serve(backend);
    const c = client(s);
    const first = new AbortController();
    const p1 = c.chat.completions.create({ model: 'test-model', messages: user('tag N 1000 5') }, { signal: first.signal });
    await until(() => backend.active === 1);
    const second = new AbortController();
    const p2 = c.chat.completions.create({ model: 'test-model', messages: user('tag W 3 0') }, { signal: second.signal });
    await sleep(30);
    second.abort();
    await expect(p2).rejects.toThrow();
    await sleep(20);
    first.abort();
    await expect(p1).rejects.toThrow();
    await until(() => backend.calls[0]!.done);
    expect(backend.calls[0]!.aborted).toBe(true);
    const r = await c.chat.completions.create({ model: 'test-model', messages: user('echo after') });
    expect(r.choices[0]!.message.content).toBe('after');
    // the request that left while waiting never reached the backend
    expect(backend.calls.map((x) => x.request.messages[0]!.content)).toEqual(['tag N 1000 5', 'echo after']);
  });
});

describe('auth', () => {
  it('requires the API key as a bearer token when one is set', async () => {
    const s = await serve(new ScriptedBackend(), { apiKey: 'sekret' });
    await expect(client(s, 'wrong').models.list()).rejects.toMatchObject({ status: 401, code: 'invalid_api_key' });
    await expect(client(s, 'wrong').chat.completions.create({ model: 'test-model', messages: user('echo x') })).rejects.toBeInstanceOf(
      OpenAI.AuthenticationError,
    );
    const res = await fetch(`${s.url}/models`);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_api_key', param: null } });
    const r = await client(s, 'sekret').chat.completions.create({ model: 'test-model', messages: user('echo in') });
    expect(r.choices[0]!.message.content).toBe('in');
    expect((await fetch(s.url.replace(/\/v1$/, '/health'))).status).toBe(200);
  });

  it('reads API_KEY from the environment', async () => {
    const s = await startApiServer(new ScriptedBackend(), { host: '127.0.0.1', port: 0, env: { API_KEY: 'k1', API_MODEL_NAME: 'alias' } });
    servers.push(s);
    expect((await client(s, 'k1').models.list()).data.map((m) => m.id)).toEqual(['test-model', 'alias']);
    await expect(client(s, 'k2').models.list()).rejects.toMatchObject({ status: 401 });
  });
});

describe('malformed requests', () => {
  let s: ApiServer;
  beforeAll(async () => {
    s = await serve(new ScriptedBackend());
  });
  afterEach(async () => {
    // the server keeps running after every bad request
    const r = await client(s).chat.completions.create({ model: 'test-model', messages: user('echo alive') });
    expect(r.choices[0]!.message.content).toBe('alive');
  });

  async function post(body: string | object, path = '/chat/completions', method = 'POST') {
    const res = await fetch(`${s.url}${path}`, {
      method,
      headers: { 'Content-Type': 'application/json' },
      body: method === 'GET' ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as { error: { message: string; type: string; param: string | null; code: string | null } } };
  }

  it('rejects a body that is not JSON', async () => {
    const r = await post('{"model": "test-model", "messages": [');
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json', param: null });
    expect(typeof r.body.error.message).toBe('string');
  });

  it('names the parameter that is missing or of the wrong type', async () => {
    const cases: Array<[object | string, string | null]> = [
      ['[1, 2]', null],
      [{ messages: user('echo x') }, 'model'],
      [{ model: 'test-model' }, 'messages'],
      [{ model: 'test-model', messages: 'hi' }, 'messages'],
      [{ model: 'test-model', messages: [] }, 'messages'],
      [{ model: 'test-model', messages: [{ role: 'robot', content: 'x' }] }, 'messages.[0].role'],
      [{ model: 'test-model', messages: [{ role: 'user', content: 5 }] }, 'messages.[0].content'],
      [{ model: 'test-model', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages.[0].content.[0].image_url.url'],
      [{ model: 'test-model', messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: {} }] }] }, 'messages.[0].content.[0].type'],
      [{ model: 'test-model', messages: user('x'), temperature: 'hot' }, 'temperature'],
      [{ model: 'test-model', messages: user('x'), temperature: 3 }, 'temperature'],
      [{ model: 'test-model', messages: user('x'), max_tokens: 1.5 }, 'max_tokens'],
      [{ model: 'test-model', messages: user('x'), max_tokens: 0 }, 'max_tokens'],
      [{ model: 'test-model', messages: user('x'), stream: 'yes' }, 'stream'],
      [{ model: 'test-model', messages: user('x'), stop: [1] }, 'stop'],
      [{ model: 'test-model', messages: user('x'), n: 2 }, 'n'],
      [{ model: 'test-model', messages: user('x'), tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
    ];
    for (const [body, param] of cases) {
      const r = await post(body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.type).toBe('invalid_request_error');
      expect(r.body.error.param, JSON.stringify(body)).toBe(param);
    }
  });

  it('raises BadRequestError in the openai client', async () => {
    await expect(client(s).chat.completions.create({ model: 'test-model', messages: user('x'), top_p: 7 })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
  });

  it('answers 404 for an unknown model or path and 405 for a wrong method', async () => {
    const m = await post({ model: 'gpt-9', messages: user('x') });
    expect(m.status).toBe(404);
    expect(m.body.error).toMatchObject({ code: 'model_not_found', param: 'model' });
    expect((await post({}, '/completions')).status).toBe(404);
    expect((await post({}, '/chat/completions', 'GET')).status).toBe(405);
  });
});

describe('request size', () => {
  it('answers 413 for a body over the limit, and keeps serving', async () => {
    const s = await serve(new ScriptedBackend(), { maxBodyBytes: 100_000 });
    const res = await fetch(`${s.url}/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'test-model', messages: user('x'.repeat(300_000)) }),
    });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'request_too_large' } });
    const r = await client(s).chat.completions.create({ model: 'test-model', messages: user('echo fine') });
    expect(r.choices[0]!.message.content).toBe('fine');
  });
});

describe('building blocks', () => {
  it('StopMatcher holds back only what could start a stop string', () => {
    const m = new StopMatcher(['</s>', 'END']);
    expect(m.push('abc<')).toBe('abc');
    expect(m.push('/x')).toBe('</x');
    expect(m.push('E')).toBe('');
    expect(m.push('NDING')).toBe('');
    expect(m.stopped).toBe(true);
    expect(m.flush()).toBe('');
    const n = new StopMatcher(['STOP']);
    expect(n.push('a S')).toBe('a ');
    expect(n.flush()).toBe('S');
    expect(new StopMatcher([]).push('anything')).toBe('anything');
  });

  it('FairQueue admits in order and drops aborted waiters', async () => {
    const q = new FairQueue(1, 10);
    const order: string[] = [];
    const r1 = await q.acquire();
    const ac = new AbortController();
    const p2 = q.acquire(ac.signal).then((rel) => (order.push('2'), rel));
    const p3 = q.acquire().then((rel) => (order.push('3'), rel));
    ac.abort(new Error('gone'));
    await expect(p2).rejects.toThrow('gone');
    expect(q.waiting).toBe(1);
    r1();
    (await p3)();
    expect(order).toEqual(['3']);
    expect(q.active).toBe(0);
  });
});

describe('shutdown', () => {
  it('ends running and waiting requests with 503 when the server closes', async () => {
    const backend = new ScriptedBackend();
    const s = await startApiServer(backend, { host: '127.0.0.1', port: 0, apiKey: null });
    const c = client(s);
    const running = c.chat.completions.create({ model: 'test-model', messages: user('tag R 1000 5') }).catch((e: unknown) => e);
    await until(() => backend.active === 1);
    const waiting = c.chat.completions.create({ model: 'test-model', messages: user('tag Q 3 0') }).catch((e: unknown) => e);
    await sleep(20);
    const closed = s.close();
    expect(await running).toMatchObject({ status: 503, code: 'server_shutting_down' });
    expect(await waiting).toMatchObject({ status: 503, code: 'server_shutting_down' });
    await closed;
    expect(backend.calls).toHaveLength(1);
    expect(backend.calls[0]!.aborted).toBe(true);
  });
});
