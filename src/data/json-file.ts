/**
 * JSON files a user or a run owns (configs, checkpoints' state, adapter and tokenizer configs):
 * a syntax error names the file, the line and the column, not only V8's "Bad control character".
 */
import { DataError } from './errors.ts';

/**
 * JSON.parse of a file's text; a DataError naming `path`, line and column when it is not JSON,
 * followed by `remedy` when given ("remove checkpoint-4 to resume from an earlier checkpoint").
 */
export function parseJsonFile<T = unknown>(text: string, path: string, remedy?: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    const then = remedy ? `; ${remedy}` : '';
    if (text.trim() === '') throw new DataError(`not valid JSON: the file is empty${then}`, { file: path });
    const loc = jsonErrorLocation(text, e as Error);
    const end = lineOfOffset(text, text.trimEnd().length);
    const truncated = loc !== undefined && (loc.line > end.line || (loc.line === end.line && loc.column >= end.column));
    const why = truncated ? 'it ends before the JSON is complete (a truncated file?)' : cleanJsonMessage((e as Error).message);
    throw new DataError(`not valid JSON: ${why}${loc ? ` (column ${loc.column})` : ''}${then}`, { file: path, ...(loc ? { line: loc.line } : {}) });
  }
}

function lineOfOffset(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let last = -1;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      last = i;
    }
  }
  return { line, column: offset - last };
}

/** Byte offset → line of a JSON.parse error, from V8's message ("at position N" / "line L column C"). */
export function jsonErrorLocation(text: string, err: Error): { line: number; column: number } | undefined {
  const lc = /line (\d+) column (\d+)/.exec(err.message);
  if (lc) return { line: Number(lc[1]), column: Number(lc[2]) };
  const pos = /position (\d+)/.exec(err.message);
  if (pos) return lineOfOffset(text, Number(pos[1]));
  if (/Unexpected end of JSON input/.test(err.message)) return lineOfOffset(text, text.length);
  return undefined;
}

export function cleanJsonMessage(msg: string): string {
  return msg.replace(/\s*(in JSON )?at position \d+.*$/s, '').replace(/\s*\(line \d+ column \d+\)/, '');
}
