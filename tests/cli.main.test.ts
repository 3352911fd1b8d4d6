// The crucible command line, run in-process with captured output. Engine functions are injected
// test doubles (io.engines) where a command needs one: these tests cover the CLI layer only.

import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseConfig, type CrucibleConfig } from '../src/config';
import { main, COMMANDS } from '../src/cli/main';
import type { EngineImpls } from '../src/cli/engines';
import { parseArgs } from '../src/cli/args';
import type { CliIO } from '../src/cli/io';
import { ChatRequestError, type ChatBackend, type ChatRequest, type ChatResult } from '../src/engine/chat-backend';
import { DataError } from '../src/data/errors';
import { HubError } from '../src/hub/errors';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EXAMPLES = join(ROOT, 'tests/fixtures/llamafactory-examples');
const SFT = join(EXAMPLES, 'train_lora/qwen3_lora_sft.yaml');
const INFER = join(EXAMPLES, 'inference/qwen3_lora_sft.yaml');

interface Run {
  code: number;
  out: string;
  err: string;
}

function makeIO(opts: Partial<CliIO> = {}): { io: CliIO; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = {
    stdout: (t) => void out.push(t),
    stderr: (t) => void err.push(t),
    env: { HOME: '/home/test' },
    cwd: ROOT,
    stdin: Readable.from([]),
    interactive: false,
    ...opts,
  };
  return { io, out, err };
}

async function run(argv: string[], opts: Partial<CliIO> = {}): Promise<Run> {
  const { io, out, err } = makeIO(opts);
  const code = await main(argv, io);
  return { code, out: out.join(''), err: err.join('') };
}

/** Test double of an inference engine: replies "you said: <last user message>". */
class EchoBackend implements ChatBackend {
  requests: ChatRequest[] = [];
  closed = false;
  models() {
    return ['echo-model'];
  }
  async chat(req: ChatRequest, onToken: (t: string) => boolean | void): Promise<ChatResult> {
    this.requests.push(req);
    const words = `you said: ${req.messages.at(-1)!.content}`.split(/(?= )/);
    for (const w of words) onToken(w);
    return { text: words.join(''), finishReason: 'stop' as const, promptTokens: 3, completionTokens: words.length };
  }
  close() {
    this.closed = true;
  }
}

/** A model with an 8-token context: refuses messages with "too long" in them, and fills the context otherwise. */
class SmallContextBackend extends EchoBackend {
  contextLength() {
    return 8;
  }
  override async chat(req: ChatRequest, onToken: (t: string) => boolean | void) {
    if (req.messages.at(-1)!.content.includes('too long')) throw new ChatRequestError("the prompt is 9 tokens long and the model's context is 8 tokens, which leaves no room for an answer");
    const r = await super.chat(req, onToken);
    return { ...r, finishReason: 'length' as const, promptTokens: 8 - r.completionTokens };
  }
}

describe('help', () => {
  it('lists every command', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    for (const name of ['train', 'chat', 'export', 'api', 'preview', 'bench', 'env', 'export-config']) expect(r.out).toMatch(new RegExp(`^  ${name} `, 'm'));
    expect((await run([])).out).toBe(r.out);
    expect((await run(['help'])).out).toBe(r.out);
  });

  it('has help for each command', async () => {
    for (const cmd of COMMANDS) {
      const r = await run([cmd.name, '--help']);
      expect(r.code).toBe(0);
      expect(r.out.startsWith(`Usage: crucible ${cmd.name} `)).toBe(true);
      expect(r.out).toContain('-h, --help');
      expect((await run(['help', cmd.name])).out).toBe(r.out);
    }
  });

  it('lists the config keys a command reads', async () => {
    const train = await run(['train', '--keys']);
    expect(train.out).toMatch(/^  learning_rate \(float, default 5\.0e-5\)\n      Peak learning rate/m);
    expect(train.out).toContain('lora_alpha (int?, default 2*lora_rank)');
    // the sampling keys: stage ppo's rollouts
    expect(train.out).toContain('  temperature (float, default 0.95)');
    expect(train.out).not.toContain('  skip_special_tokens ');
    const chat = await run(['chat', '--keys']);
    expect(chat.out).toContain('  temperature (float, default 0.95)');
    expect(chat.out).toContain('  max_new_tokens (int, default 1024)');
    expect(chat.out).not.toContain('  learning_rate ');
  });

  it('prints the version', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect((await run(['--version'])).out).toBe(`${pkg.version}\n`);
  });
});

