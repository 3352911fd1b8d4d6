/**
 * Chat templates: turn a conversation into token ids, split into (prompt, response) turns.
 *
 * Two kinds, one interface (ChatTemplate):
 *  - Named templates (`template: qwen3` in a LLaMA-Factory config): the same slot definitions,
 *    names and semantics as LLaMA-Factory's template.py (eos replacement, efficient_eos, system
 *    fused into the first user turn for llama2/gemma/mistral, reasoning templates that add an
 *    empty <think></think> to responses, tool formats).
 *  - The model's own Jinja chat_template (when `template` is not set), rendered with
 *    @huggingface/jinja. A conversation is rendered turn by turn and split at the points where
 *    the template starts each response (`add_generation_prompt`) and ends it (its end-of-turn
 *    token and trailing newline). Whatever a template appends after the final end-of-turn token
 *    (Llama 3's always-on assistant header, say) is not part of a training example.
 *    Each response is learned as the template renders it when that response is the last message,
 *    i.e. as the model produces it at that turn (this makes Qwen3's template equal to the
 *    `qwen3` named template: every turn gets its empty think block). With mask_history, the
 *    conversation is rendered once, as a whole, and only the last response is learned.
 *
 * Roles: user, assistant, function_call (assistant calling tools; content is JSON
 * {"name", "arguments"} or a list of them), observation (tool results). The system prompt and
 * the tools (JSON text or list) are separate fields, as in LLaMA-Factory.
 */
import { Template as JinjaTemplate } from '@huggingface/jinja';
import { ContentShield } from './content-text.ts';
import type { Tokenizer } from './tokenizer.ts';
import { getToolFormat, parseFunctionCalls, parseTools, type ToolFormat } from './tools.ts';

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

// ---------------------------------------------------------------------------------------------
// Named templates (slot definitions as in LLaMA-Factory)

interface BosSlot { bos: true }
interface EosSlot { eos: true }
type Slot = string | { token: string } | BosSlot | EosSlot;
const BOS: BosSlot = { bos: true };
const EOS: EosSlot = { eos: true };

interface TemplateDef {
  user: Slot[];
  assistant: Slot[];
  system: Slot[];
  function: Slot[];
  observation: Slot[];
  prefix: Slot[];
  defaultSystem: string;
  stopWords: string[];
  thoughtWords: [string, string];
  toolCallWords: [string, string];
  efficientEos: boolean;
  replaceEos: boolean;
  toolFormat: string;
  functionToolFormat: string;
  reasoning: boolean;
  /** LLaMA-Factory's Llama2Template: the system text is fused into the first user message. */
  fuseSystem: boolean;
}

interface TemplateSpec {
  user?: Slot[];
  assistant?: Slot[];
  system?: Slot[];
  function?: Slot[];
  observation?: Slot[];
  prefix?: Slot[];
  defaultSystem?: string;
  stopWords?: string[];
  thoughtWords?: [string, string];
  efficientEos?: boolean;
  replaceEos?: boolean;
  toolFormat?: string;
  functionToolFormat?: string;
  reasoning?: boolean;
  fuseSystem?: boolean;
}

const TEMPLATES: Record<string, TemplateDef> = {};

function register(name: string, s: TemplateSpec): void {
  const efficientEos = s.efficientEos ?? false;
  const defaultSlots: Slot[] = efficientEos ? ['{{content}}'] : ['{{content}}', EOS];
  TEMPLATES[name] = {
    user: s.user ?? ['{{content}}'],
    assistant: s.assistant ?? defaultSlots,
    system: s.system ?? ['{{content}}'],
    function: s.function ?? s.assistant ?? defaultSlots,
    observation: s.observation ?? s.user ?? ['{{content}}'],
    prefix: s.prefix ?? [],
    defaultSystem: s.defaultSystem ?? '',
    stopWords: s.stopWords ?? [],
    thoughtWords: s.thoughtWords ?? ['<think>\n', '\n</think>\n\n'],
    toolCallWords: ['<tool_call>', '</tool_call>'],
    efficientEos,
    replaceEos: s.replaceEos ?? false,
    toolFormat: s.toolFormat ?? 'default',
    functionToolFormat: s.functionToolFormat ?? s.toolFormat ?? 'default',
    reasoning: s.reasoning ?? false,
    fuseSystem: s.fuseSystem ?? false,
  };
}

