/**
 * Tokenizer: a thin layer over @huggingface/tokenizers that reads the two files every HF model
 * ships (tokenizer.json, tokenizer_config.json) plus an optional chat_template.jinja, and adds
 * what training and chat need: special-token ids (bos/eos/pad), token lookup, and a streaming
 * decoder that only ever emits complete characters.
 *
 * Browser-safe (no Node imports); see ./node.ts for loadTokenizerFromDir.
 */
import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';

export interface TokenizerFiles {
  /** Parsed tokenizer.json, or its text. */
  tokenizerJson: object | string;
  /** Parsed tokenizer_config.json (special tokens, chat_template, add_bos_token ...). */
  tokenizerConfig?: object;
  /** Contents of chat_template.jinja; takes precedence over tokenizer_config.chat_template. */
  chatTemplate?: string;
  /** Optional generation_config.json: its eos_token_id (number or list) adds end-of-generation ids. */
  generationConfig?: object;
}

export interface EncodeOptions {
  /** Apply the tokenizer's post-processor (e.g. Gemma's <bos>). Default false. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
}

export interface StreamDecoder {
  /** Feed one generated id; returns the newly completed text ('' while a character is incomplete). */
  push(id: number): string;
  /** Return whatever is still held back (possibly containing U+FFFD for invalid bytes) and reset. */
  flush(): string;
}

export interface SpecialToken {
  id: number;
  content: string;
}

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
}

type ConfigToken = string | { content?: string } | null | undefined;

function tokenContent(v: ConfigToken): string | undefined {
  if (v == null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && typeof v.content === 'string') return v.content;
  return undefined;
}

export class Tokenizer {
  readonly hf: HFTokenizer;
  readonly config: Record<string, unknown>;
  /** The model's own Jinja chat template (default variant), if it has one. */
  readonly chatTemplate: string | undefined;
  /** Named chat templates when tokenizer_config.chat_template is a list (e.g. `tool_use`). */
  readonly chatTemplates: Record<string, string>;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly padToken: string | undefined;
  readonly unkToken: string | undefined;
  readonly bosId: number | undefined;
  /** The tokenizer's eos id (tokenizer_config.eos_token). Templates may use a different end-of-turn id. */
  readonly eosId: number | undefined;
  /** All ids that end generation: eos plus generation_config eos ids. */
  readonly eosIds: number[];
  /** pad_token id, falling back to eos (as LLaMA-Factory does). */
  readonly padId: number | undefined;
  /** tokenizer_config.add_bos_token (LLaMA-Factory's pretraining uses it). */
  readonly addBosToken: boolean;
  private readonly specialIds: Set<number>;
  private readonly addedById: Map<number, string>;
  /** Strings of the added tokens flagged special: what text can turn into a control token. */
  readonly controlTokens: readonly string[];
  private readonly json: { added_tokens?: AddedTokenJson[] };
  private textOnly: HFTokenizer | undefined;
  private vocabSizeCache: number | undefined;
  private maxTokenCharsCache: number | undefined;
  private readonly encodeCache = new Map<string, number[]>();

  constructor(files: TokenizerFiles) {
    const tj = typeof files.tokenizerJson === 'string' ? JSON.parse(files.tokenizerJson) : files.tokenizerJson;
    const cfg = { ...((files.tokenizerConfig ?? {}) as Record<string, unknown>) };
    this.config = cfg;
    this.hf = new HFTokenizer(tj, cfg);

    const tpl = cfg.chat_template as unknown;
    const templates: Record<string, string> = {};
    if (typeof tpl === 'string') templates.default = tpl;
    else if (Array.isArray(tpl)) {
      for (const t of tpl as Array<{ name?: string; template?: string }>) {
        if (t && typeof t.name === 'string' && typeof t.template === 'string') templates[t.name] = t.template;
      }
    }
    if (files.chatTemplate !== undefined) templates.default = files.chatTemplate;
    this.chatTemplates = templates;
    this.chatTemplate = templates.default;

    this.json = tj;
    this.addedById = new Map();
    this.specialIds = new Set();
    const control: string[] = [];
    for (const t of this.json.added_tokens ?? []) {
      this.addedById.set(t.id, t.content);
      if (t.special) {
        this.specialIds.add(t.id);
        control.push(t.content);
      }
    }
    this.controlTokens = control;

    this.bosToken = tokenContent(cfg.bos_token as ConfigToken);
    this.eosToken = tokenContent(cfg.eos_token as ConfigToken);
    this.padToken = tokenContent(cfg.pad_token as ConfigToken);
    this.unkToken = tokenContent(cfg.unk_token as ConfigToken);
    this.bosId = this.bosToken !== undefined ? this.tokenToId(this.bosToken) : undefined;
    this.eosId = this.eosToken !== undefined ? this.tokenToId(this.eosToken) : undefined;
    for (const v of [this.bosId, this.eosId]) if (v !== undefined) this.specialIds.add(v);
    const eosIds = new Set<number>();
    if (this.eosId !== undefined) eosIds.add(this.eosId);
    const genEos = (files.generationConfig as { eos_token_id?: number | number[] } | undefined)?.eos_token_id;
    for (const id of Array.isArray(genEos) ? genEos : genEos !== undefined ? [genEos] : []) eosIds.add(id);
    this.eosIds = [...eosIds];
    const pad = this.padToken !== undefined ? this.tokenToId(this.padToken) : undefined;
    this.padId = pad ?? this.eosId;
    this.addBosToken = cfg.add_bos_token === true;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (text.length === 0) return opts.addSpecialTokens ? this.hf.encode('', { add_special_tokens: true }).ids : [];
    if (opts.addSpecialTokens) return this.hf.encode(text, { add_special_tokens: true }).ids;
    // Preference and KTO examples encode the same prompt texts twice: keep recent results.
    const hit = this.encodeCache.get(text);
    if (hit) return hit.slice();
    const ids = this.hf.encode(text, { add_special_tokens: false }).ids;
    if (text.length >= 32) {
      if (this.encodeCache.size >= 512) this.encodeCache.delete(this.encodeCache.keys().next().value!);
      this.encodeCache.set(text, ids.slice());
    }
    return ids;
  }

