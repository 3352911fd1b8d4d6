/**
 * What every chat template offers: a conversation in, token ids out, split into
 * (prompt, response) turns. Named templates (./named.ts) and the model's own Jinja template
 * (./jinja.ts) both implement ChatTemplate.
 *
 * Roles: user, assistant, function_call (assistant calling tools; content is JSON
 * {"name", "arguments"} or a list of them), observation (tool results). The system prompt and
 * the tools (JSON text or list) are separate fields, as in LLaMA-Factory.
 */

export type Role = 'user' | 'assistant' | 'function_call' | 'observation';

export interface Message {
  role: Role | 'system';
  content: string;
}

export interface Conversation {
  system?: string;
  /** Tools as JSON text (LLaMA-Factory's `tools` column) or a parsed list. */
  tools?: string | Array<Record<string, unknown>>;
  messages: Message[];
}

export interface Turn {
  prompt: number[];
  response: number[];
}

export interface EncodeOptions {
  /** LLaMA-Factory's mask_history: only the last turn is learned (affects reasoning templates). */
  maskHistory?: boolean;
}

export interface ChatTemplate {
  /** Template name (`jinja` for the model's own template). */
  readonly name: string;
  /** End-of-sequence id this template trains with (LLaMA-Factory replaces eos for many templates). */
  readonly eosId: number;
  /** Ids that end generation (eos, stop words, end-of-turn tokens). */
  readonly stopIds: number[];
  /** The template has no eos in its assistant slot; one is appended to the sequence instead. */
  readonly efficientEos: boolean;
  /** Multi-turn encoding: one (prompt, response) pair per response message. */
  encodeConversation(conv: Conversation, opts?: EncodeOptions): { turns: Turn[] };
  /** Single-turn encoding: everything before the last message is the prompt (preference, KTO). */
  encodeOneTurn(conv: Conversation): Turn;
  /**
   * Token ids of the prompt for generating the next assistant message. Special-token strings in
   * the content are plain text here (see content-text.ts); training encodes them as special.
   */
  renderForGeneration(messages: Message[], opts?: { system?: string; tools?: Conversation['tools'] }): number[];
}

export interface TemplateOptions {
  /** LLaMA-Factory `enable_thinking` (default true). */
  enableThinking?: boolean;
  /** LLaMA-Factory `preserve_thinking` (default false). */
  preserveThinking?: boolean;
  /** LLaMA-Factory `default_system`: overrides the template's default system prompt. */
  defaultSystem?: string;
  /** LLaMA-Factory `tool_format`: overrides the template's tool format. */
  toolFormat?: string;
}