describe('errors', () => {
  it('exit 1 with one line, no stack trace', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['trian'], /^error: unknown command "trian" \(did you mean "train"\?\); see crucible --help\n$/],
      [['train', 'nope.yaml'], /^error: cannot read config nope\.yaml: no such file\n$/],
      [['train', 'run.txt'], /^error: expected a config file \(\.yaml, \.yml or \.json\), got "run\.txt"\n$/],
      [['train', SFT, '--lerning_rate', '1'], /^error: unknown option --lerning_rate for crucible train \(did you mean --learning_rate\?\)/],
      [['env', '--port', '1'], /^error: unknown option --port for crucible env/],
      [['chat', '-p'], /^error: option --prompt needs a value\n$/],
      [['train', 'learning_rate=abc'], /^error: override learning_rate=abc: learning_rate: expected a float \(e\.g\. 1\.0e-4\), got "abc"\n$/],
      [['train', 'model_name_or_path=m'], /^error: nothing to do: set do_train: true/],
    ];
    for (const [argv, re] of cases) {
      const r = await run(argv);
      expect(r.code, argv.join(' ')).toBe(1);
      expect(r.err, argv.join(' ')).toMatch(re);
      expect(r.err.trim().split('\n'), argv.join(' ')).toHaveLength(1);
    }
  });

  it("prints Crucible's own errors as the message alone: no class name, no debug hint", async () => {
    const thrown = [
      new DataError('no `dataset` given'),
      new HubError('network', 'dataset org/d file list: cannot reach the Hub at http://h'),
      new Error('resume_from_checkpoint: true, but out has no complete checkpoint'),
      new Error('DataError: dataset "x": missing messages list'),
    ];
    for (const e of thrown) {
      const r = await run(['train', SFT], { engines: { runTraining: async () => Promise.reject(e) } });
      expect(r.code).toBe(1);
      const line = r.err.split('\n').find((l) => l.startsWith('error:'));
      expect(line).toBe(`error: ${e.message.replace(/^DataError: /, '')}`);
    }
  });

  it('names unexpected errors and shows the stack only with CRUCIBLE_DEBUG=1', async () => {
    const engines: Partial<EngineImpls> = {
      runTraining: async () => {
        throw new TypeError('cannot read properties of undefined');
      },
    };
    const quiet = await run(['train', SFT], { engines });
    expect(quiet.code).toBe(1);
    expect(quiet.err.split('\n').filter((l) => l.startsWith('error:'))).toEqual([
      'error: TypeError: cannot read properties of undefined (CRUCIBLE_DEBUG=1 shows where)',
    ]);
    expect(quiet.err).not.toMatch(/^\s+at /m);
    const loud = await run(['train', SFT], { engines, env: { CRUCIBLE_DEBUG: '1' } });
    expect(loud.err).toMatch(/^\s+at /m);
  });
});

describe('argument parsing', () => {
  it('takes overrides as key=value and as --key value, and flags', () => {
    const a = parseArgs(['run.yaml', 'lora_rank=16', '--learning_rate', '1e-4', '--do_train', '--bf16=true', '-p', 'hi', '--', '--x'], {
      name: 'chat',
      config: true,
      flags: [{ name: 'prompt', short: 'p', value: 'string', help: '' }],
    });
    expect(a.positional).toEqual(['run.yaml', '--x']);
    expect(a.overrides).toEqual(['lora_rank=16', 'learning_rate=1e-4', 'do_train=true', 'bf16=true']);
    expect(a.flags.prompt).toBe('hi');
  });
});

