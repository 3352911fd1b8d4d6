// BLEU-4 and ROUGE-1/2/L as LLaMA-Factory's ComputeSimilarity computes them. Every expected value
// below is derived by hand from the formulas (NLTK's sentence_bleu with method3 smoothing,
// rouge_chinese's Rouge, Python's round / fsum / numpy's mean); the derivation is in the comments.
import { describe, expect, it } from 'vitest';
import { brevityPenalty, modifiedPrecision, sentenceBleu } from '../src/eval/bleu';
import { fsum, metricsJson, npMean, pyFloatRepr, pyRound } from '../src/eval/python-float';
import { cutSentences, rougeScores, rougeWords } from '../src/eval/rouge';
import { segmentWords } from '../src/eval/segment';
import { computeSimilarity, similarityScores } from '../src/eval/similarity';

const chars = (s: string) => Array.from(s);

describe('BLEU-4 (NLTK sentence_bleu, SmoothingFunction().method3)', () => {
  it('is 1 for an exact match', () => {
    // "abcd": p1 = 4/4, p2 = 3/3, p3 = 2/2, p4 = 1/1; hyp_len 4 is not > ref_len 4, so
    // BP = exp(1 - 4/4) = 1; BLEU = exp(0.25 * 4 * log 1) = 1
    expect(sentenceBleu([chars('abcd')], chars('abcd'))).toBe(1);
  });

  it('smooths the orders without matches by 1 / (2^k * count), k counting up', () => {
    // hyp a b x d, ref a b c d
    // p1: a, b, d match of 4 -> 3/4; p2: ab | bx, xd -> 1/3
    // p3: abx, bxd -> 0 of 2 -> smoothed 1 / (2^1 * 2) = 1/4
    // p4: abxd -> 0 of 1 -> smoothed 1 / (2^2 * 1) = 1/4
    // BP = exp(1 - 4/4) = 1; BLEU = (3/4 * 1/3 * 1/4 * 1/4)^(1/4) = (1/64)^(1/4) = 0.35355339...
    expect(modifiedPrecision([chars('abcd')], chars('abxd'), 3)).toEqual({ numerator: 0, denominator: 2 });
    expect(sentenceBleu([chars('abcd')], chars('abxd'))).toBeCloseTo(Math.pow(1 / 64, 0.25), 15);
    expect(similarityScores('abxd', 'abcd')['bleu-4']).toBe(35.3553);
  });

  it('clips repeated n-grams to their count in the reference', () => {
    // hyp a a a a, ref a a: p1 = min(4, 2)/4 = 1/2; p2 = min(3, 1)/3 = 1/3
    // p3: aaa x2, none in ref -> 0 of 2 -> 1 / (2 * 2) = 1/4; p4: aaaa x1 -> 1 / (4 * 1) = 1/4
    // hyp_len 4 > 2: BP = 1. BLEU = (1/2 * 1/3 * 1/4 * 1/4)^(1/4) = 96^(-1/4) = 0.3194715521...
    expect(modifiedPrecision([chars('aa')], chars('aaaa'), 1)).toEqual({ numerator: 2, denominator: 4 });
    expect(modifiedPrecision([chars('aa')], chars('aaaa'), 2)).toEqual({ numerator: 1, denominator: 3 });
    expect(similarityScores('aaaa', 'aa')['bleu-4']).toBe(31.9472);
  });

  it('a short hypothesis: empty higher orders count 1, brevity penalty applies', () => {
    // hyp "a", ref "ab": p1 = 1/1; p2..p4 have no n-grams: numerator 0, denominator max(1, 0) = 1
    // -> smoothed 1/2, 1/4, 1/8. BP = exp(1 - 2/1) = e^-1.
    // BLEU = e^-1 * (1 * 1/2 * 1/4 * 1/8)^(1/4) = e^-1 * 64^(-1/4) = 0.1300650237...
    expect(brevityPenalty(2, 1)).toBe(Math.exp(-1));
    expect(similarityScores('a', 'ab')['bleu-4']).toBe(13.0065);
    // the reverse: hyp "ab" against "a": p1 = 1/2 (a), p2: ab not in ref -> 0 of 1 -> 1/2,
    // p3, p4: no n-grams -> 1/4, 1/8; BP = 1 (2 > 1): BLEU = (1/2 * 1/2 * 1/4 * 1/8)^(1/4) = 128^(-1/4)
    expect(similarityScores('ab', 'a')['bleu-4']).toBe(pyRound(Math.pow(128, -0.25) * 100, 4));
    expect(pyRound(Math.pow(128, -0.25) * 100, 4)).toBe(29.7302);
  });

  it('is 0 when no character matches, or either side is empty', () => {
    // no unigram match returns 0 before any smoothing; an empty hypothesis has no unigrams
    expect(sentenceBleu([chars('abc')], chars('xyz'))).toBe(0);
    expect(sentenceBleu([chars('abc')], [])).toBe(0);
    expect(sentenceBleu([[]], chars('abc'))).toBe(0);
  });

  it('works on characters, also for Chinese', () => {
    // 我爱北京 vs 我爱上海: p1 = 2/4, p2 = 1/3 (我爱), p3 = 0 of 2 -> 1/4, p4 = 0 of 1 -> 1/4
    // BP = 1: (1/2 * 1/3 * 1/16)^(1/4) = 96^(-1/4) -> 31.9472 (as the aaaa case)
    expect(similarityScores('我爱北京', '我爱上海')['bleu-4']).toBe(31.9472);
  });
});

