// `crucible api` with images: OpenAI image_url parts (base64 data: URLs) on a tiny random Qwen2-VL
// (tests/helpers/qwen2vl.ts) through the real engine, and hostile image input refused with clear
// 400s (remote URLs, malformed data: URLs, other types, sizes, image parts outside user messages,
// too many images, a text-only model) while the server keeps serving.
import { Buffer } from 'node:buffer';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { qwen2vlGrid, qwen2vlImageConfig, LLAMAFACTORY_PIXEL_LIMITS } from '../src/data';
import type { ChatBackend } from '../src/engine/chat-backend';
import { createChatBackend } from '../src/engine/chat-node';
import { startApiServer, type ApiServer } from '../src/server/http';
import { makeRng } from './helpers/check';
import { encodePng } from './helpers/png-encode';
import { qwen2vlConfig, synthesizeQwen2VL, writeQwen2VL } from './helpers/qwen2vl';

const rng = makeRng();
const config = qwen2vlConfig(true);
const dir = writeQwen2VL(synthesizeQwen2VL(rng, config), config, true);
/** Random pixels, or one grey level (which compresses to a few bytes). */
const png = (width: number, height: number, grey?: number) => encodePng({ width, height, colorType: 2, depth: 8, samples: Array.from({ length: width * height * 3 }, () => grey ?? Math.floor(rng.next() * 256)) });
const dataUrl = (bytes: Uint8Array, mime = 'image/png') => `data:${mime};base64,${Buffer.from(bytes).toString('base64')}`;
const LIMITS = { maxImages: 2, maxImageBytes: 4096, maxImagePixels: 4096 };

interface Served { backend: ChatBackend; server: ApiServer; model: string }
let vl: Served;
let text: Served;

beforeAll(async () => {
  const start = async (path: string) => {
    const backend = await createChatBackend(configFromObject({ model_name_or_path: path }).config, {});
    return { backend, model: backend.models()[0]!, server: await startApiServer(backend, { port: 0, apiKey: null, imageLimits: LIMITS }) };
  };
  vl = await start(dir);
  text = await start(join(import.meta.dirname, 'fixtures/tiny-chat'));
}, 120_000);
afterAll(async () => {
  for (const s of [vl, text]) {
    await s?.server.close();
    await s?.backend.close?.();
  }
});