describe('train', () => {
  it('hands the config to the training engine and prints its logs', async () => {
    let seen: CrucibleConfig | null = null;
    const runTraining: EngineImpls['runTraining'] = async (config, hooks) => {
      seen = config;
      hooks.onStatus?.('tokenizing identity');
      hooks.onLog?.({ current_steps: 10, total_steps: 30, loss: 1.23456, lr: 9.5e-5, epoch: 0.33, percentage: 33.3, grad_norm: 0.5, tokens_per_second: 1234.4, elapsed_time: 12, remaining_time: 24 });
      hooks.onCheckpoint?.('out/checkpoint-10', 10);
      return { outputDir: config.output_dir, globalStep: 30, totalSteps: 30, interrupted: false, checkpoint: 'out/checkpoint-30', trainLoss: 1.1 };
    };
    const r = await run(['train', SFT, 'learning_rate=2.0e-4', '--num_train_epochs', '1', 'output_dir=out'], { engines: { runTraining }, signal: new AbortController().signal });
    expect(r.code).toBe(0);
    expect(seen).toMatchObject({ learning_rate: 2e-4, num_train_epochs: 1, output_dir: 'out', dataset: ['identity', 'alpaca_en_demo'] });
    expect(r.out).toBe('step 10/30  loss 1.2346  grad_norm 0.500  lr 9.50e-5  epoch 0.33  1234 tok/s  0:12 elapsed, 0:24 left\n');
    expect(seen).toMatchObject({ bf16: true }); // the example's bf16 reaches the engine (the f16 tier), no longer a note
    expect(r.err).not.toContain('bf16');
    expect(r.err).toContain('train: sft · LoRA r=8 alpha=16 · Qwen/Qwen3-4B-Instruct-2507 · identity, alpaca_en_demo -> out\n');
    expect(r.err).toContain('tokenizing identity\n');
    expect(r.err).toContain('saved checkpoint out/checkpoint-10 (step 10)\n');
    expect(r.err).toContain('done: 30 steps, train loss 1.1000; saved to out\n');
  });

  it('passes the interrupt signal and exits 130 when stopped', async () => {
    const ac = new AbortController();
    const runTraining: EngineImpls['runTraining'] = async (config, hooks) => {
      ac.abort();
      expect(hooks.signal?.aborted).toBe(true);
      return { outputDir: config.output_dir, globalStep: 3, totalSteps: 30, interrupted: true, checkpoint: 'out/checkpoint-3' };
    };
    const r = await run(['train', SFT], { engines: { runTraining }, signal: ac.signal });
    expect(r.code).toBe(130);
    expect(r.err).toContain('interrupted at step 3/30; checkpoint out/checkpoint-3: rerun the same command to resume');
  });
});