register('alpaca', {
  user: ['### Instruction:\n{{content}}\n\n### Response:\n'],
  assistant: ['{{content}}', EOS, '\n\n'],
  defaultSystem: 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n',
});

const CHATML = {
  user: ['<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n'],
  assistant: ['{{content}}<|im_end|>\n'],
  system: ['<|im_start|>system\n{{content}}<|im_end|>\n'],
};
register('chatml', {
  ...CHATML,
  observation: ['<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n'],
  stopWords: ['<|im_end|>', '<|im_start|>'],
  replaceEos: true,
});

register('default', {
  user: ['Human: {{content}}', EOS, '\nAssistant:'],
  assistant: ['{{content}}', EOS, '\n'],
  system: ['System: {{content}}', EOS, '\n'],
});

register('empty', { assistant: ['{{content}}'] });

const GEMMA = {
  user: ['<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n'],
  assistant: ['{{content}}<end_of_turn>\n'],
  system: ['{{content}}\n\n'],
  observation: ['<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n'],
  prefix: [BOS],
  fuseSystem: true,
};
register('gemma', { ...GEMMA, stopWords: ['<end_of_turn>'], replaceEos: true });
register('gemma2', { ...GEMMA, stopWords: ['<eos>', '<end_of_turn>'], efficientEos: true });
register('gemma3', { ...GEMMA, stopWords: ['<end_of_turn>'], replaceEos: true });

register('llama2', {
  user: [BOS, '[INST] {{content}} [/INST]'],
  system: ['<<SYS>>\n{{content}}\n<</SYS>>\n\n'],
  fuseSystem: true,
});

register('llama3', {
  user: ['<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'],
  assistant: ['{{content}}<|eot_id|>'],
  system: ['<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>'],
  function: ['{{content}}<|eot_id|>'],
  observation: ['<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'],
  toolFormat: 'llama3',
  prefix: [BOS],
  stopWords: ['<|eot_id|>', '<|eom_id|>'],
  replaceEos: true,
});

register('mistral', {
  user: ['[INST] {{content}}[/INST]'],
  assistant: [' {{content}}', EOS],
  system: ['{{content}}\n\n'],
  function: ['[TOOL_CALLS] {{content}}', EOS],
  observation: ['[TOOL_RESULTS] {"content": {{content}}}[/TOOL_RESULTS]'],
  toolFormat: 'mistral',
  prefix: [BOS],
  fuseSystem: true,
});

register('phi', {
  user: ['<|user|>\n{{content}}<|end|>\n<|assistant|>\n'],
  assistant: ['{{content}}<|end|>\n'],
  system: ['<|system|>\n{{content}}<|end|>\n'],
  stopWords: ['<|end|>'],
  replaceEos: true,
});

register('phi4', {
  user: ['<|im_start|>user<|im_sep|>{{content}}<|im_end|><|im_start|>assistant<|im_sep|>'],
  assistant: ['{{content}}<|im_end|>'],
  system: ['<|im_start|>system<|im_sep|>{{content}}<|im_end|>'],
  stopWords: ['<|im_end|>'],
  replaceEos: true,
});

