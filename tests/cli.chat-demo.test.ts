// `crucible chat` on the embedded demo model with its defaults: max_new_tokens (1024) is more than
// the model's 256-token context, and the answer ends where the context does instead of failing.
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { expect, it } from 'vitest';
import { main } from '../src/cli/main';
import type { CliIO } from '../src/cli/io';

const ROOT = join(import.meta.dirname, '..');

it('answers -p with the default max_new_tokens, saying the context bounds the answer', async () => {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: {}, cwd: ROOT, stdin: Readable.from([]), interactive: false };
  // a prompt that leaves a few tokens of the context, so that the answer reaches its end quickly
  const code = await main(['chat', `model_name_or_path=${join(ROOT, 'public/demo/model')}`, 'do_sample=false', '-p', 'hello world '.repeat(60)], io);
  expect(err.join('')).not.toContain('error');
  expect(code).toBe(0);
  expect(err.join('')).toContain("note: max_new_tokens=1024 is more than the model's context of 256 tokens; each answer ends where the context does\n");
  expect(err.join('')).toContain("(the answer stopped at the end of the model's context)\n");
  expect(out.join('').trim().length).toBeGreaterThan(0);
}, 120_000);
