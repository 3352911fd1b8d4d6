// `crucible api` on the real engine: the official openai client against the server backed by a
// model on the GPU (tiny fixture): listing, a streamed completion, concurrent requests, and
// requests bounded by the model's context before any heavy work.
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { createChatBackend } from '../src/engine/chat-node';
import { startApiServer, type ApiServer } from '../src/server/http';
import type { ChatBackend } from '../src/engine/chat-backend';

let backend: ChatBackend;
let server: ApiServer;
let client: OpenAI;

beforeAll(async () => {
  backend = await createChatBackend(configFromObject({ model_name_or_path: join(import.meta.dirname, 'fixtures/tiny-chat') }).config, {});
  server = await startApiServer(backend, { port: 0, apiKey: 'k' });
  client = new OpenAI({ baseURL: server.url, apiKey: 'k' });
});
afterAll(async () => {
  await server.close();
  await backend.close?.();
});

it('lists the model and streams a completion with usage', async () => {
  const models = await client.models.list();
  const model = models.data[0]!.id;
  const stream = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let usage: { completion_tokens: number } | undefined;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  expect(usage?.completion_tokens).toBeGreaterThan(0);
  const again = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 5, temperature: 0 });
  expect(again.choices[0]!.message.content).toBe(text); // greedy: the same answer streamed or not
});

it('serves concurrent requests without mixing their answers', async () => {
  const model = (await client.models.list()).data[0]!.id;
  const ask = (content: string) => client.chat.completions.create({ model, messages: [{ role: 'user', content }], max_tokens: 4, temperature: 0 });
  const [a, b, a2] = await Promise.all([ask('first question'), ask('second one'), ask('first question')]);
  expect(a.choices[0]!.message.content).toBe(a2.choices[0]!.message.content);
  expect(b.usage!.prompt_tokens).not.toBe(a.usage!.prompt_tokens);
});

describe('requests bounded by the model context (the fixture holds 128 tokens)', () => {
  const words = (chars: number) => 'hello world '.repeat(Math.ceil(chars / 12)).slice(0, chars);
  const user = (content: string) => [{ role: 'user' as const, content }];
  const post = async (body: object) => {
    const res = await fetch(`${server.url}/chat/completions`, { method: 'POST', headers: { Authorization: 'Bearer k', 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as { error: { message: string; param: string | null; code: string | null } } };
  };

  let model: string;
  beforeAll(async () => {
    model = (await client.models.list()).data[0]!.id;
  });

  it('serves the model under its folder name, not its path', () => {
    expect(model).toBe('tiny-chat');
  });

  it('ends an answer without max_tokens (default 1024) where the context does', async () => {
    const r = await client.chat.completions.create({ model, messages: user(words(104)), temperature: 0 });
    expect(r.choices[0]!.finish_reason).toBe('length');
    expect(r.usage!.total_tokens).toBe(128);
    const explicit = await client.chat.completions.create({ model, messages: user(words(104)), temperature: 0, max_tokens: 128 });
    expect(explicit.usage!.total_tokens).toBe(128);
  });

  it('refuses a max_tokens the context can never hold with a 400, not a 500', async () => {
    for (const max_tokens of [1e9, 129]) {
      const r = await post({ model, messages: user('hi'), max_tokens });
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ param: 'max_tokens', code: 'invalid_value' });
      expect(r.body.error.message).toContain("more than the model's context of 128 tokens");
    }
    await expect(client.chat.completions.create({ model, messages: user('hi'), max_tokens: 1e9 })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
  });

  it('refuses messages that do not fit with a 400 naming both lengths, streamed or not', async () => {
    const cases: Array<[number, RegExp]> = [
      [200, /^the prompt is \d+ tokens long and the model's context is 128 tokens/], // counted exactly
      [1000, /^the messages are more than 256 tokens long; the model's context is 128 tokens$/], // counted in pieces
      [2000, /^the messages are 2000 characters long; the model's context of 128 tokens holds at most \d+ characters$/], // by length alone
    ];
    for (const [chars, message] of cases) {
      for (const stream of [false, true]) {
        const r = await post({ model, messages: user(words(chars)), max_tokens: 5, stream });
        expect(r.status, `${chars} characters`).toBe(400);
        expect(r.type).toMatch(/^application\/json/);
        expect(r.body.error).toMatchObject({ param: 'messages', code: 'context_length_exceeded' });
        expect(r.body.error.message).toMatch(message);
      }
    }
  });

  // The refusal comes from the character count (the message says so), before any tokenizing, so the
  // server stays responsive; /health is polled throughout rather than timed (timing belongs in benchmarks).
  it('refuses a 6 MB prompt by its length while /health keeps answering', async () => {
    let done = false;
    const big = post({ model, messages: user(words(6_000_000)), max_tokens: 5 }).finally(() => (done = true));
    do {
      expect((await fetch(server.url.replace(/\/v1$/, '/health'))).status).toBe(200);
      await new Promise((r) => setTimeout(r, 10));
    } while (!done);
    const r = await big;
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/^the messages are 6000000 characters long/);
  });
});
