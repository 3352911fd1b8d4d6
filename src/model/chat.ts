// `crucible chat` and `crucible api`: a model (+ adapter) loaded for generation in Node, behind the
// ChatBackend interface the terminal chat and the OpenAI-compatible server share.

import type { CrucibleConfig } from '../config';
import type { RunHooks } from '../cli/engines';
import type { Message } from '../data';
import { resolveModelFiles } from '../engine/node-model';
import { Session } from '../engine/session';
import { nodeGpu } from '../gpu/node';
import type { ChatBackend, ChatMessage } from '../server/types';

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
  const name = adapters[0] ?? config.model_name_or_path;
  return {
    models: () => [name],
    async chat(req, onToken, signal) {
      const { system, messages } = toConversation(req.messages);
      if (req.presencePenalty || req.frequencyPenalty) throw new Error('presence_penalty and frequency_penalty are not supported; use repetition_penalty');
      return session.chat(messages, {
        template: config.template,
        templateOptions: { ...(config.enable_thinking != null ? { enableThinking: config.enable_thinking } : {}), ...(config.default_system ? { defaultSystem: config.default_system } : {}) },
        ...(system !== undefined ? { system } : {}),
        maxNewTokens: req.maxTokens,
        temperature: req.temperature,
        topP: req.topP,
        topK: req.topK,
        repetitionPenalty: req.repetitionPenalty,
        seed: req.seed ?? Math.floor(Math.random() * 2 ** 31),
        stop: req.stop,
        signal,
      }, onToken);
    },
    close: () => session.release(),
  };
}

/** OpenAI messages -> the data layer's conversation (system first, tool results as observations). */
function toConversation(msgs: readonly ChatMessage[]): { system?: string; messages: Message[] } {
  let system: string | undefined;
  const messages: Message[] = [];
  msgs.forEach((m, i) => {
    if (m.role === 'system') {
      if (i !== 0) throw new Error(`messages[${i}]: a system message is only allowed first`);
      system = m.content;
    } else messages.push({ role: m.role === 'tool' ? 'observation' : m.role, content: m.content });
  });
  return { ...(system !== undefined ? { system } : {}), messages };
}