  /** How many tokens `text` comes to (as encode, without its cache): for bounds on long texts. */
  countTokens(text: string): number {
    return text.length === 0 ? 0 : this.hf.encode(text, { add_special_tokens: false }).ids.length;
  }

  /**
   * Encode with special tokens read as plain text, transformers' `split_special_tokens`: the
   * characters "<|im_end|>" become ordinary tokens, never the control token. Added tokens that
   * are not special (Qwen's <think>, say) are still matched, as transformers does.
   */
  encodeAsText(text: string): number[] {
    if (text.length === 0) return [];
    // A second tokenizer without the special added tokens, built on first use.
    this.textOnly ??= new HFTokenizer({ ...this.json, added_tokens: (this.json.added_tokens ?? []).filter((t) => !t.special) }, this.config);
    return this.textOnly.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    if (ids.length === 0) return '';
    return this.hf.decode(Array.from(ids), { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  /** Id of a token string (vocabulary or added token); undefined if absent. */
  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  /** Like tokenToId but throws a helpful error. */
  requireTokenId(token: string, why = ''): number {
    const id = this.tokenToId(token);
    if (id === undefined) throw new Error(`token ${JSON.stringify(token)} is not in the tokenizer's vocabulary${why ? ` (${why})` : ''}`);
    return id;
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** Added tokens flagged special in tokenizer.json, plus bos/eos. */
  get specialTokens(): SpecialToken[] {
    return [...this.specialIds].sort((a, b) => a - b).map((id) => ({ id, content: this.addedById.get(id) ?? this.idToToken(id) ?? '' }));
  }

  /** Strings of all added tokens (special or not). */
  get addedTokens(): SpecialToken[] {
    return [...this.addedById.entries()].map(([id, content]) => ({ id, content }));
  }

  get vocabSize(): number {
    if (this.vocabSizeCache === undefined) {
      let max = -1;
      for (const id of this.hf.get_vocab(true).values()) if (id > max) max = id;
      this.vocabSizeCache = max + 1;
    }
    return this.vocabSizeCache;
  }

  /**
   * Characters of the longest token string in the vocabulary. No token covers more characters of
   * the text it was read from, so a text longer than n * maxTokenChars needs more than n tokens.
   */
  get maxTokenChars(): number {
    if (this.maxTokenCharsCache === undefined) {
      let max = 1;
      for (const token of this.hf.get_vocab(true).keys()) if (token.length > max) max = token.length;
      this.maxTokenCharsCache = max;
    }
    return this.maxTokenCharsCache;
  }

  /**
   * Incremental decoder for generation. Decodes a sliding window of ids so that tokenizers whose
   * decoders depend on context (SentencePiece's leading space, byte-level pieces of one character)
   * produce exactly the text a full decode would, and holds text back while it ends in an
   * incomplete UTF-8 sequence (U+FFFD).
   */
  createStreamDecoder(opts: DecodeOptions = {}): StreamDecoder {
    const ids: number[] = [];
    let prefixOffset = 0;
    let readOffset = 0;
    const dec = (a: number, b: number) => this.decode(ids.slice(a, b), opts);
    return {
      push: (id: number) => {
        ids.push(id);
        const prefixText = dec(prefixOffset, readOffset);
        const newText = dec(prefixOffset, ids.length);
        if (newText.length > prefixText.length && !newText.endsWith('\uFFFD') && newText.startsWith(prefixText)) {
          const out = newText.slice(prefixText.length);
          prefixOffset = readOffset;
          readOffset = ids.length;
          return out;
        }
        if (newText.length > prefixText.length && !newText.endsWith('\uFFFD')) {
          // The decoder rewrote earlier text (rare: cleanup rules). Emit the common extension only.
          let i = 0;
          while (i < prefixText.length && prefixText[i] === newText[i]) i++;
          const out = i === prefixText.length ? newText.slice(i) : '';
          if (out) {
            prefixOffset = readOffset;
            readOffset = ids.length;
          }
          return out;
        }
        return '';
      },
      flush: () => {
        const prefixText = dec(prefixOffset, readOffset);
        const all = dec(prefixOffset, ids.length);
        const out = all.startsWith(prefixText) ? all.slice(prefixText.length) : '';
        ids.length = 0;
        prefixOffset = 0;
        readOffset = 0;
        return out;
      },
    };
  }
}

export function loadTokenizer(files: TokenizerFiles): Tokenizer {
  return new Tokenizer(files);
}
