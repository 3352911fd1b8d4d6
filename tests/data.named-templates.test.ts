// Every named template against LLaMA-Factory's own rendering of the same conversations
// (tests/fixtures/templates: made by render-llamafactory.py from LLaMA-Factory's template.py).
import { Template as JinjaTemplate } from '@huggingface/jinja';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { keysHelp } from '../src/cli/keys.ts';
import { getTemplate, NamedTemplate, TEMPLATE_NAMES, savedTokenizerConfig, templateFromConfig, UnknownTemplateError, withChatTemplate, type Conversation, type Message, type Turn } from '../src/data/templates.ts';
import { loadTokenizer, type Tokenizer } from '../src/data/tokenizer.ts';
import { getToolFormat, setLlama3ToolDate, TOOL_FORMATS } from '../src/data/tools.ts';
import { FIXTURES, lenmlDir } from './fixtures/data/helpers.ts';

type Piece = string | { bos: true } | { eos: true } | { token: string };
interface Pair { prompt: Piece[]; response: Piece[] }
interface LfMessage { role: 'user' | 'assistant' | 'function' | 'observation'; content: string }
interface Rendering {
  eos_token: string;
  stop_words: string[];
  efficient_eos: boolean;
  replace_jinja_template: boolean;
  reasoning: boolean;
  thought_words: [string, string] | null;
  jinja: string | null;
  jinja_without_bos: string | null;
  multiturn: Pair[];
  multiturn_default_system: Pair[];
  oneturn: Pair;
  generation: Piece[];
  tools: Pair[];
  function_call_with_thought: { content: string; multiturn?: Pair[]; error?: string };
  function_call_in_tool_call_words: { content: string; multiturn?: Pair[]; error?: string };
  thought_messages?: LfMessage[];
  thinking?: { multiturn: Pair[]; multiturn_mask_history: Pair[]; oneturn: Pair };
  no_thinking?: { multiturn: Pair[]; oneturn: Pair; generation: Piece[] };
}
interface Renderings {
  source: string;
  conversation: { system: string; messages: LfMessage[]; tools: string; tool_messages: LfMessage[] };
  eos_token: string;
  llama3_tool_date: string;
  all_names: string[];
  tool_formats: string[];
  multimodal: string[];
  templates: Record<string, Rendering>;
}

const LF: Renderings = JSON.parse(readFileSync(join(FIXTURES, '..', 'templates', 'llamafactory-renderings.json'), 'utf8'));
const { system, tools } = LF.conversation;
const messages = (list: LfMessage[]): Message[] => list.map((m) => ({ role: m.role === 'function' ? 'function_call' : m.role, content: m.content }));
const conv: Conversation = { system, messages: messages(LF.conversation.messages) };