describe('word segmentation (jieba.cut without its dictionary)', () => {
  it('splits English as jieba does: words, numbers, each space and punctuation mark', () => {
    expect(segmentWords("Hello, world! It's 3.14% e.g. a+b state-of-the-art\r\n")).toEqual([
      'Hello', ',', ' ', 'world', '!', ' ', 'It', "'", 's', ' ', '3.14%', ' ', 'e', '.', 'g', '.', ' ', 'a', '+', 'b', ' ',
      'state', '-', 'of', '-', 'the', '-', 'art', '\r\n',
    ]);
    expect(segmentWords('v1.2.3 ... -- x')).toEqual(['v1.2', '.', '3', ' ', '...', ' ', '--', ' ', 'x']);
  });

  it('cuts CJK into single characters (documented difference: jieba finds words)', () => {
    // jieba would give 我 / 爱 / 北京 / 。; without its dictionary each character is a token
    expect(segmentWords('我爱北京。Python编程')).toEqual(['我', '爱', '北', '京', '。', 'Python', '编', '程']);
    // characters outside the BMP stay whole (Python iterates code points)
    expect(segmentWords('a😀b')).toEqual(['a', '😀', 'b']);
  });
});

describe('ROUGE (rouge_chinese on space-joined words)', () => {
  it('cuts sentences after Chinese and question marks, and keeps words', () => {
    expect(cutSentences('你 好 。 世 界 ？ 再 见')).toEqual(['你 好 。', ' 世 界 ？', ' 再 见']);
    expect(rougeWords('你 好 。 世 界')).toEqual(['你', '好', '。', '世', '界']);
    // a whitespace-only sentence becomes one empty word, as in the Python code
    expect(rougeWords('a \n \n b')).toEqual(['a', '', 'b']);
  });

  it('counts distinct n-grams and the longest common subsequence', () => {
    // hyp words the cat the cat; ref the cat sat
    // ROUGE-1: sets {the, cat} and {the, cat, sat}: overlap 2, p = 2/2, r = 2/3,
    //   f = 2 * (2/3) / (1 + 2/3 + 1e-8) = 0.79999999...  -> x100, 4 decimals: 80
    // ROUGE-2: {the cat, cat the} and {the cat, cat sat}: overlap 1, p = r = 1/2,
    //   f = 2 * (1/4) / (1 + 1e-8) -> 50
    // ROUGE-L: LCS(the cat sat, the cat the cat) = 2: r = 2/3, p = 2/4,
    //   f = 2 * (1/3) / (7/6 + 1e-8) = 4/7 - ... -> 57.1429
    const r = rougeScores('the cat the cat', 'the cat sat');
    expect(r['rouge-1']).toEqual({ p: 1, r: 2 / 3, f: 2.0 * ((1 * (2 / 3)) / (1 + 2 / 3 + 1e-8)) });
    expect(r['rouge-2'].p).toBe(0.5);
    expect(r['rouge-l'].p).toBe(0.5);
    const s = similarityScores('the cat the cat', 'the cat sat');
    expect([s['rouge-1'], s['rouge-2'], s['rouge-l']]).toEqual([80, 50, 57.1429]);
  });

  it('scores a single word against another word as 0, a single matching word as 100', () => {
    // "a" vs "ab" are different words: no overlap, p = r = 0, f = 0 / 1e-8 = 0
    expect(similarityScores('a', 'ab')['rouge-1']).toBe(0);
    // one word each, equal: ROUGE-1 p = r = 1, f = 2 / (2 + 1e-8) -> 100;
    // ROUGE-2 has no bigrams on either side: p = r = 0 -> 0; ROUGE-L = 100.
    // BLEU on y e s: p1..p3 = 1, no 4-gram -> 0 of max(1, 0) -> 1/2: (1/2)^(1/4) = 0.8408964... -> 84.0896
    const s = similarityScores('yes', 'yes');
    expect([s['rouge-1'], s['rouge-2'], s['rouge-l'], s['bleu-4']]).toEqual([100, 0, 100, 84.0896]);
  });

  it('is 0 for an empty or whitespace-only prediction', () => {
    expect(similarityScores('', 'the answer')).toEqual({ 'rouge-1': 0, 'rouge-2': 0, 'rouge-l': 0, 'bleu-4': 0 });
    expect(similarityScores(' \n', 'the answer')['rouge-1']).toBe(0);
  });

  it('uses characters for Chinese (LLaMA-Factory: jieba words)', () => {
    // 我 爱 北 京 vs 我 爱 上 海: ROUGE-1 overlap 2 of 4 each: f = 2 * 0.25 / (1 + 1e-8) -> 50.
    // (jieba's words 我 / 爱 / 北京 vs 我 / 爱 / 上海 would give 2/3 -> 66.6667 in LLaMA-Factory.)
    expect(similarityScores('我爱北京', '我爱上海')['rouge-1']).toBe(50);
  });
});

