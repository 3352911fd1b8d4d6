// Sentence BLEU as NLTK's sentence_bleu computes it (nltk.translate.bleu_score), with the smoothing
// LLaMA-Factory uses (SmoothingFunction().method3, NIST geometric smoothing) and uniform weights.

import { fsum } from './python-float';

/** NLTK's modified precision of order n: clipped matches over hypothesis n-grams (at least 1). */
export function modifiedPrecision(references: readonly (readonly string[])[], hypothesis: readonly string[], n: number): { numerator: number; denominator: number } {
  const counts = ngramCounts(hypothesis, n);
  const maxRef = new Map<string, number>();
  for (const ref of references) {
    const refCounts = ngramCounts(ref, n);
    for (const g of counts.keys()) maxRef.set(g, Math.max(maxRef.get(g) ?? 0, refCounts.get(g) ?? 0));
  }
  let numerator = 0;
  let total = 0;
  for (const [g, c] of counts) {
    numerator += Math.min(c, maxRef.get(g) ?? 0);
    total += c;
  }
  return { numerator, denominator: Math.max(1, total) };
}

/** The reference length closest to the hypothesis length (the shorter one on a tie). */
export function closestRefLength(references: readonly (readonly string[])[], hypLen: number): number {
  let best = references[0]!.length;
  for (const r of references) {
    const d = Math.abs(r.length - hypLen);
    const bd = Math.abs(best - hypLen);
    if (d < bd || (d === bd && r.length < best)) best = r.length;
  }
  return best;
}

export function brevityPenalty(closestRefLen: number, hypLen: number): number {
  if (hypLen > closestRefLen) return 1;
  if (hypLen === 0) return 0;
  return Math.exp(1 - closestRefLen / hypLen);
}

/**
 * sentence_bleu(references, hypothesis, weights, smoothing_function=method3): 0 when no unigram
 * matches; otherwise orders without matches get 1 / (2^k * their n-gram count), k = 1, 2, ...
 * in order, and the score is BP * exp(fsum(w_n * log p_n)).
 */
export function sentenceBleu(references: readonly (readonly string[])[], hypothesis: readonly string[], weights: readonly number[] = [0.25, 0.25, 0.25, 0.25]): number {
  if (references.length === 0) throw new Error('sentenceBleu: at least one reference is needed');
  const precisions = weights.map((_, i) => modifiedPrecision(references, hypothesis, i + 1));
  const bp = brevityPenalty(closestRefLength(references, hypothesis.length), hypothesis.length);
  if (precisions[0]!.numerator === 0) return 0;
  let k = 1;
  const p = precisions.map(({ numerator, denominator }) => (numerator === 0 ? 1 / (2 ** k++ * denominator) : numerator / denominator));
  return bp * Math.exp(fsum(weights.flatMap((w, i) => (p[i]! > 0 ? [w * Math.log(p[i]!)] : []))));
}

function ngramCounts(tokens: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = JSON.stringify(tokens.slice(i, i + n));
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}
