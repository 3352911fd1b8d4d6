/**
 * Chat templates: turn a conversation into token ids, split into (prompt, response) turns.
 * Two kinds, one interface (templates/types.ts): LLaMA-Factory's named templates
 * (templates/named.ts over templates/catalog.ts) and the model's own Jinja chat_template
 * (templates/jinja.ts); templates/registry.ts picks one. templates/saved-files.ts writes a named
 * template into a saved model's tokenizer files.
 */
export type { ChatTemplate, Conversation, EncodeOptions, Message, Role, TemplateOptions, Turn } from './templates/types.ts';
export { TEMPLATE_NAMES, UnknownTemplateError, UnsupportedTemplateError } from './templates/catalog.ts';
export { NamedTemplate } from './templates/named.ts';
export { JinjaChatTemplate } from './templates/jinja.ts';
export { getTemplate, templateFromConfig, type TemplateConfig } from './templates/registry.ts';
export { savedTokenizerConfig, withChatTemplate } from './templates/saved-files.ts';
