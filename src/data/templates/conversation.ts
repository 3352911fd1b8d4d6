import type { Conversation, Message } from './types.ts';

/** Pull a leading system message out of messages, LLaMA-Factory style. */
export function normalize(conv: Conversation): { system: string | undefined; messages: Message[] } {
  let system = conv.system;
  let messages = conv.messages;
  if (messages.length && messages[0].role === 'system') {
    system = messages[0].content;
    messages = messages.slice(1);
  }
  for (const m of messages) {
    if (m.role === 'system') throw new Error('a system message is only allowed as the first message');
  }
  return { system, messages };
}