/** Llama 3's tokenizer files plus every template's stop words as special tokens, as LLaMA-Factory's fix_special_tokens adds them. */
function testTokenizerFiles(): { json: object; config: Record<string, unknown> } {
  const dir = lenmlDir('llama3');
  const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as { added_tokens: Array<Record<string, unknown>> };
  const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  const known = new Set(json.added_tokens.map((t) => t.content));
  let id = Math.max(...json.added_tokens.map((t) => t.id as number)) + 1;
  for (const r of Object.values(LF.templates)) {
    for (const word of [...r.stop_words, r.eos_token]) {
      if (known.has(word)) continue;
      known.add(word);
      json.added_tokens.push({ id: id++, content: word, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    }
  }
  return { json, config };
}

let files: { json: object; config: Record<string, unknown> };
/** The test tokenizer with Llama 3's own chat_template. */
let tok: Tokenizer;
/** The test tokenizer with no chat_template. */
let bare: Tokenizer;
let bareConfig: Record<string, unknown>;
/** The test tokenizer with no chat_template and no bos_token. */
let bareNoBos: Tokenizer;
beforeAll(() => {
  files = testTokenizerFiles();
  const { chat_template: _, ...withoutTemplate } = files.config;
  bareConfig = withoutTemplate;
  tok = loadTokenizer({ tokenizerJson: files.json, tokenizerConfig: files.config });
  bare = loadTokenizer({ tokenizerJson: files.json, tokenizerConfig: bareConfig });
  bareNoBos = loadTokenizer({ tokenizerJson: files.json, tokenizerConfig: { ...bareConfig, bos_token: null } });
  setLlama3ToolDate(() => LF.llama3_tool_date);
});

describe("named templates render as LLaMA-Factory's template.py", () => {
  it('the fixture covers every named template', () => {
    // qwen2_vl is LLaMA-Factory's qwen ChatML with its own default system: tests/data.qwen2vl-dataset.test.ts
    expect(Object.keys(LF.templates).sort()).toEqual(TEMPLATE_NAMES.filter((n) => n !== 'qwen2_vl').sort());
    expect(LF.source).toMatch(/^hiyouga\/LLaMA-Factory [0-9a-f]{40}, /);
  });

  describe.each(TEMPLATE_NAMES.filter((n) => n in LF.templates).map((n) => [n]))('%s', (name) => {
    const lf = () => LF.templates[name];
    /** LLaMA-Factory encodes each piece on its own; so does the expectation. */
    const ids = (pieces: Piece[], eosId: number): number[] =>
      pieces.flatMap((p) => (typeof p === 'string' ? tok.encode(p) : 'bos' in p ? [tok.bosId!] : 'eos' in p ? [eosId] : [tok.requireTokenId(p.token)]));
    // Text first, for a readable difference; then the ids, which also catch pieces tokenised together.
    const same = (actual: number[], expected: Piece[], eosId: number) => {
      const want = ids(expected, eosId);
      expect(tok.decode(actual)).toBe(tok.decode(want));
      expect(actual).toEqual(want);
    };
    const sameTurns = (actual: Turn[], expected: Pair[], eosId: number) => {
      expect(actual.length).toBe(expected.length);
      actual.forEach((t, i) => {
        same(t.prompt, expected[i].prompt, eosId);
        same(t.response, expected[i].response, eosId);
      });
    };

    it('eos, stop words and efficient_eos', () => {
      const t = getTemplate(name, tok);
      expect(t.eosId).toBe(tok.requireTokenId(lf().eos_token));
      for (const w of lf().stop_words) expect(t.stopIds).toContain(tok.requireTokenId(w));
      expect(t.efficientEos).toBe(lf().efficient_eos);
    });

    it('a multi-turn conversation with a system prompt, without one (default system), one-turn, and a generation prompt', () => {
      const t = getTemplate(name, tok);
      sameTurns(t.encodeConversation(conv).turns, lf().multiturn, t.eosId);
      sameTurns(t.encodeConversation({ messages: conv.messages }).turns, lf().multiturn_default_system, t.eosId);
      const one = t.encodeOneTurn(conv);
      same(one.prompt, lf().oneturn.prompt, t.eosId);
      same(one.response, lf().oneturn.response, t.eosId);
      same(t.renderForGeneration(conv.messages.slice(0, 5), { system }), lf().generation, t.eosId);
    });

    it('tools, a function call and its observation', () => {
      const t = getTemplate(name, tok);
      sameTurns(t.encodeConversation({ tools, messages: messages(LF.conversation.tool_messages) }).turns, lf().tools, t.eosId);
    });

    it('a function call with a thought before it (kept as text, or refused where LLaMA-Factory refuses it)', () => {
      const { content, multiturn, error } = lf().function_call_with_thought;
      const t = getTemplate(name, tok);
      const c: Conversation = { messages: [messages(LF.conversation.tool_messages)[0], { role: 'function_call', content }] };
      if (error) expect(() => t.encodeConversation(c)).toThrow(/function_call content is not valid JSON/);
      else sameTurns(t.encodeConversation(c).turns, multiturn!, t.eosId);
    });

    it("a function call wrapped in the template's tool-call words, after text", () => {
      const { content, multiturn, error } = lf().function_call_in_tool_call_words;
      const t = getTemplate(name, tok);
      const c: Conversation = { messages: [messages(LF.conversation.tool_messages)[0], { role: 'function_call', content }] };
      if (error) expect(() => t.encodeConversation(c)).toThrow(/function_call content is not valid JSON/);
      else sameTurns(t.encodeConversation(c).turns, multiturn!, t.eosId);
    });

    it('thoughts: kept, dropped from history with mask_history, and with enable_thinking false', () => {
      const r = lf();
      if (!r.reasoning) {
        expect(r.thinking).toBeUndefined();
        return;
      }
      const c: Conversation = { system, messages: messages(r.thought_messages!) };
      const on = getTemplate(name, tok);
      sameTurns(on.encodeConversation(c).turns, r.thinking!.multiturn, on.eosId);
      sameTurns(on.encodeConversation(c, { maskHistory: true }).turns, r.thinking!.multiturn_mask_history, on.eosId);
      const one = on.encodeOneTurn(c);
      same(one.prompt, r.thinking!.oneturn.prompt, on.eosId);
      same(one.response, r.thinking!.oneturn.response, on.eosId);
      const off = getTemplate(name, tok, { enableThinking: false });
      sameTurns(off.encodeConversation(c).turns, r.no_thinking!.multiturn, off.eosId);
      const oneOff = off.encodeOneTurn(c);
      same(oneOff.prompt, r.no_thinking!.oneturn.prompt, off.eosId);
      same(oneOff.response, r.no_thinking!.oneturn.response, off.eosId);
      same(off.renderForGeneration(conv.messages.slice(0, 5), { system }), r.no_thinking!.generation, off.eosId);
    });

    it("the chat_template a saved tokenizer gets (fix_jinja_template)", () => {
      const r = lf();
      const t = getTemplate(name, bare) as NamedTemplate;
      expect(t.chatTemplateToSave() ?? null).toBe(r.jinja);
      expect((getTemplate(name, bareNoBos) as NamedTemplate).chatTemplateToSave() ?? null).toBe(r.jinja_without_bos);
      const own = getTemplate(name, tok) as NamedTemplate;
      expect(own.chatTemplateToSave() ?? null).toBe(r.replace_jinja_template ? r.jinja : null);
    });
  });
});

describe('the saved chat_template', () => {
  const text = (pieces: Piece[], eos: string) => pieces.map((p) => (typeof p === 'string' ? p : 'bos' in p ? tok.bosToken : 'eos' in p ? eos : p.token)).join('');

  const joined = (pairs: Pair[], eos: string) => pairs.map((p) => text(p.prompt, eos) + text(p.response, eos)).join('');
  const jinjaMessages = (list: LfMessage[]) => list.map((m) => ({ role: m.role, content: m.content }));

  it.each(TEMPLATE_NAMES.filter((n) => n in LF.templates && !LF.templates[n].reasoning).map((n) => [n]))(
    '%s: renders the conversation as the template does, with a system prompt and with the default one',
    (name) => {
      const r = LF.templates[name];
      const source = (getTemplate(name, bare) as NamedTemplate).chatTemplateToSave()!;
      const jinja = new JinjaTemplate(source);
      expect(jinja.render({ messages: [{ role: 'system', content: system }, ...jinjaMessages(LF.conversation.messages)] })).toBe(joined(r.multiturn, r.eos_token));
      expect(jinja.render({ messages: jinjaMessages(LF.conversation.messages) })).toBe(joined(r.multiturn_default_system, r.eos_token));
    },
  );

  // LLaMA-Factory's Jinja writes a response as it is; its reasoning template adds an empty thought
  // to a response without one. With that thought written into the message, both give the same text.
  it.each(TEMPLATE_NAMES.filter((n) => n in LF.templates && LF.templates[n].reasoning).map((n) => [n]))(
    '%s (reasoning): renders responses that carry their thoughts as the template does',
    (name) => {
      const r = LF.templates[name];
      const [open, close] = r.thought_words!;
      const withThoughts = jinjaMessages(r.thought_messages!).map((m) => (m.role === 'assistant' && !m.content.includes(open) ? { ...m, content: open + close + m.content } : m));
      const source = (getTemplate(name, bare) as NamedTemplate).chatTemplateToSave()!;
      const rendered = new JinjaTemplate(source).render({ messages: [{ role: 'system', content: system }, ...withThoughts] });
      expect(rendered).toBe(joined(r.thinking!.multiturn, r.eos_token));
    },
  );

  it("carries a config's default_system, which the model then uses when a conversation has no system message", () => {
    const t = templateFromConfig({ template: 'llama3', default_system: "Be brief, it's late." }, bare) as NamedTemplate;
    const rendered = new JinjaTemplate(t.chatTemplateToSave()!).render({ messages: [{ role: 'user', content: 'Hi' }] });
    expect(rendered).toBe(tok.decode(t.encodeOneTurn({ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: '' }] }).prompt));
    expect(rendered).toContain("system<|end_header_id|>\n\nBe brief, it's late.<|eot_id|>");
  });

  // Text, not ids: the template encodes slot by slot, a Jinja rendering in one piece ("." and "<" may merge).
  it.each([['deepseek3'], ['llama3'], ['mistral'], ['granite3'], ['gemma3'], ['lfm2']])('%s: a model saved with it splits turns as the template does, with its own chat_template', (name) => {
    const config = JSON.parse(withChatTemplate('tokenizer_config.json', JSON.stringify(bareConfig), getTemplate(name, bare))) as Record<string, unknown>;
    const saved = loadTokenizer({ tokenizerJson: files.json, tokenizerConfig: config });
    const own = getTemplate(undefined, saved);
    expect(own.name).toBe('jinja');
    const text = (turns: Turn[]) => turns.map((t) => [saved.decode(t.prompt), saved.decode(t.response)]);
    expect(text(own.encodeConversation(conv).turns)).toEqual(text(getTemplate(name, saved).encodeConversation(conv).turns));
  });

  it('goes into tokenizer_config.json with the replaced eos_token, and that eos as pad_token where the model has none', () => {
    const original = { bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>', model_max_length: 8192 };
    const before = structuredClone(original);
    expect(savedTokenizerConfig(original, getTemplate('qwen3', bare))).toEqual({
      ...original,
      eos_token: '<|im_end|>',
      pad_token: '<|im_end|>',
      chat_template: LF.templates.qwen3.jinja,
    });
    expect(original).toEqual(before);
    // a pad_token of the model stays, in either spelling; a template without replace_eos keeps the eos
    const padded = { ...original, pad_token: { content: '<|finetune_right_pad_id|>', special: true } };
    expect(savedTokenizerConfig(padded, getTemplate('llama3', bare))).toEqual({ ...padded, eos_token: '<|eot_id|>', chat_template: LF.templates.llama3.jinja });
    expect(savedTokenizerConfig({ ...original, pad_token: '<pad>' }, getTemplate('deepseek3', bare))).toEqual({
      ...original,
      pad_token: '<pad>',
      chat_template: LF.templates.deepseek3.jinja,
    });
    // the model's own Jinja template: only the missing pad_token
    expect(savedTokenizerConfig(original, getTemplate(undefined, tok))).toEqual({ ...original, pad_token: '<|end_of_text|>' });
  });

  it('a model with its own chat_template keeps it unless the template replaces it (chatml); side files change only where the config does', () => {
    const own = { bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>', pad_token: '<|end_of_text|>', chat_template: '{{ messages }}' };
    const ownText = JSON.stringify(own);
    expect(withChatTemplate('tokenizer_config.json', ownText, getTemplate('deepseek3', tok))).toBe(ownText);
    expect(withChatTemplate('tokenizer_config.json', ownText, getTemplate(undefined, tok))).toBe(ownText);
    expect(JSON.parse(withChatTemplate('tokenizer_config.json', ownText, getTemplate('chatml', tok)))).toEqual({ ...own, eos_token: '<|im_end|>', chat_template: LF.templates.chatml.jinja });
    expect(withChatTemplate('chat_template.jinja', '{{ messages }}', getTemplate('qwen3', tok))).toBe('{{ messages }}');
    expect(withChatTemplate('chat_template.jinja', '{{ messages }}', getTemplate('chatml', tok))).toBe(LF.templates.chatml.jinja);
    expect(withChatTemplate('tokenizer.json', '{"x": 1}', getTemplate('qwen3', bare))).toBe('{"x": 1}');
    expect(() => withChatTemplate('tokenizer_config.json', '{"eos_token": ', getTemplate('qwen3', bare))).toThrow(/^tokenizer_config\.json, line 1: not valid JSON/);
  });
});

describe('template names LLaMA-Factory has and Crucible does not offer', () => {
  const refusal = (name: string): Error => {
    try {
      getTemplate(name, tok);
    } catch (e) {
      return e as Error;
    }
    throw new Error(`template "${name}" was accepted`);
  };

  it('the text templates of multimodal families Crucible runs are offered; every other multimodal name is refused as multimodal', () => {
    expect(LF.multimodal.filter((n) => TEMPLATE_NAMES.includes(n))).toEqual(['gemma3', 'llama4', 'mistral_small', 'qwen2_vl', 'qwen3_5', 'qwen3_5_nothink', 'qwen3_6']);
    for (const name of LF.multimodal.filter((n) => !TEMPLATE_NAMES.includes(n))) {
      const e = refusal(name);
      expect(e).not.toBeInstanceOf(UnknownTemplateError);
      expect(e.message).toContain(`template "${name}" is LLaMA-Factory's template for a multimodal model`);
    }
  });

  it('each other name is refused with the family it is for', () => {
    const others = LF.all_names.filter((n) => !TEMPLATE_NAMES.includes(n) && !LF.multimodal.includes(n));
    expect(others.length).toBeGreaterThan(0);
    for (const name of others) {
      const e = refusal(name);
      expect(e).not.toBeInstanceOf(UnknownTemplateError);
      expect(e.message).toMatch(new RegExp(`^template "${name}" is LLaMA-Factory's template for .+ models, an architecture Crucible does not run`));
    }
  });

  it('a name LLaMA-Factory does not have is unknown, inherited object keys included', () => {
    for (const name of ['qwen4', 'toString', 'constructor']) expect(refusal(name)).toBeInstanceOf(UnknownTemplateError);
  });
});

describe("LLaMA-Factory's tool formats", () => {
  it('each is offered, or refused with the family it is for; other names are unknown', () => {
    const offered = LF.tool_formats.filter((n) => Object.hasOwn(TOOL_FORMATS, n));
    expect(offered).toEqual(['default', 'lfm2', 'llama3', 'mistral', 'qwen', 'qwen3_5']);
    for (const name of LF.tool_formats.filter((n) => !offered.includes(n))) {
      expect(() => getToolFormat(name)).toThrow(new RegExp(`^tool_format "${name}" is LLaMA-Factory's tool format for .+ models, not implemented in Crucible`));
    }
    for (const name of ['qwen4', 'toString', 'constructor']) expect(() => getToolFormat(name)).toThrow(new RegExp(`^unknown tool_format "${name}"; valid: `));
  });
});

describe('the template keys of a config', () => {
  it('choose the template and its options, for export as for training', () => {
    const t = templateFromConfig({ template: 'qwen3', enable_thinking: false, default_system: 'Be brief.', tool_format: null }, tok);
    expect(tok.decode(t.renderForGeneration([{ role: 'user', content: 'Hi' }]))).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n',
    );
    expect(templateFromConfig({}, tok).name).toBe('jinja');
    for (const key of ['template', 'default_system', 'enable_thinking']) expect(keysHelp('export')).toContain(`  ${key} (`);
  });
});
