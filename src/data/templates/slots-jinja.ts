/**
 * A named template as Jinja source, written as LLaMA-Factory's _get_jinja_template writes it (so a
 * saved tokenizer's chat_template is the same text): system, user and assistant slots only, eos
 * and bos spelled out as the tokenizer's token text.
 */
import type { Slot, TemplateDef } from './slots.ts';

export interface SlotTokens {
  /** The bos text, or undefined when the tokenizer has none. */
  bos: string | undefined;
  /** The eos text the template ends turns with (the replaced one for replace_eos templates). */
  eos: string;
}

function quote(text: string): string {
  return `'${text.replace(/'/g, "\\'")}'`;
}

/** The slots as one Jinja expression; undefined when a slot names a token (LLaMA-Factory cannot convert those). */
function expression(slots: Slot[], tokens: SlotTokens, placeholder = 'content'): string | undefined {
  const items: string[] = [];
  for (const slot of slots) {
    if (typeof slot === 'string') {
      const [before, after] = slot.split('{{content}}');
      if (before) items.push(quote(before));
      if (after !== undefined) {
        items.push(placeholder);
        if (after) items.push(quote(after));
      }
    } else if ('bos' in slot) {
      if (tokens.bos !== undefined) items.push(`'${tokens.bos}'`);
    } else if ('eos' in slot) {
      items.push(`'${tokens.eos}'`);
    } else return undefined;
  }
  return items.join(' + ');
}

const SPLIT_SYSTEM =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}" +
  "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% endif %}";

export function jinjaFromSlots(def: TemplateDef, tokens: SlotTokens, defaultSystem: string): string | undefined {
  const prefix = expression(def.prefix, tokens);
  const system = expression(def.system, tokens, 'system_message');
  const user = expression(def.user, tokens);
  const assistant = expression(def.assistant, tokens);
  if (prefix === undefined || system === undefined || user === undefined || assistant === undefined) return undefined;
  let source = prefix ? `{{ ${prefix} }}` : '';
  if (defaultSystem) source += `{% set system_message = ${quote(defaultSystem)} %}`;
  source += SPLIT_SYSTEM;
  // Llama2Template: the system text opens the first message instead of standing alone.
  if (def.fuseSystem) {
    source +=
      '{% for message in loop_messages %}' +
      '{% if loop.index0 == 0 and system_message is defined %}' +
      `{% set content = ${system} + message['content'] %}` +
      "{% else %}{% set content = message['content'] %}{% endif %}";
  } else {
    source += `{% if system_message is defined %}{{ ${system} }}{% endif %}` + "{% for message in loop_messages %}{% set content = message['content'] %}";
  }
  return source + `{% if message['role'] == 'user' %}{{ ${user} }}{% elif message['role'] == 'assistant' %}{{ ${assistant} }}{% endif %}{% endfor %}`;
}
