// `crucible chat <config.yaml>`: talk to a model (+ adapter) in the terminal, as
// `llamafactory-cli chat`. `-p TEXT` answers one prompt and exits (for scripts).

import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { resolve } from 'node:path';
import { IMAGE_MARK } from '../data/content-text';
import type { CrucibleConfig } from '../config';
import type { RequestDefaults } from '../server/protocol';
import { ChatRequestError, type ChatBackend, type ChatMessage, type ChatRequest, type ChatResult } from '../engine/chat-backend';
import { commandConfig, flagList, flagString, type CommandDef } from './args';
import { loadEngine } from './engines';
import { CliError, type CliIO } from './io';
import { keysHelp } from './keys';

/** Sampling settings of a config (do_sample: false means greedy). */
export function generationDefaults(c: CrucibleConfig): RequestDefaults {
  return {
    maxTokens: c.max_new_tokens,
    temperature: c.do_sample ? c.temperature : 0,
    topP: c.top_p,
    topK: c.top_k,
    repetitionPenalty: c.repetition_penalty,
    numBeams: c.num_beams,
    lengthPenalty: c.length_penalty,
  };
}

/** A note when max_new_tokens is more than the model's context holds (answers are bounded by the context). */
export function contextNotice(c: CrucibleConfig, backend: ChatBackend): string | null {
  const context = backend.contextLength?.();
  if (context === undefined || c.max_new_tokens <= context) return null;
  return `note: max_new_tokens=${c.max_new_tokens} is more than the model's context of ${context} tokens; each answer ends where the context does`;
}

/** True when an answer stopped because prompt and answer filled the model's context. */
function filledContext(r: ChatResult, backend: ChatBackend): boolean {
  const context = backend.contextLength?.();
  return r.finishReason === 'length' && context !== undefined && r.promptTokens + r.completionTokens >= context;
}

function request(model: string, messages: ChatMessage[], d: RequestDefaults, seed: number | null): ChatRequest {
  return {
    model,
    messages,
    maxTokens: d.maxTokens,
    temperature: d.temperature,
    topP: d.topP,
    topK: d.topK,
    repetitionPenalty: d.repetitionPenalty,
    ...(d.numBeams !== undefined ? { numBeams: d.numBeams } : {}),
    ...(d.lengthPenalty !== undefined ? { lengthPenalty: d.lengthPenalty } : {}),
    presencePenalty: 0,
    frequencyPenalty: 0,
    seed,
    stop: [],
  };
}

/** Streams one answer to stdout; resolves with its text and whether it stopped at the end of the context. */
async function reply(backend: ChatBackend, req: ChatRequest, io: CliIO, signal: AbortSignal): Promise<{ text: string; filled: boolean }> {
  let text = '';
  let filled = false;
  try {
    const r = await backend.chat(
      req,
      (piece) => {
        text += piece;
        io.stdout(piece);
      },
      signal,
    );
    if (text === '' && r.text) {
      text = r.text;
      io.stdout(text);
    }
    filled = filledContext(r, backend);
  } catch (e) {
    if (!signal.aborted) throw e;
  }
  io.stdout('\n');
  return { text, filled };
}

/** Image files read for the next user message. */
async function readImages(paths: readonly string[], io: CliIO): Promise<Uint8Array[]> {
  return Promise.all(paths.map(async (p) => {
    try {
      return new Uint8Array(await readFile(resolve(io.cwd, p)));
    } catch (e) {
      throw new CliError(`cannot read image ${p}: ${(e as Error).message}`);
    }
  }));
}

/** A user message with its images first (as LLaMA-Factory places images the text does not mark). */
function userMessage(text: string, images: Uint8Array[]): ChatMessage {
  return { role: 'user', content: IMAGE_MARK.repeat(images.length) + text, ...(images.length ? { images } : {}) };
}

