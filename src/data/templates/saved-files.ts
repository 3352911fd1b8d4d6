/**
 * What a trained or merged model's folder carries of its template, as LLaMA-Factory saves the
 * tokenizer its template fixed (fix_special_tokens, then fix_jinja_template):
 * - tokenizer_config.json gets the named template as `chat_template` when the model had none (or
 *   the template replaces it: alpaca, chatml, default, ...), the eos_token the template ends turns
 *   with (replace_eos), and that eos as pad_token when the model had no pad_token;
 * - a chat_template.jinja file is replaced along with it.
 * The model's own Jinja template changes only the missing pad_token.
 */
import { parseJsonFile } from '../json-file.ts';
import { NamedTemplate } from './named.ts';
import type { ChatTemplate } from './types.ts';

type TokenEntry = string | { content?: string } | null | undefined;

function tokenText(entry: TokenEntry): string | undefined {
  return typeof entry === 'string' ? entry : (entry?.content ?? undefined);
}

/**
 * tokenizer_config.json as a model saved with `template` carries it, from the original one (which
 * is not changed). Keys other than chat_template, eos_token and pad_token are kept as they are.
 */
export function savedTokenizerConfig(original: Record<string, unknown>, template: ChatTemplate): Record<string, unknown> {
  const config = { ...original };
  let eos = tokenText(original.eos_token as TokenEntry);
  if (template instanceof NamedTemplate) {
    const source = template.chatTemplateToSave();
    if (source !== undefined) config.chat_template = source;
    if (template.eosToken !== eos) config.eos_token = eos = template.eosToken;
  }
  if (tokenText(original.pad_token as TokenEntry) === undefined && eos !== undefined) config.pad_token = eos;
  return config;
}

/** The text to save for a model side file (`name` as in the model folder), given its original text. */
export function withChatTemplate(name: string, text: string, template: ChatTemplate): string {
  if (name === 'chat_template.jinja') return (template instanceof NamedTemplate ? template.chatTemplateToSave() : undefined) ?? text;
  if (name !== 'tokenizer_config.json') return text;
  const original = parseJsonFile<Record<string, unknown>>(text, name);
  const saved = savedTokenizerConfig(original, template);
  const changed = Object.keys(saved).some((k) => saved[k] !== original[k]);
  return changed ? `${JSON.stringify(saved, null, 2)}\n` : text;
}
