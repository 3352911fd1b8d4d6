// `crucible chat` and `crucible api`: a model (+ adapter) loaded for generation in Node, behind the
// ChatBackend interface the terminal chat and the OpenAI-compatible server share.

import { existsSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import type { CrucibleConfig } from '../config';
import type { RunHooks } from './jobs';
import { ImageError, type Message } from '../data';
import { resolveModelFiles } from './node-model';
import { ContextOverflowError } from './prompt-fit';
import { Session } from './session';
import { nodeGpu } from '../gpu/node';
import { ChatRequestError, type ChatBackend, type ChatMessage } from './chat-backend';

export async function createChatBackend(config: CrucibleConfig, hooks: RunHooks): Promise<ChatBackend> {
  const status = hooks.onStatus ?? (() => {});
  if (!config.model_name_or_path) throw new Error('model_name_or_path is required');
  const gpu = await nodeGpu({ warn: (m) => status(`warning: ${m}`) });
  const files = await resolveModelFiles(config.model_name_or_path, { onStatus: status, revision: config.model_revision, cacheDir: config.cache_dir });
  const session = await Session.open(gpu, files, { quantizationBit: (config.quantization_bit as 4 | 8 | null) ?? null });
  const adapters = config.adapter_name_or_path ?? [];
  if (adapters.length > 1) throw new Error(`adapter_name_or_path: chatting with ${adapters.length} adapters at once is not supported; merge them first`);
  if (adapters[0]) {
    const dir = await resolveModelFiles(adapters[0], { onStatus: status });
    await session.loadAdapter(await dir.readText('adapter_config.json'), await dir.open('adapter_model.safetensors'));
    status(`adapter: ${adapters[0]}`);
  }
  const name = servedName(adapters[0] ?? config.model_name_or_path);
  return {
    models: () => [name],
    contextLength: () => session.contextLength,
    precheck(req) {
      const { system, messages, images } = toConversation(req.messages);
      if (images.length && !session.model.spec.vision) {
        throw new ChatRequestError(`the model ${name} has no vision tower: it cannot take images (a vision-language model such as Qwen2-VL can)`, 'messages', 'invalid_image');
      }
      try {
        session.checkMessageLength(messages, system);
      } catch (e) {
        throw requestError(e);
      }
    },
    async chat(req, onToken, signal) {
      const { system, messages, images } = toConversation(req.messages);
      if (req.presencePenalty || req.frequencyPenalty) {
        throw new ChatRequestError('presence_penalty and frequency_penalty are not supported; use repetition_penalty', req.presencePenalty ? 'presence_penalty' : 'frequency_penalty', 'unsupported_parameter');
      }
      try {
        return await session.chat(messages, {
          template: config.template,
          templateOptions: { ...(config.enable_thinking != null ? { enableThinking: config.enable_thinking } : {}), ...(config.default_system ? { defaultSystem: config.default_system } : {}) },
          ...(system !== undefined ? { system } : {}),
          maxNewTokens: req.maxTokens,
          temperature: req.temperature,
          topP: req.topP,
          topK: req.topK,
          repetitionPenalty: req.repetitionPenalty,
          ...(req.numBeams !== undefined ? { numBeams: req.numBeams } : {}),
          ...(req.lengthPenalty !== undefined ? { lengthPenalty: req.lengthPenalty } : {}),
          seed: req.seed ?? Math.floor(Math.random() * 2 ** 31),
          stop: req.stop,
          images,
          pixelLimits: { maxPixels: config.image_max_pixels, minPixels: config.image_min_pixels },
          signal,
        }, onToken);
      } catch (e) {
        throw requestError(e);
      }
    },
    close: () => session.release(),
  };
}

/** The id a model is served under: a folder's name (never the path to it), or the Hub id. */
function servedName(nameOrPath: string): string {
  return existsSync(nameOrPath) ? basename(resolve(nameOrPath)) : nameOrPath;
}

/** The engine's "does not fit" and "cannot take this image" as the backend contract's request errors (a 400, not a failure). */
function requestError(e: unknown): unknown {
  if (e instanceof ImageError) return new ChatRequestError(e.message, 'messages', 'invalid_image');
  return e instanceof ContextOverflowError ? new ChatRequestError(e.message) : e;
}

/** OpenAI messages -> the data layer's conversation (system first, tool results as observations) and the images in order. */
function toConversation(msgs: readonly ChatMessage[]): { system?: string; messages: Message[]; images: Uint8Array[] } {
  let system: string | undefined;
  const messages: Message[] = [];
  const images: Uint8Array[] = [];
  msgs.forEach((m, i) => {
    if (m.images?.length) {
      if (m.role !== 'user') throw new ChatRequestError(`messages[${i}]: only user messages may carry images (this one is ${m.role})`, `messages.[${i}].content`, 'invalid_image');
      images.push(...m.images);
    }
    if (m.role === 'system') {
      if (i !== 0) throw new ChatRequestError(`messages[${i}]: a system message is only allowed first`, `messages.[${i}].role`, 'invalid_value');
      system = m.content;
    } else messages.push({ role: m.role === 'tool' ? 'observation' : m.role, content: m.content });
  });
  return { ...(system !== undefined ? { system } : {}), messages, images };
}
