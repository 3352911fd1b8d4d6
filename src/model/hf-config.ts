// A checkpoint's config.json as transformers writes it: Python's json.dumps lets float('inf') and
// NaN through as the bare words Infinity, -Infinity and NaN (Mamba-2 configs' time_step_limit is
// [0.0, Infinity]), which JSON.parse refuses. They are read as the strings "Infinity", "-Infinity"
// and "NaN"; the keys that may hold them say how to take them (spec.ts).

import { parseJsonFile } from '../data/json-file';

const WORDS = ['-Infinity', 'Infinity', 'NaN'];

/** The text with each bare Infinity, -Infinity or NaN outside a string quoted. */
export function quotePythonConstants(text: string): string {
  let out = '', inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (inString) {
      out += ch;
      if (ch === '\\') out += text[++i] ?? '';
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') inString = true;
    const word = WORDS.find((w) => text.startsWith(w, i));
    if (word) {
      out += `"${word}"`;
      i += word.length - 1;
      continue;
    }
    out += ch;
  }
  return out;
}

/** config.json's object; a syntax error names the file, line and column. */
export function parseHfConfig(text: string, path: string): Record<string, unknown> {
  return parseJsonFile<Record<string, unknown>>(quotePythonConstants(text), path);
}
