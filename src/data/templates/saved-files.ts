/**
 * What a trained or merged model's folder carries of its template, as LLaMA-Factory saves the
 * tokenizer it fixed for the template: tokenizer_config.json gets the named template as
 * `chat_template` when the model had none (or the template replaces it: alpaca, chatml, default,
 * ...), and the eos_token the template ends turns with (replace_eos); a chat_template.jinja file
 * is replaced along with it. The model's own Jinja template leaves the files as they are.
 */
import { NamedTemplate } from './named.ts';
import type { ChatTemplate } from './types.ts';

/** The text to save for a model side file (`name` as in the model folder), given its original text. */
export function withChatTemplate(name: string, text: string, template: ChatTemplate): string {
  if (!(template instanceof NamedTemplate)) return text;
  const source = template.chatTemplateToSave();
  if (name === 'chat_template.jinja') return source ?? text;
  if (name !== 'tokenizer_config.json') return text;
  const config = JSON.parse(text) as Record<string, unknown>;
  const eos = config.eos_token as string | { content?: string } | null | undefined;
  const eosChanged = template.eosToken !== (typeof eos === 'string' ? eos : eos?.content);
  if (source === undefined && !eosChanged) return text;
  if (source !== undefined) config.chat_template = source;
  if (eosChanged) config.eos_token = template.eosToken;
  return `${JSON.stringify(config, null, 2)}\n`;
}
