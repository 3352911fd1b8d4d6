// `crucible api` on the real engine: the official openai client against the server backed by a
// model on the GPU (tiny fixture): listing, a streamed completion, concurrent requests.
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { createChatBackend } from '../src/model/chat';
import { startApiServer, type ApiServer } from '../src/server/http';
import type { ChatBackend } from '../src/server/types';

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
