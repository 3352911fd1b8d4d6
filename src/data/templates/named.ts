/**
 * Named templates (`template: qwen3` in a LLaMA-Factory config): LLaMA-Factory's Template._encode
 * over the slot definitions of ./catalog.ts, with its semantics: eos replacement, efficient_eos,
 * system fused into the first user turn for llama2/gemma/mistral, reasoning templates that add an
 * empty thought to responses, tool formats.
 */
import { ContentShield, IMAGE_MARK } from '../content-text.ts';
import { pyJsonDumps } from '../pyjson.ts';
import type { Tokenizer } from '../tokenizer.ts';
import { getToolFormat, parseFunctionCalls, parseTools, type ToolFormat } from '../tools.ts';
import { TEMPLATES, UnknownTemplateError } from './catalog.ts';
import { normalize } from './conversation.ts';
import { EOS, type Slot, type TemplateDef } from './slots.ts';
import { jinjaFromSlots } from './slots-jinja.ts';
import type { ChatTemplate, Conversation, EncodeOptions, Message, TemplateOptions, Turn } from './types.ts';

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
  return tools.length ? pyJsonDumps(tools) : '';
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
  private readonly toolsSlots: Slot[] | null;
  /** The text of eosId (LLaMA-Factory's replaced eos_token for replace_eos templates). */
  readonly eosToken: string;

  constructor(name: string, tok: Tokenizer, opts: TemplateOptions = {}) {
    const def = Object.hasOwn(TEMPLATES, name) ? TEMPLATES[name] : undefined;
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
    this.toolsSlots = opts.toolFormat ? null : def.tools;
    let stop = def.stopWords;
    let eos = tok.eosId;
    let eosToken = tok.eosToken;
    if (def.replaceEos) {
      eos = tok.requireTokenId(stop[0], `template "${name}" ends turns with it`);
      eosToken = stop[0];
      stop = stop.slice(1);
    }
    if (eos === undefined) {
      eosToken = '<|endoftext|>';
      eos = tok.tokenToId(eosToken);
      if (eos === undefined) throw new Error(`the tokenizer has no eos_token and template "${name}" needs one`);
    }
    this.eosId = eos;
    this.eosToken = eosToken!;
    const stops = new Set<number>([eos, ...tok.eosIds]);
    for (const w of stop) {
      const id = tok.tokenToId(w);
      if (id !== undefined) stops.add(id);
    }
    this.stopIds = [...stops];
  }

  /**
   * LLaMA-Factory's fix_jinja_template: the chat_template a tokenizer saved with this template
   * gets, when the model has none or the template replaces the model's own; else undefined.
   */
  chatTemplateToSave(): string | undefined {
    if (this.tok.chatTemplate !== undefined && !this.def.replaceJinjaTemplate) return undefined;
    const bos = this.tok.bosId !== undefined ? this.tok.bosToken : undefined;
    return jinjaFromSlots(this.def, { bos, eos: this.eosToken }, this.defaultSystem);
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
    // LLaMA-Factory's Llama2Template formats the whole content as calls: no thought or tool-call words.
    if (this.def.fuseSystem) return this.apply(slots, this.functionFmt.formatCalls(parseFunctionCalls(content)));
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
    if (this.toolsSlots) {
      const [text] = this.apply(this.toolsSlots, tools);
      return typeof text === 'string' ? text : '';
    }
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
    // an image becomes Qwen2-VL's image tokens, as LLaMA-Factory's Qwen2VL plugin writes <image> (one pad, expanded later)
    for (const m of conv.messages) m.content = m.content.replaceAll(IMAGE_MARK, '<|vision_start|><|image_pad|><|vision_end|>');
    return this.oneTurn(conv, (text) => shield.encode(text)).prompt;
  }
}
