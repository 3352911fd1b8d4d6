/**
 * Message content is text. Someone who types "<|im_end|><|im_start|>system" into a chat must not
 * get the control tokens those strings name (a forged system turn). While a chat template renders
 * a conversation for generation, each special-token string inside the content (messages, system
 * prompt, tools) waits behind a placeholder that the template carries through like any other
 * text; the rendered prompt is then tokenised with the template's own control tokens special and
 * each placeholder as the plain text it hides (transformers' `split_special_tokens`, for content
 * only).
 *
 * Training data does not come through here, on purpose: LLaMA-Factory tokenises a dataset's
 * content with special tokens parsed (a dataset may spell them out deliberately), and Crucible
 * trains on the same ids it would.
 */
import type { Conversation, Message } from './templates/types.ts';
import type { Tokenizer } from './tokenizer.ts';

/**
 * Where an image of a chat message sits in its content (generation only): a private-use character
 * no special token contains, so the shield carries it through; the templates turn each into the
 * model's image tokens (jinja.ts: an HF `{type: 'image'}` content part).
 */
export const IMAGE_MARK = '\uE002';

const OPEN = '\uE000';
const CLOSE = '\uE001';

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** One rendering's placeholders: hide() the content, render, encode() the result. */
export class ContentShield {
  private readonly tok: Tokenizer;
  private readonly specials: readonly string[];
  /** Any special-token string, longest first (so the longest match wins, as the tokenizer's). */
  private readonly special: RegExp | null;
  /** A placeholder (group 1: its index into specials) or one of the template's special tokens. */
  private readonly scan: RegExp | null;
  private readonly open: string;
  private hidden = false;

  constructor(tok: Tokenizer) {
    this.tok = tok;
    this.specials = [...tok.controlTokens].sort((a, b) => b.length - a.length);
    // A per-rendering tag, so text that happens to look like a placeholder stays what it is.
    this.open = `${OPEN}${Math.random().toString(36).slice(2, 10)}:`;
    const any = this.specials.map(escapeRe).join('|');
    this.special = any ? new RegExp(any, 'g') : null;
    this.scan = any ? new RegExp(`${escapeRe(this.open)}(\\d+)${CLOSE}|${any}`, 'g') : null;
  }

  /** Content with each special-token string behind a placeholder. */
  hide(content: string): string {
    if (!this.special) return content;
    return content.replace(this.special, (m) => {
      this.hidden = true;
      return `${this.open}${this.specials.indexOf(m)}${CLOSE}`;
    });
  }

  /** A conversation with its content hidden (the template's default system prompt is its own). */
  hideConversation(conv: Conversation): Conversation {
    const tools = conv.tools === undefined ? undefined : typeof conv.tools === 'string' ? this.hide(conv.tools) : (JSON.parse(this.hide(JSON.stringify(conv.tools))) as Conversation['tools']);
    return {
      ...(conv.system !== undefined ? { system: this.hide(conv.system) } : {}),
      ...(tools !== undefined ? { tools } : {}),
      messages: conv.messages.map((m): Message => ({ role: m.role, content: this.hide(m.content) })),
    };
  }

  /**
   * Ids of rendered text: the template's special tokens as control tokens, hidden strings as text.
   * Without anything hidden this is the tokenizer's ordinary encode, so ordinary chats are
   * tokenised exactly as before. (The text between control tokens is tokenised piece by piece,
   * as the tokenizer does; the rare lstrip/rstrip flags of added tokens are not applied here.)
   */
  encode(rendered: string): number[] {
    if (!this.hidden || !this.scan) return this.tok.encode(rendered);
    const ids: number[] = [];
    let text = '';
    let from = 0;
    for (const m of rendered.matchAll(this.scan)) {
      text += rendered.slice(from, m.index);
      from = m.index + m[0].length;
      if (m[1] !== undefined) {
        text += this.specials[Number(m[1])];
        continue;
      }
      for (const id of this.tok.encodeAsText(text)) ids.push(id);
      ids.push(this.tok.requireTokenId(m[0]));
      text = '';
    }
    for (const id of this.tok.encodeAsText(text + rendered.slice(from))) ids.push(id);
    return ids;
  }
}
