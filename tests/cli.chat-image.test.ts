// `crucible chat --image PATH` and the interactive `/image PATH` on a tiny random Qwen2-VL
// (tests/helpers/qwen2vl.ts); a text-only model and a missing file refuse clearly.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { expect, it } from 'vitest';
import { main } from '../src/cli/main';
import type { CliIO } from '../src/cli/io';
import { makeRng } from './helpers/check';
import { encodePng } from './helpers/png-encode';
import { qwen2vlConfig, synthesizeQwen2VL, writeQwen2VL } from './helpers/qwen2vl';

const rng = makeRng();
const config = qwen2vlConfig(true);
const model = writeQwen2VL(synthesizeQwen2VL(rng, config), config, true);
const work = mkdtempSync(join(tmpdir(), 'chat-image-'));
writeFileSync(join(work, 'cat.png'), encodePng({ width: 9, height: 7, colorType: 2, depth: 8, samples: Array.from({ length: 9 * 7 * 3 }, () => Math.floor(rng.next() * 256)) }));

async function chat(args: string[], stdin: string[] = []) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: {}, cwd: work, stdin: Readable.from(stdin), interactive: false };
  const code = await main(['chat', ...args], io);
  return { code, out: out.join(''), err: err.join('') };
}

it('answers -p about an --image, and the REPL attaches /image to the next message', async () => {
  const one = await chat([`model_name_or_path=${model}`, 'do_sample=false', 'max_new_tokens=3', '--image', 'cat.png', '-p', 'what is this?']);
  expect(one.err).not.toMatch(/error/i);
  expect(one.code).toBe(0);
  // a named template writes Qwen2-VL's image tokens where the image is, as LLaMA-Factory's plugin does
  const named = await chat([`model_name_or_path=${model}`, 'template=qwen', 'do_sample=false', 'max_new_tokens=3', '--image', 'cat.png', '-p', 'what is this?']);
  expect(named.err).not.toMatch(/error/i);
  expect(named.code).toBe(0);
  const repl = await chat([`model_name_or_path=${model}`, 'do_sample=false', 'max_new_tokens=3'], ['/image cat.png\n', 'what is this?\n', '/image nowhere.png\n', 'exit\n']);
  expect(repl.code).toBe(0);
  expect(repl.out).toContain('1 image(s) attached to your next message.');
  expect(repl.out).toContain('Assistant: ');
  expect(repl.err).toMatch(/cannot read image nowhere\.png/);
}, 120_000);

it('refuses an image for a text-only model, and a missing image file', async () => {
  const demo = join(import.meta.dirname, '..', 'public/demo/model');
  const text = await chat([`model_name_or_path=${demo}`, 'max_new_tokens=3', '--image', 'cat.png', '-p', 'hi']);
  expect(text.code).not.toBe(0);
  expect(text.err).toMatch(/has no vision tower/);
  const missing = await chat([`model_name_or_path=${model}`, '--image', 'nowhere.png', '-p', 'hi']);
  expect(missing.code).not.toBe(0);
  expect(missing.err).toMatch(/cannot read image nowhere\.png/);
}, 120_000);
