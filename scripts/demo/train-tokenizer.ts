// Trains the demo model's byte-level BPE tokenizer on the demo corpus and writes it as a standard
// Hugging Face tokenizer.json (BPE model, ByteLevel pre-tokenizer and decoder, as GPT-2 and Qwen)
// plus tokenizer_config.json with a ChatML chat template.
//
//   node --import ./bin/register.js scripts/demo/train-tokenizer.ts [--out=public/demo/model]
//
// BPE training as in Sennrich et al. / HF tokenizers: text is split into words by the GPT-2
// regex, words into bytes (shown as GPT-2's printable byte characters), and the most frequent
// adjacent pair is merged repeatedly (ties: the pair whose merged string sorts first), with pair
// counts updated incrementally.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { arg, corpusTexts, MODEL_DIR, NUM_MERGES, SPECIALS, VOCAB_SIZE } from './common';

/** GPT-2's pre-tokenization regex (what ByteLevel with use_regex applies). */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's bytes_to_unicode: printable characters for the 256 byte values. */
export function byteChars(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out: string[] = new Array(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i]!)));
  return out;
}

export function trainBpe(texts: readonly string[], numMerges: number): { tokens: string[]; merges: [string, string][] } {
  const chars = byteChars();
  const enc = new TextEncoder();
  // word (as byte ids) -> count
  const wordCounts = new Map<string, number>();
  for (const t of texts) for (const m of t.matchAll(GPT2_SPLIT)) wordCounts.set(m[0], (wordCounts.get(m[0]) ?? 0) + 1);
  const words: number[][] = [];
  const counts: number[] = [];
  for (const [w, c] of wordCounts) {
    words.push([...enc.encode(w)]);
    counts.push(c);
  }
  const tokens = chars.slice(); // id -> string
  const merges: [string, string][] = [];
  const key = (a: number, b: number) => a * 65536 + b;
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const addWord = (wi: number, sign: number) => {
    const w = words[wi]!;
    for (let i = 0; i + 1 < w.length; i++) {
      const k = key(w[i]!, w[i + 1]!);
      pairCount.set(k, (pairCount.get(k) ?? 0) + sign * counts[wi]!);
      if (sign > 0) {
        let s = pairWords.get(k);
        if (!s) pairWords.set(k, (s = new Set()));
        s.add(wi);
      }
    }
  };
  for (let wi = 0; wi < words.length; wi++) addWord(wi, 1);
  for (let m = 0; m < numMerges; m++) {
    let best = -1, bestCount = 0, bestStr = '';
    for (const [k, c] of pairCount) {
      if (c < bestCount || c <= 0) continue;
      const s = tokens[Math.floor(k / 65536)]! + tokens[k % 65536]!;
      if (c > bestCount || s < bestStr) {
        best = k;
        bestCount = c;
        bestStr = s;
      }
    }
    if (best < 0) break;
    const a = Math.floor(best / 65536), b = best % 65536;
    const id = tokens.length;
    tokens.push(bestStr);
    merges.push([tokens[a]!, tokens[b]!]);
    for (const wi of pairWords.get(best) ?? []) {
      const w = words[wi]!;
      let has = false;
      for (let i = 0; i + 1 < w.length; i++) if (w[i] === a && w[i + 1] === b) has = true;
      if (!has) continue;
      addWord(wi, -1);
      const out: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          out.push(id);
          i++;
        } else out.push(w[i]!);
      }
      words[wi] = out;
      addWord(wi, 1);
    }
    pairCount.delete(best);
    pairWords.delete(best);
  }
  return { tokens, merges };
}

export const CHAT_TEMPLATE =
  "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

export function tokenizerFiles(tokens: string[], merges: [string, string][]): { tokenizer: object; config: object } {
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => (vocab[t] = i));
  const added = SPECIALS.map((content, i) => ({
    id: tokens.length + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
    },
  };
  const addedDecoder: Record<string, object> = {};
  for (const { id, ...rest } of added) addedDecoder[String(id)] = rest;
  const config = {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: addedDecoder,
    additional_special_tokens: ['<|im_start|>', '<|im_end|>'],
    bos_token: null,
    chat_template: CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: '<|im_end|>',
    errors: 'replace',
    model_max_length: 256,
    pad_token: '<|endoftext|>',
    split_special_tokens: false,
    tokenizer_class: 'PreTrainedTokenizerFast',
    unk_token: null,
  };
  return { tokenizer, config };
}

async function main() {
  const out = arg('out', MODEL_DIR);
  const texts = corpusTexts();
  const t0 = performance.now();
  const { tokens, merges } = trainBpe(texts, NUM_MERGES);
  if (tokens.length + SPECIALS.length !== VOCAB_SIZE) throw new Error(`only ${merges.length} merges found; vocabulary ${tokens.length + SPECIALS.length} != ${VOCAB_SIZE}`);
  const { tokenizer, config } = tokenizerFiles(tokens, merges);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'tokenizer.json'), JSON.stringify(tokenizer, null, 1) + '\n');
  writeFileSync(join(out, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
  console.log(`tokenizer: ${tokens.length} byte-level tokens + ${SPECIALS.length} specials, ${merges.length} merges, ${((performance.now() - t0) / 1000).toFixed(1)} s -> ${out}`);
  console.log(`longest tokens: ${[...tokens].sort((a, b) => b.length - a.length).slice(0, 12).map((t) => JSON.stringify(t)).join(' ')}`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