describe('chat', () => {
  it('answers one prompt with -p, using the config sampling settings', async () => {
    const backend = new EchoBackend();
    const r = await run(['chat', INFER, 'temperature=0.2', 'do_sample=true', 'max_new_tokens=64', '-p', 'hello there', '--system', 'be nice'], {
      engines: { createChatBackend: async () => backend },
    });
    expect(r.code).toBe(0);
    expect(r.out).toBe('you said: hello there\n');
    expect(backend.requests[0]).toMatchObject({
      model: 'echo-model',
      maxTokens: 64,
      temperature: 0.2,
      topP: 0.7,
      topK: 50,
      messages: [
        { role: 'system', content: 'be nice' },
        { role: 'user', content: 'hello there' },
      ],
    });
    expect(backend.closed).toBe(true);
  });

  it('keeps a conversation, forgets it on "clear", quits on "exit"', async () => {
    const backend = new EchoBackend();
    const r = await run(['chat', INFER, 'do_sample=false'], {
      engines: { createChatBackend: async () => backend },
      stdin: Readable.from(['first\n', 'second\n', 'clear\n', 'third\n', 'exit\n', 'never\n']),
    });
    expect(r.code).toBe(0);
    expect(r.out).toContain('Assistant: you said: first\n');
    expect(r.out).toContain('Assistant: you said: second\n');
    expect(r.out).toContain('History cleared.');
    expect(backend.requests.map((q) => q.messages.map((m) => m.content))).toEqual([
      ['first'],
      ['first', 'you said: first', 'second'],
      ['third'],
    ]);
    expect(backend.requests[0]!.temperature).toBe(0);
  });

  it("says when max_new_tokens is more than the model's context, and when an answer ran into its end", async () => {
    const r = await run(['chat', INFER, '-p', 'hi'], { engines: { createChatBackend: async () => new SmallContextBackend() } });
    expect(r.code).toBe(0);
    expect(r.out).toBe('you said: hi\n');
    expect(r.err).toContain("note: max_new_tokens=1024 is more than the model's context of 8 tokens; each answer ends where the context does\n");
    expect(r.err).toContain("(the answer stopped at the end of the model's context)\n");
    const fits = await run(['chat', INFER, 'max_new_tokens=8', '-p', 'hi'], { engines: { createChatBackend: async () => new EchoBackend() } });
    expect(fits.err).not.toContain('max_new_tokens=');
  });

  it('reports messages that do not fit as one error line with -p, and goes on in a conversation', async () => {
    const one = await run(['chat', INFER, '-p', 'too long'], { engines: { createChatBackend: async () => new SmallContextBackend() } });
    expect(one.code).toBe(1);
    expect(one.err.split('\n').filter((l) => l.startsWith('error'))).toEqual(["error: the prompt is 9 tokens long and the model's context is 8 tokens, which leaves no room for an answer"]);
    expect(one.err).not.toMatch(/ChatRequestError|at /);

    const backend = new SmallContextBackend();
    const r = await run(['chat', INFER], { engines: { createChatBackend: async () => backend }, stdin: Readable.from(['a\n', 'too long\n', 'b\n', 'exit\n']) });
    expect(r.code).toBe(0);
    expect(r.err).toContain('leaves no room for an answer; type "clear" to start a new conversation\n');
    expect(r.out).toContain('Assistant: you said: b\n');
    // the refused message is not kept in the conversation
    expect(backend.requests.at(-1)!.messages.map((m) => m.content)).toEqual(['a', 'you said: a', 'b']);
  });
});