async function repl(backend: ChatBackend, model: string, d: RequestDefaults, system: string | null, seed: number | null, io: CliIO, images: Uint8Array[]): Promise<void> {
  const rl = createInterface({ input: io.stdin, terminal: io.interactive, output: io.interactive ? process.stdout : undefined });
  let generation: AbortController | null = null;
  let history: ChatMessage[] = [];
  const closed = new Promise<void>((r) => rl.once('close', r));
  rl.on('SIGINT', () => {
    if (generation) generation.abort(new Error('interrupted'));
    else rl.close();
  });
  io.signal?.addEventListener('abort', () => {
    generation?.abort(io.signal!.reason);
    rl.close();
  });
  io.stdout('Welcome to Crucible chat. Type "clear" to forget the history, "exit" to quit, "/image PATH" to attach an image to your next message.\n');
  let pending = images;
  const lines = rl[Symbol.asyncIterator]();
  while (true) {
    io.stdout('\nUser: ');
    const next = await Promise.race([lines.next(), closed.then(() => ({ done: true, value: undefined }) as const)]);
    if (next.done) break;
    const line = String(next.value).trim();
    if (line === '') continue;
    if (line === 'exit') break;
    if (line === 'clear') {
      history = [];
      io.stdout('History cleared.\n');
      continue;
    }
    if (line.startsWith('/image ')) {
      try {
        pending = [...pending, ...(await readImages([line.slice(7).trim()], io))];
        io.stdout(`${pending.length} image(s) attached to your next message.\n`);
      } catch (e) {
        if (!(e instanceof CliError)) throw e;
        io.stderr(`${e.message}\n`);
      }
      continue;
    }
    history.push(userMessage(line, pending));
    pending = [];
    io.stdout('Assistant: ');
    generation = new AbortController();
    const messages = system ? [{ role: 'system' as const, content: system }, ...history] : [...history];
    try {
      const { text, filled } = await reply(backend, request(model, messages, d, seed), io, generation.signal);
      history.push({ role: 'assistant', content: text });
      if (filled) io.stderr('(the answer stopped at the end of the model\'s context; type "clear" to start a new conversation)\n');
    } catch (e) {
      if (!(e instanceof ChatRequestError)) throw e;
      history.pop();
      io.stdout('\n');
      io.stderr(`${e.message}; type "clear" to start a new conversation\n`);
    } finally {
      generation = null;
    }
  }
  rl.close();
  io.stdout('\n');
}

export const chatCommand: CommandDef = {
  name: 'chat',
  summary: 'Chat with a model (+ LoRA adapter) in the terminal',
  usage: '<config.yaml> [key=value ...] [-p TEXT] [--system TEXT]',
  details: [
    'Reads LLaMA-Factory inference YAMLs (model_name_or_path, adapter_name_or_path, template, sampling keys).',
    'Ctrl-C stops the current answer; "exit" or Ctrl-D quits; "/image PATH" attaches an image to the next message.',
  ],
  flags: [
    { name: 'prompt', short: 'p', value: 'string', placeholder: 'TEXT', help: 'answer this one prompt and exit' },
    { name: 'system', value: 'string', placeholder: 'TEXT', help: 'system message for the conversation' },
    { name: 'image', value: 'string', placeholder: 'PATH', repeatable: true, help: 'attach this PNG/JPEG image to the next user message (vision-language models; repeat for several)' },
    { name: 'keys', help: 'list the config keys chat reads, with defaults' },
  ],
  config: true,
  async run(args, io) {
    if (args.flags.keys) {
      io.stdout(keysHelp('chat'));
      return 0;
    }
    const config = await commandConfig(args, io, 'chat');
    const images = await readImages(flagList(args, 'image'), io);
    const createChatBackend = await loadEngine('createChatBackend', 'chat', io);
    const backend = await createChatBackend(config, { onStatus: (m) => io.stderr(`${m}\n`), signal: io.signal });
    try {
      const model = backend.models()[0];
      if (!model) throw new CliError('the inference engine serves no model');
      const d = generationDefaults(config);
      const notice = contextNotice(config, backend);
      if (notice) io.stderr(`${notice}\n`);
      const system = flagString(args, 'system') ?? null;
      const prompt = flagString(args, 'prompt');
      if (prompt !== undefined) {
        const messages: ChatMessage[] = [...(system ? [{ role: 'system' as const, content: system }] : []), userMessage(prompt, images)];
        const ac = new AbortController();
        io.signal?.addEventListener('abort', () => ac.abort(io.signal!.reason), { once: true });
        try {
          const { filled } = await reply(backend, request(model, messages, d, config.seed), io, ac.signal);
          if (filled) io.stderr("(the answer stopped at the end of the model's context)\n");
        } catch (e) {
          throw e instanceof ChatRequestError ? new CliError(e.message) : e;
        }
        return 0;
      }
      await repl(backend, model, d, system, null, io, images);
      return 0;
    } finally {
      await backend.close?.();
    }
  },
};
