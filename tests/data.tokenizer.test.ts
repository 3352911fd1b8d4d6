import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadTokenizer } from '../src/data/index.ts';
import { loadTokenizerFromDir } from '../src/data/node.ts';
import { getTemplate } from '../src/data/templates.ts';
import { lenmlDir, refs, tokenizerFor, type ModelName } from './fixtures/data/helpers.ts';

const R = refs().qwen3;

describe('tokenizer vs transformers (Qwen3 references)', () => {
  const tok = tokenizerFor('qwen3');
  it.each(R.encode.map((e) => [e.text, e] as const))('encodes and decodes %j exactly', (_t, e) => {
    expect(tok.encode(e.text, { addSpecialTokens: true })).toEqual(e.ids);
    expect(tok.encode(e.text)).toEqual(e.ids);
    expect(tok.decode(e.ids)).toBe(e.decoded);
  });

  it('renders the chat template exactly as transformers (text and ids)', () => {
    const tpl = getTemplate(undefined, tok);
    for (const c of R.chat) {
      const conv = { messages: c.messages as never };
      if (c.add_generation_prompt) {
        expect(tpl.renderForGeneration(c.messages as never)).toEqual(c.ids);
        expect(tok.decode(c.ids)).toBe(c.text);
      } else {
        const t = tpl.encodeOneTurn(conv);
        expect([...t.prompt, ...t.response]).toEqual(c.ids);
      }
    }
  });

  it('knows the special tokens', () => {
    expect(tok.eosToken).toBe('<|im_end|>');
    expect(tok.eosId).toBe(151645);
    expect(tok.bosId).toBeUndefined();
    expect(tok.padId).toBe(151643);
    expect(tok.tokenToId('<|im_start|>')).toBe(151644);
    expect(tok.idToToken(151644)).toBe('<|im_start|>');
    expect(tok.isSpecial(151644)).toBe(true);
    expect(tok.isSpecial(9707)).toBe(false);
    expect(tok.specialTokens.some((s) => s.content === '<|endoftext|>')).toBe(true);
    expect(tok.decode([151644, 872, 198, 6023, 151645], { skipSpecialTokens: true })).toBe('user\nhi');
    expect(tok.vocabSize).toBeGreaterThan(151645);
  });

  it('Gemma adds <bos> only when asked; Llama 3 has bos and eos', () => {
    const g = tokenizerFor('gemma3');
    expect(g.encode('Hello', { addSpecialTokens: true })[0]).toBe(g.bosId);
    expect(g.encode('Hello')[0]).not.toBe(g.bosId);
    expect(g.addBosToken).toBe(true);
    const l = tokenizerFor('llama3');
    expect(l.bosId).toBe(128000);
    expect(l.eosId).toBe(128001);
    expect(l.padId).toBe(128001);
  });
});

describe('streaming decode', () => {
  const texts = ['Ünïcödé — “quotes” and emoji 🤗🚀 done', '中文分词测试，以及日本語のテキスト。', ' leading  spaces\tand\nnewlines 🧪🧬', 'Hello world'];
  it.each(['qwen3', 'llama3', 'gemma3'] as ModelName[])('%s: pieces join to the full decode and never split a character', (m) => {
    const tok = tokenizerFor(m);
    for (const text of texts) {
      const ids = tok.encode(text);
      const sd = tok.createStreamDecoder();
      let out = '';
      for (const id of ids) {
        const piece = sd.push(id);
        expect(piece.includes('\uFFFD')).toBe(false);
        // each piece is well-formed UTF-16 (no lone surrogate halves)
        expect(piece).toBe(Buffer.from(piece, 'utf8').toString('utf8'));
        out += piece;
      }
      out += sd.flush();
      expect(out).toBe(tok.decode(ids));
    }
  });

  it('holds back partial UTF-8 bytes (byte-level BPE splits an emoji into several tokens)', () => {
    const tok = tokenizerFor('llama3');
    const ids = tok.encode('🤗');
    expect(ids.length).toBeGreaterThan(1);
    const sd = tok.createStreamDecoder();
    const pieces = ids.map((id) => sd.push(id));
    expect(pieces.slice(0, -1).every((p) => p === '')).toBe(true);
    expect(pieces[pieces.length - 1]).toBe('🤗');
  });

  it('skips special tokens when asked', () => {
    const tok = tokenizerFor('qwen3');
    const sd = tok.createStreamDecoder({ skipSpecialTokens: true });
    const out = tok.encode('Hi there<|im_end|>').map((id) => sd.push(id)).join('') + sd.flush();
    expect(out).toBe('Hi there');
  });
});

describe('loading', () => {
  it('loadTokenizerFromDir reads tokenizer.json and tokenizer_config.json', async () => {
    const tok = await loadTokenizerFromDir(lenmlDir('qwen3'));
    expect(tok.encode('Hello world')).toEqual([9707, 1879]);
    expect(tok.chatTemplate).toContain('<|im_start|>');
  });

  it('chat_template.jinja overrides tokenizer_config.chat_template; list-form templates are read', () => {
    const dir = lenmlDir('qwen3');
    const tokenizerJson = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
    const cfg = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
    const a = loadTokenizer({ tokenizerJson, tokenizerConfig: cfg, chatTemplate: '{{ messages[0].content }}' });
    expect(a.chatTemplate).toBe('{{ messages[0].content }}');
    const b = loadTokenizer({ tokenizerJson, tokenizerConfig: { ...cfg, chat_template: [{ name: 'default', template: 'D' }, { name: 'tool_use', template: 'T' }] } });
    expect(b.chatTemplate).toBe('D');
    expect(b.chatTemplates.tool_use).toBe('T');
    const c = loadTokenizer({ tokenizerJson, tokenizerConfig: { ...cfg, eos_token: { content: '<|endoftext|>', __type: 'AddedToken' } }, generationConfig: { eos_token_id: [151645, 151643] } });
    expect(c.eosId).toBe(151643);
    expect(c.eosIds.sort()).toEqual([151643, 151645]);
  });
});