describe('api', () => {
  it('serves the engine over HTTP on API_HOST/API_PORT until stopped', async () => {
    const backend = new EchoBackend();
    const ac = new AbortController();
    const { io, err } = makeIO({
      engines: { createChatBackend: async () => backend },
      env: { API_HOST: '127.0.0.1', API_PORT: '0', API_KEY: 'k' },
      signal: ac.signal,
    });
    const done = main(['api', INFER, 'max_new_tokens=99'], io);
    let url = '';
    for (let i = 0; i < 200 && !url; i++) {
      url = /Crucible API on (\S+)/.exec(err.join(''))?.[1] ?? '';
      if (!url) await new Promise((r) => setTimeout(r, 10));
    }
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    expect(err.join('')).toContain('API key required');
    const res = await fetch(`${url}/chat/completions`, {
      method: 'POST',
      headers: { Authorization: 'Bearer k', 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'echo-model', messages: [{ role: 'user', content: 'ping' }] }),
    });
    const body = (await res.json()) as { choices: Array<{ message: { content: string } }> };
    expect(body.choices[0]!.message.content).toBe('you said: ping');
    expect(backend.requests[0]!.maxTokens).toBe(99);
    ac.abort();
    expect(await done).toBe(0);
    expect(backend.closed).toBe(true);
    expect(err.join('')).toMatch(/POST \/v1\/chat\/completions 200/);
  });

  /** Starts `crucible api` with these arguments; returns its URL, its stderr so far and a stop function. */
  async function startApi(argv: string[], env: Record<string, string> = {}) {
    const ac = new AbortController();
    const { io, err } = makeIO({ engines: { createChatBackend: async () => new EchoBackend() }, env: { API_PORT: '0', ...env }, signal: ac.signal });
    const done = main(['api', INFER, ...argv], io);
    let url = '';
    for (let i = 0; i < 200 && !url; i++) {
      url = /Crucible API on (\S+)/.exec(err.join(''))?.[1] ?? '';
      if (!url) await new Promise((r) => setTimeout(r, 10));
    }
    return {
      url,
      err: () => err.join(''),
      stop: async () => {
        ac.abort();
        expect(await done).toBe(0);
      },
    };
  }

  it('takes the key, allowed origins and host names from flags', async () => {
    const api = await startApi(['--api-key', 'flag-key', '--cors-origin', 'http://a.example,http://b.example', '--cors-origin=http://c.example', '--allowed-host', 'api.example']);
    const models = (headers: Record<string, string>) => fetch(`${api.url}/models`, { headers });
    expect((await models({})).status).toBe(401);
    expect((await models({ Authorization: 'Bearer flag-key' })).status).toBe(200);
    for (const origin of ['http://a.example', 'http://b.example', 'http://c.example']) {
      const r = await models({ Authorization: 'Bearer flag-key', Origin: origin });
      expect(r.headers.get('access-control-allow-origin'), origin).toBe(origin);
    }
    expect((await models({ Authorization: 'Bearer flag-key', Origin: 'http://d.example' })).status).toBe(403);
    expect(api.err()).toContain('API key required');
    await api.stop();
  });

  it('warns when it listens beyond this machine without an API key', async () => {
    const open = await startApi(['--host', '0.0.0.0']);
    expect(open.err()).toContain('warning: listening on 0.0.0.0 without an API key: anyone who can reach this machine can use the model; set --api-key or API_KEY');
    await open.stop();
    const keyed = await startApi(['--host', '0.0.0.0'], { API_KEY: 'k' });
    const local = await startApi([]);
    expect(keyed.err()).not.toContain('warning');
    expect(local.err()).not.toContain('warning');
    await keyed.stop();
    await local.stop();
  });

  it('rejects a bad API_PORT', async () => {
    const r = await run(['api', INFER], { env: { API_PORT: 'eighty' }, engines: { createChatBackend: async () => new EchoBackend() } });
    expect(r.code).toBe(1);
    expect(r.err.split('\n').filter((l) => l.startsWith('error'))).toEqual(['error: API_PORT must be a port number, got "eighty"']);
  });
});

describe('train progress', () => {
  it('draws a bar of the steps done', async () => {
    const { progressBar } = await import('../src/cli/train');
    expect(progressBar(0, 8)).toBe('[....................]   0%');
    expect(progressBar(4, 8)).toBe('[##########..........]  50%');
    expect(progressBar(8, 8)).toBe('[####################] 100%');
  });
});

describe('export, preview, bench', () => {
  it('pass their options to the engine and print the result', async () => {
    const exp = await run(['export', join(EXAMPLES, 'merge_lora/qwen3_lora_sft.yaml')], {
      engines: { exportModel: async (c) => ({ exportDir: c.export_dir!, files: ['model-00001-of-00001.safetensors', 'config.json'] }) },
    });
    expect(exp.code).toBe(0);
    expect(exp.out).toBe('model-00001-of-00001.safetensors\nconfig.json\n');

    let previewOpts: unknown;
    const item = { text: 'Q: hi\nA: hello', segments: [{ text: 'Q: hi\n', learned: false }, { text: 'A: hello', learned: true }], input_ids: [1, 2, 3], labels: [-100, 2, 3] };
    const prev = await run(['preview', SFT, '-n', '2', '--offset', '5'], {
      engines: {
        previewDataset: async (_c, o) => {
          previewOpts = { count: o.count, offset: o.offset };
          return { examples: [item], total: 6 };
        },
      },
    });
    expect(prev.code).toBe(0);
    expect(previewOpts).toEqual({ count: 2, offset: 5 });
    expect(prev.out).toBe('--- #5\nQ: hi\n⟦A: hello⟧\n[3 tokens, 2 learned]\ninput_ids: [1,2,3]\nlabels:    [-100,2,3]\n');

    const past = await run(['preview', SFT, '--offset', '6'], { engines: { previewDataset: async () => ({ examples: [], total: 6 }) } });
    expect(past.code).toBe(1);
    expect(past.out).toBe('');
    expect(past.err).toMatch(/\nerror: --offset 6 is past the end: the dataset has 6 examples \(0 to 5\)\n$/);

    let steps = 0;
    const bench = await run(['bench', SFT, '--steps', '3', '--json'], {
      signal: new AbortController().signal,
      engines: {
        benchmarkTraining: async (_c, o) => {
          steps = o.steps;
          return { device: 'gpu', model: 'm', steps: o.steps, tokensPerSecond: 1000, stepSeconds: 0.5, peakBytes: 1 << 30 };
        },
      },
    });
    expect(bench.code).toBe(0);
    expect(steps).toBe(3);
    expect(JSON.parse(bench.out)).toMatchObject({ tokensPerSecond: 1000, steps: 3 });
    const text = await run(['bench', SFT], {
      signal: new AbortController().signal,
      engines: { benchmarkTraining: async (_c, o) => ({ device: 'gpu', model: 'm', steps: o.steps, tokensPerSecond: 1000, stepSeconds: 0.5, peakBytes: 1 << 30, recompute: false }) },
    });
    expect(text.out).toMatch(/^recomputation +off$/m);
  });
});

