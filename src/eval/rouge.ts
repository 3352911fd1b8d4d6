// ROUGE-1, ROUGE-2 and ROUGE-L as rouge_chinese's Rouge().get_scores(hyp, ref) computes them on
// space-separated words (LLaMA-Factory joins jieba's tokens with spaces):
//  - each text is cut into sentences after 。！？? (and six dots, two ellipses, closing quotes),
//    each sentence's whitespace runs become single spaces, and the words are the sentences split
//    on " " (a sentence of only whitespace gives one empty word, as in the Python code);
//  - ROUGE-N counts distinct n-grams (the library's default `exclusive=True` uses sets);
//  - ROUGE-L is the longest common subsequence of the whole word lists;
//  - f = 2 * p * r / (p + r + 1e-8), with p or r 0 where their count is 0.

import { PY_SPACE } from './segment';

export interface RougeScore {
  f: number;
  p: number;
  r: number;
}

export interface RougeScores {
  'rouge-1': RougeScore;
  'rouge-2': RougeScore;
  'rouge-l': RougeScore;
}

const NOT_QUOTE = '([^\u201d\u2019])';
const SENTENCE_BREAKS: readonly RegExp[] = [
  new RegExp(`([\u3002\uff01\uff1f?])${NOT_QUOTE}`, 'gu'),
  new RegExp(`(\\.{6})${NOT_QUOTE}`, 'gu'),
  new RegExp(`(\u2026{2})${NOT_QUOTE}`, 'gu'),
  new RegExp(`([\u3002\uff01\uff1f?][\u201d\u2019])([^\uff0c\u3002\uff01\uff1f?])`, 'gu'),
];
const TRAILING_SPACE = new RegExp(`[${PY_SPACE}]+$`, 'u');
const SPACE_RUN = new RegExp(`[${PY_SPACE}]+`, 'gu');

/** rouge_chinese's cut_sent: the text split into sentences. */
export function cutSentences(text: string): string[] {
  let t = text;
  for (const re of SENTENCE_BREAKS) t = t.replace(re, '$1\n$2');
  return t.replace(TRAILING_SPACE, '').split('\n');
}

/** The words rouge_chinese scores: sentences (non-empty ones) normalised, then split on " ". */
export function rougeWords(text: string): string[] {
  return cutSentences(text)
    .filter((s) => s.length > 0)
    .map((s) => s.split(SPACE_RUN).filter((w) => w !== '').join(' '))
    .flatMap((s) => s.split(' '));
}

export function rougeScores(hypothesis: string, reference: string): RougeScores {
  const hyp = rougeWords(hypothesis);
  const ref = rougeWords(reference);
  return { 'rouge-1': rougeN(hyp, ref, 1), 'rouge-2': rougeN(hyp, ref, 2), 'rouge-l': rougeL(hyp, ref) };
}

export function rougeN(hyp: readonly string[], ref: readonly string[], n: number): RougeScore {
  const h = ngramSet(hyp, n);
  const r = ngramSet(ref, n);
  let overlap = 0;
  for (const g of h) if (r.has(g)) overlap++;
  const p = h.size === 0 ? 0 : overlap / h.size;
  const rec = r.size === 0 ? 0 : overlap / r.size;
  return { f: fScore(p, rec), p, r: rec };
}

export function rougeL(hyp: readonly string[], ref: readonly string[]): RougeScore {
  if (hyp.length === 0 || ref.length === 0) throw new Error('rougeL: both texts need at least one word');
  const lcs = lcsLength(ref, hyp);
  const r = lcs / ref.length;
  const p = lcs / hyp.length;
  return { f: fScore(p, r), p, r };
}

function fScore(p: number, r: number): number {
  return 2.0 * ((p * r) / (p + r + 1e-8));
}

/** Words contain no spaces, so n words joined by spaces name an n-gram uniquely. */
function ngramSet(words: readonly string[], n: number): Set<string> {
  const set = new Set<string>();
  for (let i = 0; i + n <= words.length; i++) set.add(words.slice(i, i + n).join(' '));
  return set;
}

function lcsLength(x: readonly string[], y: readonly string[]): number {
  let prev = new Array<number>(y.length + 1).fill(0);
  for (let i = 1; i <= x.length; i++) {
    const row = new Array<number>(y.length + 1).fill(0);
    for (let j = 1; j <= y.length; j++) row[j] = x[i - 1] === y[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, row[j - 1]!);
    prev = row;
  }
  return prev[y.length]!;
}
