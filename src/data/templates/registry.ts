import { TEMPLATES, UnknownTemplateError, UnsupportedTemplateError } from './catalog.ts';
import { JinjaChatTemplate } from './jinja.ts';
import { NamedTemplate } from './named.ts';
import type { Tokenizer } from '../tokenizer.ts';
import type { ChatTemplate, TemplateOptions } from './types.ts';
import { unsupportedReason } from './unsupported.ts';

/**
 * The chat template for a model: a named LLaMA-Factory template, or (name undefined) the
 * tokenizer's own Jinja chat_template; with neither, LLaMA-Factory's `empty` template.
 */
export function getTemplate(name: string | undefined | null, tokenizer: Tokenizer, opts: TemplateOptions = {}): ChatTemplate {
  if (name === undefined || name === null || name === '') {
    if (tokenizer.chatTemplate) return new JinjaChatTemplate(tokenizer, tokenizer.chatTemplate, opts);
    return new NamedTemplate('empty', tokenizer, opts);
  }
  if (!Object.hasOwn(TEMPLATES, name)) {
    const reason = unsupportedReason(name);
    throw reason ? new UnsupportedTemplateError(reason) : new UnknownTemplateError(name);
  }
  return new NamedTemplate(name, tokenizer, opts);
}

/** The template keys of a LLaMA-Factory config. */
export interface TemplateConfig {
  template?: string | null;
  default_system?: string | null;
  enable_thinking?: boolean | null;
  preserve_thinking?: boolean | null;
  tool_format?: string | null;
}

/** The chat template a LLaMA-Factory config asks for (`template`, `default_system`, `enable_thinking`, ...). */
export function templateFromConfig(config: TemplateConfig, tokenizer: Tokenizer): ChatTemplate {
  return getTemplate(config.template, tokenizer, {
    enableThinking: config.enable_thinking !== false,
    preserveThinking: config.preserve_thinking === true,
    ...(config.default_system != null ? { defaultSystem: config.default_system } : {}),
    ...(config.tool_format != null ? { toolFormat: config.tool_format } : {}),
  });
}
