/**
 * The model's own Jinja chat_template (when `template` is not set), rendered with
 * @huggingface/jinja. A conversation is rendered turn by turn and split at the points where
 * the template starts each response (`add_generation_prompt`) and ends it (its end-of-turn
 * token and trailing newline). Whatever a template appends after the final end-of-turn token
 * (Llama 3's always-on assistant header, say) is not part of a training example.
 * Each response is learned as the template renders it when that response is the last message,
 * i.e. as the model produces it at that turn (this makes Qwen3's template equal to the
 * `qwen3` named template: every turn gets its empty think block). With mask_history, the
 * conversation is rendered once, as a whole, and only the last response is learned.
 */
import { Template as JinjaTemplate } from '@huggingface/jinja';
import { ContentShield, IMAGE_MARK } from '../content-text.ts';
import type { Tokenizer } from '../tokenizer.ts';
import { parseFunctionCalls, parseTools } from '../tools.ts';
import { normalize } from './conversation.ts';
import type { ChatTemplate, Conversation, EncodeOptions, Message, TemplateOptions, Turn } from './types.ts';

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

type HFMessage = Record<string, unknown> & { role: string; content: string | ContentPart[] };
type ContentPart = { type: 'text'; text: string } | { type: 'image' };

/** Content with image marks as HF content parts (what processor.apply_chat_template passes); plain text stays a string. */
function contentParts(content: string): string | ContentPart[] {
  if (!content.includes(IMAGE_MARK)) return content;
  return content.split(IMAGE_MARK).flatMap((text, i): ContentPart[] => [...(i > 0 ? [{ type: 'image' as const }] : []), ...(text ? [{ type: 'text' as const, text }] : [])]);
}

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
      else msgs.push({ role: m.role, content: contentParts(m.content) });
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
