// Word segmentation for ROUGE as LLaMA-Factory does it with jieba.cut (accurate mode, HMM on),
// without jieba's dictionary and HMM model.
//
// jieba splits text into blocks of "han" characters (CJK U+4E00-U+9FD5, ASCII letters and
// digits, + # & . _ % -) and the rest. Outside the blocks each whitespace character is a token
// ("\r\n" is one) and every other character is a token on its own. Inside a block jieba finds
// dictionary words; the characters between them go to its HMM segmenter, which keeps ASCII runs
// ([a-zA-Z0-9]+ with an optional ".digits" and "%") as one token each and the symbols between them
// as one token per run, and cuts CJK runs into words with a Viterbi search.
//
// What this reproduces exactly: everything outside CJK characters (English words, numbers,
// punctuation, whitespace), provided no dictionary word is made of ASCII characters only (jieba's
// small dictionary has none; its default dictionary was not available to check).
// What differs (a documented limitation): CJK text is cut into single characters instead of
// dictionary / HMM words, so on Chinese text ROUGE is computed over characters and is usually
// higher than LLaMA-Factory's word-level ROUGE. BLEU is unaffected: LLaMA-Factory computes it over
// characters in every language.

const HAN_BLOCK = /([\u4E00-\u9FD5a-zA-Z0-9+#&._%-]+)/u;
const CJK_RUN = /([\u4E00-\u9FD5]+)/u;
const ASCII_WORD = /([a-zA-Z0-9]+(?:\.[0-9]+)?%?)/u;
/** Python's str.isspace() (what `\s` matches in Python 3 regexes), which differs from JavaScript's `\s`. */
export const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const SKIP = new RegExp(`(\\r\\n|[${PY_SPACE}])`, 'u');
const NON_SPACE = new RegExp(`[^${PY_SPACE}]`, 'u');

/** Whether Python's str.split() finds a word in `text` (anything but whitespace). */
export function hasWord(text: string): boolean {
  return NON_SPACE.test(text);
}

/** Tokens of `text` as jieba.cut would give them, CJK runs one character per token (see above). */
export function segmentWords(text: string): string[] {
  const out: string[] = [];
  for (const block of text.split(HAN_BLOCK)) {
    if (!block) continue;
    if (isWhole(block, HAN_BLOCK)) cutHanBlock(block, out);
    else {
      for (const piece of block.split(SKIP)) {
        if (!piece) continue;
        if (isWhole(piece, SKIP)) out.push(piece);
        else out.push(...Array.from(piece));
      }
    }
  }
  return out;
}

function isWhole(s: string, re: RegExp): boolean {
  const m = re.exec(s);
  return m !== null && m.index === 0;
}

/** A han block with no dictionary: the HMM segmenter's rules, CJK runs per character. */
function cutHanBlock(block: string, out: string[]): void {
  if (Array.from(block).length === 1) {
    out.push(block);
    return;
  }
  for (const run of block.split(CJK_RUN)) {
    if (!run) continue;
    if (isWhole(run, CJK_RUN)) out.push(...Array.from(run));
    else for (const piece of run.split(ASCII_WORD)) if (piece) out.push(piece);
  }
}
