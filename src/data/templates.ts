/**
 * Chat templates: turn a conversation into token ids, split into (prompt, response) turns.
 * Two kinds, one interface (templates/types.ts): LLaMA-Factory's named templates
 * (templates/named.ts over templates/catalog.ts) and the model's own Jinja chat_template
 * (templates/jinja.ts); templates/registry.ts picks one.
 */
export type { ChatTemplate, Conversation, EncodeOptions, Message, Role, TemplateOptions, Turn } from './templates/types.ts';
export { TEMPLATE_NAMES, UnknownTemplateError, UnsupportedTemplateError } from './templates/catalog.ts';
export { NamedTemplate } from './templates/named.ts';
export { JinjaChatTemplate } from './templates/jinja.ts';
export { getTemplate } from './templates/registry.ts';