async function post({ server, model }: Served, messages: unknown[]) {
  const res = await fetch(`${server.url}/chat/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, messages, max_tokens: 3, temperature: 0 }),
  });
  return { status: res.status, body: (await res.json()) as { error?: { message: string; param: string | null; code: string | null }; usage?: { prompt_tokens: number }; choices?: { message: { content: string } }[] } };
}
const withImage = (url: unknown, role = 'user') => [{ role, content: [{ type: 'image_url', image_url: { url } }, { type: 'text', text: 'what is this?' }] }];

describe('image_url parts on a Qwen2-VL model', () => {
  it('answers with the image in the prompt: its tokens are the grid\'s, and the answer repeats (greedy)', async () => {
    const client = new OpenAI({ baseURL: vl.server.url, apiKey: 'none' });
    const image = png(12, 10);
    const ask = () => client.chat.completions.create({
      model: vl.model, max_tokens: 4, temperature: 0,
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(image) } }, { type: 'text', text: 'what is this?' }] }],
    });
    const a = await ask();
    const plain = await client.chat.completions.create({ model: vl.model, max_tokens: 4, temperature: 0, messages: [{ role: 'user', content: 'what is this?' }] });
    // the processor's grid (preprocessor_config caps it at 256 pixels) in merged tokens, + <|vision_start|> and <|vision_end|>
    const [t, h, w] = qwen2vlGrid(12, 10, qwen2vlImageConfig({ patch_size: 2, merge_size: 2, min_pixels: 16, max_pixels: 256 }), LLAMAFACTORY_PIXEL_LIMITS);
    expect(a.usage!.prompt_tokens - plain.usage!.prompt_tokens).toBe((t * h * w) / 4 + 2);
    expect(a.usage!.completion_tokens).toBeGreaterThan(0);
    expect((await ask()).choices[0]!.message.content).toBe(a.choices[0]!.message.content);
  }, 120_000);

  it('refuses hostile image input with a clear 400 and keeps serving', async () => {
    const cases: [unknown[], RegExp, string | null][] = [
      [withImage('https://example.com/cat.png'), /remote image URLs are not fetched \(this server works offline\)/, 'messages.[0].content.[0].image_url.url'],
      [withImage('cat.png'), /expected a data: URL/, 'messages.[0].content.[0].image_url.url'],
      [withImage('data:image/png,abcd'), /must be base64-encoded/, 'messages.[0].content.[0].image_url.url'],
      [withImage('data:image/png;base64,@@@@'), /not valid base64/, 'messages.[0].content.[0].image_url.url'],
      [withImage(`data:text/plain;base64,${Buffer.from('hi').toString('base64')}`), /unsupported image type "text\/plain"/, 'messages.[0].content.[0].image_url.url'],
      [withImage(dataUrl(new TextEncoder().encode('hello, not an image'))), /not a PNG or JPEG image/, 'messages.[0].content.[0].image_url.url'],
      [withImage(dataUrl(Uint8Array.from([...'RIFF\0\0\0\0WEBPVP8 '].map((c) => c.charCodeAt(0))), 'image/webp')), /WebP images are not supported yet/, 'messages.[0].content.[0].image_url.url'],
      [withImage(`data:image/png;base64,${'A'.repeat(8000)}`), /over the limit of 4096 bytes/, 'messages.[0].content.[0].image_url.url'],
      [withImage(dataUrl(png(70, 70, 128))), /70x70 = 4900 pixels, over the limit of 4096/, 'messages.[0].content.[0].image_url.url'],
      [withImage(5), /expected a data: URL string/, 'messages.[0].content.[0].image_url.url'],
      [[{ role: 'user', content: 'hi' }, ...withImage(dataUrl(png(8, 8)), 'assistant')], /only allowed in user messages, not assistant messages/, 'messages.[1].content.[0].type'],
      [withImage(dataUrl(png(8, 8)), 'system'), /only allowed in user messages, not system messages/, 'messages.[0].content.[0].type'],
      [[...withImage(dataUrl(png(8, 8))), { role: 'assistant', content: 'a' }, ...withImage(dataUrl(png(8, 8))), ...withImage(dataUrl(png(8, 8)))], /at most 2 images/, 'messages.[3].content.[0]'],
      [[{ role: 'user', content: [{ type: 'input_audio', input_audio: {} }] }], /expected 'text' or 'image_url'/, 'messages.[0].content.[0].type'],
      [[{ role: 'user', content: 'a \uE002 b' }], /reserves for image parts/, 'messages.[0].content'],
    ];
    for (const [messages, message, param] of cases) {
      const r = await post(vl, messages);
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      expect(r.body.error!.message).toMatch(message);
      expect(r.body.error!.param).toBe(param);
    }
    // a PNG whose header reads but whose pixels do not: the engine's decoder refuses it, still a 400
    const broken = png(8, 8).slice(0, 60);
    const r = await post(vl, withImage(dataUrl(broken)));
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expect(r.body.error!.message).toMatch(/^image 1: /);
    expect((await post(vl, [{ role: 'user', content: 'still there?' }])).status).toBe(200);
  }, 120_000);
});

it('a text-only model refuses images: it has no vision tower', async () => {
  const r = await post(text, withImage(dataUrl(png(8, 8))));
  expect(r.status).toBe(400);
  expect(r.body.error!.message).toMatch(/has no vision tower/);
  expect((await post(text, [{ role: 'user', content: 'hi' }])).status).toBe(200);
}, 60_000);