describe('export-config', () => {
  it('prints a LLaMA-Factory YAML that loads back to the same config', async () => {
    const r = await run(['export-config', SFT, '--to', 'llamafactory', 'learning_rate=3.0e-5']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^# LLaMA-Factory run exported by Crucible from /);
    expect(r.out).toContain('learning_rate: 3.0e-5\n');
    const original = parseConfig(readFileSync(SFT, 'utf8'), ['learning_rate=3.0e-5']).config;
    expect(parseConfig(r.out).config).toEqual(original);
  });

  it('writes a self-contained run for datasets given as files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crucible-export-'));
    mkdirSync(join(dir, 'lfdata'));
    writeFileSync(join(dir, 'lfdata/dataset_info.json'), JSON.stringify({ identity: { file_name: 'identity.json' }, other: { file_name: 'x.json' } }));
    writeFileSync(join(dir, 'lfdata/identity.json'), JSON.stringify([{ instruction: 'hi', input: '', output: 'hello' }]));
    writeFileSync(
      join(dir, 'lfdata/chats.jsonl'),
      `${JSON.stringify({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] })}\n`,
    );
    writeFileSync(join(dir, 'run.yaml'), 'model_name_or_path: m\ndo_train: true\ndataset: chats.jsonl,identity\ndataset_dir: lfdata\nbf16: true\n');

    const r = await run(['export-config', 'run.yaml', '--to', 'llamafactory', '--out', 'bundle'], { cwd: dir });
    expect(r.err).toContain('wrote bundle/run.yaml, bundle/dataset_info.json, bundle/chats.jsonl, bundle/identity.json\n');
    expect(r.code).toBe(0);
    const info = JSON.parse(readFileSync(join(dir, 'bundle/dataset_info.json'), 'utf8'));
    expect(info).toEqual({
      chats: {
        file_name: 'chats.jsonl',
        formatting: 'sharegpt',
        columns: { messages: 'messages' },
        tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant' },
      },
      identity: { file_name: 'identity.json' },
    });
    expect(readFileSync(join(dir, 'bundle/chats.jsonl'), 'utf8')).toBe(readFileSync(join(dir, 'lfdata/chats.jsonl'), 'utf8'));
    expect(existsSync(join(dir, 'bundle/identity.json'))).toBe(true);
    const back = parseConfig(readFileSync(join(dir, 'bundle/run.yaml'), 'utf8')).config;
    expect(back).toMatchObject({ dataset: ['chats', 'identity'], dataset_dir: 'bundle', bf16: true });

    const again = await run(['export-config', 'run.yaml', '--to', 'llamafactory', '--out', 'bundle'], { cwd: dir });
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/^error: bundle\/run\.yaml already exists \(use --force to overwrite\)\n$/m);
    expect((await run(['export-config', 'run.yaml', '--to', 'llamafactory', '--out', 'bundle', '--force'], { cwd: dir })).code).toBe(0);

    const noOut = await run(['export-config', 'run.yaml', '--to', 'llamafactory'], { cwd: dir });
    expect(noOut.code).toBe(1);
    expect(noOut.err).toMatch(/^error: datasets given as files \(chats\.jsonl\) need --out DIR/m);
  });

  it('needs --to llamafactory', async () => {
    expect((await run(['export-config', SFT])).err).toBe('error: export-config needs --to llamafactory\n');
    expect((await run(['export-config', SFT, '--to', 'axolotl'])).err).toBe('error: unknown target "axolotl" for --to (supported: llamafactory)\n');
  });
});