const QWEN = {
  ...CHATML,
  function: ['{{content}}<|im_end|>\n'],
  observation: ['<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'],
  toolFormat: 'qwen',
  stopWords: ['<|im_end|>'],
  replaceEos: true,
};
register('qwen', { ...QWEN, defaultSystem: 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' });
register('qwen3', { ...QWEN, reasoning: true });
register('qwen3_nothink', { ...QWEN });

register('vicuna', {
  user: ['USER: {{content}} ASSISTANT:'],
  defaultSystem:
    'A chat between a curious user and an artificial intelligence assistant. ' +
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
});

register('zephyr', {
  user: ['<|user|>\n{{content}}', EOS, '<|assistant|>\n'],
  system: ['<|system|>\n{{content}}', EOS],
  defaultSystem: 'You are Zephyr, a helpful assistant.',
});

/** Names accepted by `template:` (LLaMA-Factory's names for these families). */
export const TEMPLATE_NAMES: readonly string[] = Object.keys(TEMPLATES).sort();

export class UnknownTemplateError extends Error {
  constructor(name: string) {
    super(`unknown template "${name}". Valid templates: ${TEMPLATE_NAMES.join(', ')} (or leave \`template\` unset to use the model's own chat template)`);
    this.name = 'UnknownTemplateError';
  }
}

// ---------------------------------------------------------------------------------------------

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function removeThought(content: string, words: [string, string]): string {
  const re = new RegExp(`${escapeRe(words[0])}([\\s\\S]*?)${escapeRe(words[1])}`, 'g');
  return content.replace(re, '').replace(/^\n+/, '');
}

function toolsText(tools: Conversation['tools']): string {
  if (tools === undefined || tools === null) return '';
  if (typeof tools === 'string') return tools; // LLaMA-Factory: any non-empty text (even "[]") opens a system turn
  return tools.length ? JSON.stringify(tools) : '';
}

/** Pull a leading system message out of messages, LLaMA-Factory style. */
function normalize(conv: Conversation): { system: string | undefined; messages: Message[] } {
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

export class NamedTemplate implements ChatTemplate {
  readonly name: string;
  readonly eosId: number;
  readonly stopIds: number[];
  readonly efficientEos: boolean;
  private readonly def: TemplateDef;
  private readonly tok: Tokenizer;
  private readonly enableThinking: boolean;
  private readonly preserveThinking: boolean;
  private readonly toolFmt: ToolFormat;
  private readonly functionFmt: ToolFormat;
  private readonly defaultSystem: string;
  private readonly functionSlots: Slot[];

  constructor(name: string, tok: Tokenizer, opts: TemplateOptions = {}) {
    const def = TEMPLATES[name];
    if (!def) throw new UnknownTemplateError(name);
    this.name = name;
    this.def = def;
    this.tok = tok;
    this.efficientEos = def.efficientEos;
    this.enableThinking = opts.enableThinking ?? true;
    this.preserveThinking = opts.preserveThinking ?? false;
    this.defaultSystem = opts.defaultSystem ?? def.defaultSystem;
    this.toolFmt = getToolFormat(opts.toolFormat ?? def.toolFormat);
    this.functionFmt = getToolFormat(opts.toolFormat ?? def.functionToolFormat);
    // LLaMA-Factory: an explicit tool_format also resets the function slots to content (+ eos).
    this.functionSlots = opts.toolFormat ? (def.efficientEos ? ['{{content}}'] : ['{{content}}', EOS]) : def.function;
    let stop = def.stopWords;
    let eos = tok.eosId;
    if (def.replaceEos) {
      eos = tok.requireTokenId(stop[0], `template "${name}" ends turns with it`);
      stop = stop.slice(1);
    }
    if (eos === undefined) {
      eos = tok.tokenToId('<|endoftext|>');
      if (eos === undefined) throw new Error(`the tokenizer has no eos_token and template "${name}" needs one`);
    }
    this.eosId = eos;
    const stops = new Set<number>([eos, ...tok.eosIds]);
    for (const w of stop) {
      const id = tok.tokenToId(w);
      if (id !== undefined) stops.add(id);
    }
    this.stopIds = [...stops];
  }

  private apply(slots: Slot[], content: string): Slot[] {
    return slots.map((s) => (typeof s === 'string' ? s.replace('{{content}}', () => content) : s));
  }

  private toIds(elements: Slot[], encodeText: (text: string) => number[]): number[] {
    const out: number[] = [];
    for (const e of elements) {
      if (typeof e === 'string') {
        if (e.length) out.push(...encodeText(e));
      } else if ('bos' in e) {
        if (this.tok.bosId !== undefined) out.push(this.tok.bosId);
      } else if ('eos' in e) {
        out.push(this.eosId);
      } else {
        out.push(this.tok.requireTokenId(e.token));
      }
    }
    return out;
  }

  private formatFunction(content: string, slots: Slot[]): Slot[] {
    const [tc0, tc1] = this.def.toolCallWords;
    const tcMatch = new RegExp(`${escapeRe(tc0)}([\\s\\S]*?)${escapeRe(tc1)}`).exec(content);
    let text: string;
    if (!tcMatch) {
      const [t0, t1] = this.def.thoughtWords;
      const thought = new RegExp(`${escapeRe(t0)}([\\s\\S]*?)${escapeRe(t1)}`).exec(content);
      const jsonPart = thought ? content.replace(thought[0], '') : content;
      text = this.functionFmt.formatCalls(parseFunctionCalls(jsonPart));
      if (thought) text = thought[0] + text;
    } else {
      const thoughtContent = content.replace(tcMatch[0], '');
      text = thoughtContent + this.functionFmt.formatCalls(parseFunctionCalls(tcMatch[1]));
    }
    return this.apply(slots, text);
  }

  /** LLaMA-Factory Template._encode: one id list per message. */
  private encodeMessages(messages: Message[], system: string | undefined, tools: string, encodeText: (text: string) => number[]): number[][] {
    const sys = system || this.defaultSystem;
    const d = this.def;
    const out: number[][] = [];
    messages.forEach((m, i) => {
      const el: Slot[] = [];
      let systemText = '';
      if (i === 0) {
        el.push(...d.prefix);
        if (sys || tools) {
          const toolText = tools ? this.formatToolsText(tools) : '';
          if (d.fuseSystem) {
            const s = this.apply(d.system, sys + toolText)[0];
            systemText = typeof s === 'string' ? s : '';
          } else el.push(...this.apply(d.system, sys + toolText));
        }
      }
      switch (m.role) {
        case 'user':
          el.push(...this.apply(d.user, systemText + m.content));
          break;
        case 'assistant':
          el.push(...this.apply(d.assistant, m.content));
          break;
        case 'observation':
          el.push(...this.apply(d.observation, m.content));
          break;
        case 'function_call':
          el.push(...this.formatFunction(m.content, this.functionSlots));
          break;
        default:
          throw new Error(`unexpected role "${m.role}"`);
      }
      out.push(this.toIds(el, encodeText));
    });
    return out;
  }

  private formatToolsText(tools: string): string {
    const list = parseTools(tools);
    return list.length ? this.toolFmt.formatTools(list) : '';
  }

  private thoughtIds(): number[] {
    return this.tok.encode(this.def.thoughtWords[0] + this.def.thoughtWords[1]);
  }

  private hasThought(content: string): boolean {
    const [a, b] = this.def.thoughtWords;
    return content.includes(a.trim()) || content.includes(b.trim());
  }

  encodeConversation(conv: Conversation, opts: EncodeOptions = {}): { turns: Turn[] } {
    const { system, messages: msgs0 } = normalize(conv);
    if (msgs0.length % 2 !== 0) throw new Error('a conversation needs (prompt, response) pairs: an even number of messages');
    let messages = msgs0;
    const tools = toolsText(conv.tools);
    const discardHistoryCot = !!opts.maskHistory && !this.preserveThinking;
    if (this.def.reasoning) {
      messages = messages.map((m) => ({ ...m }));
      if (!this.enableThinking) for (let i = 1; i < messages.length; i += 2) messages[i].content = removeThought(messages[i].content, this.def.thoughtWords);
      if (discardHistoryCot) for (let i = 1; i < messages.length - 2; i += 2) messages[i].content = removeThought(messages[i].content, this.def.thoughtWords);
    }
    const enc = this.encodeMessages(messages, system, tools, (text) => this.tok.encode(text));
    if (this.def.reasoning) {
      const idx = discardHistoryCot ? [messages.length - 2] : Array.from({ length: messages.length / 2 }, (_, k) => 2 * k);
      for (const i of idx) {
        if (!this.hasThought(messages[i + 1].content)) {
          if (!this.enableThinking) enc[i] = enc[i].concat(this.thoughtIds());
          else enc[i + 1] = this.thoughtIds().concat(enc[i + 1]);
        }
      }
    }
    const turns: Turn[] = [];
    for (let i = 0; i < enc.length; i += 2) turns.push({ prompt: enc[i], response: enc[i + 1] });
    return { turns };
  }

  encodeOneTurn(conv: Conversation): Turn {
    return this.oneTurn(conv, (text) => this.tok.encode(text));
  }

  private oneTurn(conv: Conversation, encodeText: (text: string) => number[]): Turn {
    const { system, messages: msgs0 } = normalize(conv);
    if (msgs0.length === 0) throw new Error('empty conversation');
    const messages = msgs0.map((m) => ({ ...m }));
    const tools = toolsText(conv.tools);
    const last = messages.length - 1;
    if (this.def.reasoning) {
      if (!this.preserveThinking) for (let i = 1; i < messages.length - 2; i += 2) messages[i].content = removeThought(messages[i].content, this.def.thoughtWords);
      if (!this.enableThinking) messages[last].content = removeThought(messages[last].content, this.def.thoughtWords);
    }
    const enc = this.encodeMessages(messages, system, tools, encodeText);
    let prompt = enc.slice(0, -1).flat();
    let response = enc[last];
    if (this.def.reasoning && !this.hasThought(messages[last].content)) {
      if (!this.enableThinking) prompt = prompt.concat(this.thoughtIds());
      else response = this.thoughtIds().concat(response);
    }
    return { prompt, response };
  }

  renderForGeneration(messages: Message[], opts: { system?: string; tools?: Conversation['tools'] } = {}): number[] {
    const shield = new ContentShield(this.tok);
    const conv = shield.hideConversation({ system: opts.system, tools: opts.tools, messages: [...messages, { role: 'assistant', content: '' }] });
    return this.oneTurn(conv, (text) => shield.encode(text)).prompt;
  }
}

// ---------------------------------------------------------------------------------------------
// The model's own Jinja chat template

/** Tokens that end a turn in common chat templates (plus the tokenizer's eos). */
const END_OF_TURN_TOKENS = [
  '<|im_end|>', '<|eot_id|>', '<|eom_id|>', '<end_of_turn>', '<|end|>', '<|endoftext|>', '</s>',
  '<|end_of_text|>', '<|END_OF_TURN_TOKEN|>', '<turn|>', '<|return|>', '<|end_of_sentence|>',
  '<｜end▁of▁sentence｜>', '<|eos|>', '<eos>', '<|endofassistant|>', '<|role_end|>', '<|end_of_turn|>',
];

function lcp(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

type HFMessage = Record<string, unknown> & { role: string; content: string };

export class JinjaChatTemplate implements ChatTemplate {
  readonly name = 'jinja';
  eosId: number;
  readonly stopIds: number[];
  readonly efficientEos = false;
  private readonly tok: Tokenizer;
  private readonly compiled: JinjaTemplate;
  private readonly toolCompiled: JinjaTemplate | undefined;
  private readonly enableThinking: boolean | undefined;
  private readonly defaultSystem: string | undefined;
  private readonly eotMarkers: string[];
  /** What the template writes after a response's content to end the turn (e.g. "<|im_end|>\n"). */
  readonly turnEnd: string;
  /** What the template appends after the last message regardless of add_generation_prompt. */
  readonly trailing: string;

  constructor(tok: Tokenizer, source: string, opts: TemplateOptions = {}) {
    this.tok = tok;
    try {
      this.compiled = new JinjaTemplate(source);
      const toolSrc = tok.chatTemplates.tool_use;
      this.toolCompiled = toolSrc && toolSrc !== source ? new JinjaTemplate(toolSrc) : undefined;
    } catch (e) {
      throw new Error(`the model's chat_template does not parse: ${(e as Error).message}`);
    }
    this.enableThinking = opts.enableThinking === false ? false : undefined;
    this.defaultSystem = opts.defaultSystem;
    const eos = tok.eosId ?? tok.tokenToId('<|endoftext|>');
    if (eos === undefined) throw new Error('the tokenizer has no eos_token');
    this.eosId = eos;
    const markers = new Set(END_OF_TURN_TOKENS.filter((t) => tok.tokenToId(t) !== undefined));
    if (tok.eosToken) markers.add(tok.eosToken);
    this.eotMarkers = [...markers];

    // Probe the template once to learn how it ends a turn and what it always appends.
    const U = 'Xq7zUu';
    const A = 'Xq7zAa';
    const Z = 'Xq7zZz';
    let turnEnd = '';
    let trailing = '';
    try {
      const p2 = this.renderHF([{ role: 'user', content: U }, { role: 'assistant', content: A }], false);
      const p3 = this.renderHF([{ role: 'user', content: U }, { role: 'assistant', content: A }, { role: 'user', content: Z }], false);
      const aEnd = p2.lastIndexOf(A) + A.length;
      const tail = p2.slice(aEnd);
      const m = this.lastMarkerEnd(tail);
      if (m >= 0) {
        turnEnd = tail.slice(0, m);
        trailing = tail.slice(m);
      } else {
        const c = lcp(p2, p3);
        if (c >= aEnd) {
          turnEnd = p2.slice(aEnd, c);
          trailing = p2.slice(c);
        } else turnEnd = tail;
      }
      if (trailing) {
        const p1 = this.renderHF([{ role: 'user', content: U }], false);
        if (!p1.endsWith(trailing)) trailing = '';
      }
    } catch {
      // Templates that reject the probe still work for rendering; splitting then relies on prefixes.
    }
    this.turnEnd = turnEnd;
    this.trailing = trailing;
    const stops = new Set<number>([eos, ...tok.eosIds]);
    let turnEos: number | undefined;
    for (const mk of this.eotMarkers) {
      if (turnEnd.includes(mk)) {
        const id = tok.tokenToId(mk)!;
        stops.add(id);
        turnEos ??= id;
      }
    }
    // The token that ends an assistant turn is the eos this template trains with.
    if (turnEos !== undefined) this.eosId = turnEos;
    this.stopIds = [...stops];
  }

  /** End index (after trailing whitespace) of the last end-of-turn marker in text, or -1. */
  private lastMarkerEnd(text: string): number {
    let best = -1;
    let bestEnd = -1;
    for (const mk of this.eotMarkers) {
      const i = text.lastIndexOf(mk);
      if (i > best || (i === best && i >= 0 && i + mk.length > bestEnd)) {
        best = i;
        bestEnd = i + mk.length;
      }
    }
    if (best < 0) return -1;
    let e = bestEnd;
    while (e < text.length && /[ \t\r\n]/.test(text[e])) e++;
    return e;
  }

  private renderHF(messages: HFMessage[], addGenerationPrompt: boolean, tools?: Array<Record<string, unknown>>): string {
    const ctx: Record<string, unknown> = {
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: this.tok.bosToken ?? '',
      eos_token: this.tok.eosToken ?? '',
      pad_token: this.tok.padToken ?? '',
      unk_token: this.tok.unkToken ?? '',
    };
    if (tools && tools.length) ctx.tools = tools;
    if (this.enableThinking === false) ctx.enable_thinking = false;
    const tpl = tools && tools.length && this.toolCompiled ? this.toolCompiled : this.compiled;
    try {
      return tpl.render(ctx);
    } catch (e) {
      throw new Error(`the model's chat_template failed to render: ${(e as Error).message}`);
    }
  }

  /** Refuse silently dropped tool data: a template that ignores tools or tool_calls would train on empty turns. */
  private checkTools(text: string, msgs: HFMessage[], tools: Array<Record<string, unknown>>): void {
    for (const t of tools) {
      const name = (t.function as Record<string, unknown> | undefined)?.name;
      if (typeof name === 'string' && !text.includes(name)) {
        throw new Error(`the model's chat template does not render the tools (no "${name}" in its output); set \`template\` to a named template`);
      }
    }
    for (const m of msgs) {
      for (const c of (m.tool_calls as Array<{ function: { name: string } }> | undefined) ?? []) {
        if (!text.includes(c.function.name)) {
          throw new Error(`the model's chat template does not render tool calls (no "${c.function.name}" in its output); set \`template\` to a named template`);
        }
      }
    }
  }

  private toHF(conv: Conversation): { msgs: HFMessage[]; tools: Array<Record<string, unknown>>; responseIdx: number[] } {
    const { system, messages } = normalize(conv);
    const msgs: HFMessage[] = [];
    const sys = system || this.defaultSystem;
    if (sys) msgs.push({ role: 'system', content: sys });
    const responseIdx: number[] = [];
    for (const m of messages) {
      if (m.role === 'assistant' || m.role === 'function_call') responseIdx.push(msgs.length);
      if (m.role === 'function_call') {
        const calls = parseFunctionCalls(m.content);
        msgs.push({
          role: 'assistant',
          content: '',
          tool_calls: calls.map((c) => ({ type: 'function', function: { name: c.name, arguments: JSON.parse(c.arguments) } })),
        });
      } else if (m.role === 'observation') msgs.push({ role: 'tool', content: m.content });
      else msgs.push({ role: m.role, content: m.content });
    }
    const tools = parseTools(conv.tools).map((t) => (t.type === 'function' ? t : { type: 'function', function: t }));
    return { msgs, tools, responseIdx };
  }

  private stripTrailing(s: string): string {
    return this.trailing && s.endsWith(this.trailing) ? s.slice(0, s.length - this.trailing.length) : s;
  }

  /** Find the end of a response that starts at or after `from` in text, by its end-of-turn text. */
  private findTurnEnd(text: string, from: number, what: string): number {
    if (!this.turnEnd) throw new Error(`cannot split the chat template's rendering at ${what}: the template renders earlier turns differently and has no recognizable end-of-turn token; set \`template\` to a named template`);
    const i = text.indexOf(this.turnEnd, from);
    if (i < 0) throw new Error(`cannot find the end of ${what} in the chat template's rendering (looked for ${JSON.stringify(this.turnEnd)}); set \`template\` to a named template`);
    return i + this.turnEnd.length;
  }

  /** Text segments [prompt, response] per turn. */
  splitText(conv: Conversation, opts: EncodeOptions = {}): Array<[string, string]> {
    const { msgs, tools, responseIdx } = this.toHF(conv);
    if (!responseIdx.length) throw new Error('the conversation has no assistant message');
    const G = responseIdx.map((r) => this.renderHF(msgs.slice(0, r), true, tools));
    const F = responseIdx.map((r) => this.stripTrailing(this.renderHF(msgs.slice(0, r + 1), false, tools)));
    this.checkTools(F[F.length - 1], msgs, tools);
    const out: Array<[string, string]> = [];
    if (opts.maskHistory) {
      const full = F[F.length - 1];
      let prevEnd = 0;
      for (let k = 0; k < responseIdx.length; k++) {
        const start = Math.max(prevEnd, Math.min(lcp(full, G[k]), G[k].length));
        let end: number;
        if (k === responseIdx.length - 1) end = full.length;
        else if (full.startsWith(F[k]) && F[k].length > start) end = F[k].length;
        else end = this.findTurnEnd(full, start, `response ${k + 1}`);
        out.push([full.slice(prevEnd, start), full.slice(start, end)]);
        prevEnd = end;
      }
      return out;
    }
    for (let k = 0; k < responseIdx.length; k++) {
      const f = F[k];
      const start = Math.min(lcp(G[k], f), G[k].length);
      let histEnd = 0;
      if (k > 0) {
        if (f.startsWith(F[k - 1])) histEnd = F[k - 1].length;
        else histEnd = this.findTurnEnd(f, Math.min(lcp(f, G[k - 1]), G[k - 1].length), `response ${k}`);
      }
      if (histEnd > start) throw new Error(`the chat template's rendering of turn ${k + 1} is not consistent with earlier turns; set \`template\` to a named template`);
      out.push([f.slice(histEnd, start), f.slice(start)]);
    }
    return out;
  }

  encodeConversation(conv: Conversation, opts: EncodeOptions = {}): { turns: Turn[] } {
    const { messages } = normalize(conv);
    if (messages.length % 2 !== 0) throw new Error('a conversation needs (prompt, response) pairs: an even number of messages');
    return { turns: this.splitText(conv, opts).map(([p, r]) => ({ prompt: this.tok.encode(p), response: this.tok.encode(r) })) };
  }

  encodeOneTurn(conv: Conversation): Turn {
    const { msgs, tools, responseIdx } = this.toHF(conv);
    const last = msgs.length - 1;
    if (!responseIdx.includes(last)) throw new Error('the last message must be an assistant message');
    const g = this.renderHF(msgs.slice(0, last), true, tools);
    const f = this.stripTrailing(this.renderHF(msgs, false, tools));
    this.checkTools(f, msgs, tools);
    const start = Math.min(lcp(g, f), g.length);
    return { prompt: this.tok.encode(f.slice(0, start)), response: this.tok.encode(f.slice(start)) };
  }

  /** The rendered text (for previews and debugging). */
  render(conv: Conversation, addGenerationPrompt = false): string {
    const { msgs, tools } = this.toHF(conv);
    return this.renderHF(msgs, addGenerationPrompt, tools);
  }

  renderForGeneration(messages: Message[], opts: { system?: string; tools?: Conversation['tools'] } = {}): number[] {
    const shield = new ContentShield(this.tok);
    const { msgs, tools } = this.toHF(shield.hideConversation({ system: opts.system, tools: opts.tools, messages }));
    return shield.encode(this.renderHF(msgs, true, tools));
  }
}

/**
 * The chat template for a model: a named LLaMA-Factory template, or (name undefined) the
 * tokenizer's own Jinja chat_template; with neither, LLaMA-Factory's `empty` template.
 */
export function getTemplate(name: string | undefined | null, tokenizer: Tokenizer, opts: TemplateOptions = {}): ChatTemplate {
  if (name === undefined || name === null || name === '') {
    if (tokenizer.chatTemplate) return new JinjaChatTemplate(tokenizer, tokenizer.chatTemplate, opts);
    return new NamedTemplate('empty', tokenizer, opts);
  }
  if (!(name in TEMPLATES)) throw new UnknownTemplateError(name);
  return new NamedTemplate(name, tokenizer, opts);
}
