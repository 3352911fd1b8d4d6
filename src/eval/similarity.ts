// LLaMA-Factory's ComputeSimilarity (train/sft/metric.py), the metrics of predict_with_generate:
// per example, ROUGE-1/2/L f-scores on jieba words and BLEU-4 on characters, each x100 and
// rounded to 4 decimals; the reported value is numpy's mean of those.

import { sentenceBleu } from './bleu';
import { npMean, pyRound } from './python-float';
import { rougeScores } from './rouge';
import { hasWord, segmentWords } from './segment';

export const SIMILARITY_METRICS = ['rouge-1', 'rouge-2', 'rouge-l', 'bleu-4'] as const;
export type SimilarityMetric = (typeof SIMILARITY_METRICS)[number];
export type SimilarityScores = Record<SimilarityMetric, number>;

/** One prediction against its label, as LLaMA-Factory scores it (percentages, 4 decimals). */
export function similarityScores(predict: string, label: string): SimilarityScores {
  const hypothesis = segmentWords(predict).join(' ');
  const reference = segmentWords(label).join(' ');
  // no words on either side: ROUGE is 0 (rouge_chinese would fail on an empty text)
  const empty = !hasWord(hypothesis) || !hasWord(reference);
  const rouge = empty ? null : rougeScores(hypothesis, reference);
  const bleu = sentenceBleu([Array.from(label)], Array.from(predict));
  return {
    'rouge-1': pyRound((rouge?.['rouge-1'].f ?? 0) * 100, 4),
    'rouge-2': pyRound((rouge?.['rouge-2'].f ?? 0) * 100, 4),
    'rouge-l': pyRound((rouge?.['rouge-l'].f ?? 0) * 100, 4),
    'bleu-4': pyRound(bleu * 100, 4),
  };
}

/** The averaged scores over prediction/label pairs (none: an error, as numpy's mean of nothing is NaN). */
export function computeSimilarity(pairs: readonly { predict: string; label: string }[]): SimilarityScores {
  if (pairs.length === 0) throw new Error('computeSimilarity: there are no predictions to score');
  const per = pairs.map((p) => similarityScores(p.predict, p.label));
  return Object.fromEntries(SIMILARITY_METRICS.map((m) => [m, npMean(per.map((s) => s[m]))])) as SimilarityScores;
}