describe('averaging and Python numbers', () => {
  it('averages per-example scores with numpy mean', () => {
    // an exact match of two words and 10 characters scores 100 on every metric, an empty
    // prediction 0: means 50
    expect(computeSimilarity([{ predict: 'the answer', label: 'the answer' }, { predict: '', label: 'the answer' }])).toEqual({ 'rouge-1': 50, 'rouge-2': 50, 'rouge-l': 50, 'bleu-4': 50 });
    expect(() => computeSimilarity([])).toThrow(/no predictions/);
  });

  it('sums as numpy does (from 0, left to right below 8 elements, 8 accumulators above)', () => {
    // 0.1 + 0.2 + 0.3 left to right = 0.6000000000000001
    expect(npMean([0.1, 0.2, 0.3])).toBe((0.1 + 0.2 + 0.3) / 3);
    // 9 elements: r[i] = a[i] for i < 8, pairwise ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)), then + a[8]
    const a = [0.1, 0.7, 0.3, 1e16, 0.2, -1e16, 0.6, 0.4, 0.9];
    const pairwise = 0.1 + 0.7 + (0.3 + 1e16) + (0.2 + -1e16 + (0.6 + 0.4)) + 0.9;
    expect(npMean(a)).toBe(pairwise / 9);
  });

  it('rounds like Python round(): exact ties to even, otherwise the exact binary value', () => {
    expect(pyRound(0.03125, 4)).toBe(0.0312); // 312.5 exactly -> even 312
    expect(pyRound(0.09375, 4)).toBe(0.0938); // 937.5 exactly -> even 938
    expect(pyRound(0.125, 2)).toBe(0.12);
    expect(pyRound(-0.125, 2)).toBe(-0.12);
    expect(pyRound(2.675, 2)).toBe(2.67); // 2.67499999... in binary
    expect(pyRound(35.35533905932738, 4)).toBe(35.3553);
  });

  it('math.fsum is correctly rounded, half to even across partials', () => {
    expect(fsum(Array(10).fill(0.1))).toBe(1);
    expect(fsum([2 ** 53, -0.5, -(2 ** -54)])).toBe(2 ** 53 - 1);
    expect(fsum([2 ** 53, 1, 2 ** -100])).toBe(2 ** 53 + 2);
    expect(fsum([2 ** 53 - 4, 0.5, 2 ** -54])).toBe(2 ** 53 - 3);
    expect(fsum([])).toBe(0);
  });

  it('writes floats as Python repr and metrics as json.dump(indent=4, sort_keys=True)', () => {
    expect([12, 0, 1e-5, 1e16, 0.0001, 1.5e-7, 123456789012345.6, -2.5].map(pyFloatRepr)).toEqual(['12.0', '0.0', '1e-05', '1e+16', '0.0001', '1.5e-07', '123456789012345.6', '-2.5']);
    expect(metricsJson({ 'predict_rouge-1': 50, 'predict_bleu-4': 12.3456 })).toBe('{\n    "predict_bleu-4": 12.3456,\n    "predict_rouge-1": 50.0\n}');
  });
});