describe('env', () => {
  it('reports versions, the GPU (or why there is none) and Hugging Face settings as JSON', async () => {
    const r = await run(['env', '--json', '--software'], {
      env: { HOME: '/home/u', HF_ENDPOINT: 'https://mirror.example/', HF_TOKEN: 'hf_secret', HF_HUB_OFFLINE: '1' },
    });
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out);
    expect(report.crucible.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(report.node.version).toBe(process.versions.node);
    expect(report.dawn.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(report.hub).toEqual({
      HF_HOME: '/home/u/.cache/huggingface',
      HF_HOME_source: 'default',
      HF_ENDPOINT: 'https://mirror.example',
      HF_ENDPOINT_source: 'env',
      HF_HUB_OFFLINE: true,
      HF_TOKEN: 'set',
      tokenFile: null,
      cacheDir: '/home/u/.cache/huggingface/hub',
    });
    expect(r.out).not.toContain('hf_secret');
    if (report.gpu) {
      expect(typeof report.gpu.adapter).toBe('string');
      expect(typeof report.gpu.f16).toBe('boolean');
      expect(report.gpu.limits.maxBufferSize).toBeGreaterThan(0);
    } else expect(report.gpuError).toMatch(/adapter/);
  });

  it('prints the same as text', async () => {
    const r = await run(['env', '--software'], { env: { HOME: '/home/u', HF_HOME: '/data/hf' } });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Crucible\s+\d/m);
    expect(r.out).toMatch(/^Dawn\s+npm webgpu \d/m);
    expect(r.out).toMatch(/^GPU\s+\S/m);
    expect(r.out).toMatch(/^HF_HOME\s+\/data\/hf$/m);
    expect(r.out).toMatch(/^HF_ENDPOINT\s+https:\/\/huggingface\.co \(default\)$/m);
    expect(r.out).toMatch(/^HF_TOKEN\s+not set$/m);
  });
});

describe('eval', () => {
  it('passes the benchmark keys to the engine and prints the category accuracies', async () => {
    let seen: Record<string, unknown> = {};
    const runChoiceEval = async (c: Record<string, unknown>) => {
      seen = c;
      return { subjects: [], categories: [], scoreInfo: '        Average: 50.00\n           STEM: 25.00' };
    };
    const r = await run(['eval', 'model_name_or_path=m', 'task=mmlu_test', 'n_shot=0', 'lang=zh', 'template=qwen3'], { engines: { runChoiceEval: runChoiceEval as never } });
    expect(r.code).toBe(0);
    expect(r.out).toBe('        Average: 50.00\n           STEM: 25.00\n');
    expect(seen).toMatchObject({ task: 'mmlu_test', task_dir: 'evaluation', n_shot: 0, lang: 'zh', batch_size: 4, save_dir: null, template: 'qwen3' });
  });

  it('needs a task, and lists its keys', async () => {
    const r = await run(['eval', 'model_name_or_path=m']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/eval needs a task/);
    const keys = await run(['eval', '--keys']);
    expect(keys.out).toMatch(/^  n_shot \(int, default 5\)/m);
    expect(keys.out).not.toMatch(/^  learning_rate /m);
  });
});

