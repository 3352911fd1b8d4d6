/**
 * Dataset file readers: json (array of records, or JSON lines in a .json file), jsonl, csv, parquet
 * and txt (one record {text} per line), as LLaMA-Factory / HF datasets read them. Every record
 * keeps where it came from (file, line, index) so later errors can point at it.
 */
import { parquetReadObjects } from 'hyparquet';
import { DataError } from './errors.ts';
import { cleanJsonMessage, jsonErrorLocation } from './json-file.ts';

export type Row = Record<string, unknown>;

export interface RecordSource {
  file: string;
  /** 0-based index of the record in the file. */
  index: number;
  /** 1-based line where the record starts (text formats). */
  line?: number;
}

interface Records {
  rows: Row[];
  sources: RecordSource[];
}

export interface LoadedFile extends Records {
  /** What reading changed (bytes that are not UTF-8), one line each. */
  warnings: string[];
}

export const FILE_TYPES: Record<string, string> = {
  json: 'json',
  jsonl: 'json',
  csv: 'csv',
  parquet: 'parquet',
  txt: 'text',
};

export function fileExtension(path: string): string {
  const base = path.split('/').pop() ?? path;
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : '';
}

export function fileType(path: string): string | undefined {
  return FILE_TYPES[fileExtension(path)];
}

const utf8 = new TextDecoder('utf-8', { fatal: false });
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Text of a data file; bytes that are not UTF-8 become U+FFFD, with a warning naming their lines. */
function decodeText(bytes: Uint8Array, file: string, warnings: string[]): string {
  let s: string;
  try {
    s = strictUtf8.decode(bytes);
  } catch {
    s = utf8.decode(bytes);
    warnings.push(notUtf8Warning(file, invalidUtf8Lines(bytes)));
  }
  if (s.charCodeAt(0) === 0xfeff) s = s.slice(1);
  return s;
}

/** 1-based lines holding bytes that are not UTF-8 (a newline byte never belongs to a multi-byte character). */
function invalidUtf8Lines(bytes: Uint8Array): number[] {
  const lines: number[] = [];
  let start = 0;
  let line = 1;
  for (let i = 0; i <= bytes.length; i++) {
    if (i < bytes.length && bytes[i] !== 10) continue;
    try {
      strictUtf8.decode(bytes.subarray(start, i));
    } catch {
      lines.push(line);
    }
    start = i + 1;
    line++;
  }
  return lines;
}

function notUtf8Warning(file: string, lines: number[]): string {
  const shown = lines.slice(0, 10).join(', ') + (lines.length > 10 ? ', ...' : '');
  const where = lines.length === 1 ? `line ${shown} holds` : `${lines.length} lines hold`;
  return `${file}: ${where} bytes that are not UTF-8${lines.length > 1 ? ` (lines ${shown})` : ''}; they were read as U+FFFD (\uFFFD) — re-save the file as UTF-8 to keep the text as written`;
}

/** Start offsets of the elements of a top-level JSON array (text already known to parse). */
function arrayElementOffsets(text: string): number[] {
  const out: number[] = [];
  let i = text.indexOf('[');
  if (i < 0) return out;
  i++;
  let depth = 0;
  let inStr = false;
  let expectStart = true;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inStr) {
      if (c === 92) i++;
      else if (c === 34) inStr = false;
      continue;
    }
    if (c === 32 || c === 10 || c === 13 || c === 9) continue;
    if (depth === 0 && expectStart && c !== 93) {
      out.push(i);
      expectStart = false;
    }
    if (c === 34) inStr = true;
    else if (c === 123 || c === 91) depth++;
    else if (c === 125 || c === 93) {
      if (depth === 0) break;
      depth--;
    } else if (c === 44 && depth === 0) expectStart = true;
  }
  return out;
}

function parseJsonLines(text: string, file: string): Records {
  const rows: Row[] = [];
  const sources: RecordSource[] = [];
  const lines = text.split('\n');
  for (let li = 0; li < lines.length; li++) {
    const raw = lines[li].trim();
    if (!raw) continue;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      const loc = jsonErrorLocation(raw, e as Error);
      throw new DataError(`malformed JSON line: ${cleanJsonMessage((e as Error).message)}${loc ? ` (column ${loc.column})` : ''}`, { file, line: li + 1 });
    }
    if (!v || typeof v !== 'object' || Array.isArray(v)) {
      throw new DataError(`each line must be a JSON object, got ${Array.isArray(v) ? 'an array' : JSON.stringify(v)?.slice(0, 60)}`, { file, line: li + 1 });
    }
    sources.push({ file, index: rows.length, line: li + 1 });
    rows.push(v as Row);
  }
  return { rows, sources };
}

function parseJson(text: string, file: string, jsonl: boolean): Records {
  if (jsonl) return parseJsonLines(text, file);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    // A .json file holding JSON lines is accepted (as HF datasets does).
    const trimmed = text.trimStart();
    if (trimmed.startsWith('{') && text.trim().includes('\n')) {
      try {
        return parseJsonLines(text, file);
      } catch {
        /* report the original error */
      }
    }
    const loc = jsonErrorLocation(text, e as Error);
    throw new DataError(`malformed JSON: ${cleanJsonMessage((e as Error).message)}${loc ? ` (column ${loc.column})` : ''}`, { file, line: loc?.line });
  }
  let list: unknown[];
  if (Array.isArray(v)) list = v;
  else if (v && typeof v === 'object') {
    // {"data": [...]} style: a single top-level list field.
    const lists = Object.entries(v as Row).filter(([, x]) => Array.isArray(x));
    if (lists.length === 1 && Object.keys(v as Row).length === 1) list = lists[0][1] as unknown[];
    else list = [v];
  } else throw new DataError(`expected a JSON array of records, got ${typeof v}`, { file });
  const offsets = Array.isArray(v) ? arrayElementOffsets(text) : [];
  const offsetLines: number[] = [];
  if (offsets.length === list.length) {
    let line = 1;
    let pos = 0;
    for (const off of offsets) {
      for (; pos < off; pos++) if (text.charCodeAt(pos) === 10) line++;
      offsetLines.push(line);
    }
  }
  const rows: Row[] = [];
  const sources: RecordSource[] = [];
  list.forEach((r, i) => {
    if (!r || typeof r !== 'object' || Array.isArray(r)) {
      throw new DataError(`each record must be a JSON object, got ${Array.isArray(r) ? 'an array' : typeof r}`, { file, index: i, line: offsetLines[i] });
    }
    rows.push(r as Row);
    sources.push({ file, index: i, line: offsetLines[i] });
  });
  return { rows, sources };
}

/** RFC 4180 CSV with a header row. Empty fields become null (as pandas' NaN). */
function parseCsv(text: string, file: string): Records {
  const records: Array<{ fields: string[]; quoted: boolean[]; line: number }> = [];
  let fields: string[] = [];
  let quoted: boolean[] = [];
  let field = '';
  let isQuoted = false;
  let inQuotes = false;
  let line = 1;
  let recLine = 1;
  let quoteLine = 0;
  const endField = () => {
    fields.push(field);
    quoted.push(isQuoted);
    field = '';
    isQuoted = false;
  };
  const endRecord = () => {
    endField();
    if (!(fields.length === 1 && fields[0] === '' && !quoted[0])) records.push({ fields, quoted, line: recLine });
    fields = [];
    quoted = [];
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inQuotes) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else inQuotes = false;
      } else {
        if (c === '\n') line++;
        field += c;
      }
      continue;
    }
    if (c === '"') {
      if (field.length) throw new DataError('a quote (") inside an unquoted field; quote the whole field', { file, line });
      inQuotes = true;
      isQuoted = true;
      quoteLine = line;
    } else if (c === ',') endField();
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      endRecord();
      line++;
      recLine = line;
    } else {
      if (isQuoted) throw new DataError('text after a closing quote; fields must be quoted entirely', { file, line });
      field += c;
    }
  }
  if (inQuotes) throw new DataError('unterminated quoted field', { file, line: quoteLine });
  if (field.length || fields.length) endRecord();
  if (!records.length) return { rows: [], sources: [] };
  const header = records[0].fields.map((h) => h.trim());
  const rows: Row[] = [];
  const sources: RecordSource[] = [];
  for (let r = 1; r < records.length; r++) {
    const rec = records[r];
    if (rec.fields.length !== header.length) {
      throw new DataError(`expected ${header.length} fields (${header.join(', ')}), found ${rec.fields.length}`, { file, line: rec.line, index: r - 1 });
    }
    const row: Row = {};
    header.forEach((h, j) => {
      row[h] = rec.fields[j] === '' && !rec.quoted[j] ? null : rec.fields[j];
    });
    rows.push(row);
    sources.push({ file, index: r - 1, line: rec.line });
  }
  return { rows, sources };
}

function normalizeValue(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(normalizeValue);
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
    if (v instanceof Uint8Array) return utf8.decode(v);
    return Array.from(v as unknown as ArrayLike<number | bigint>, (x) => (typeof x === 'bigint' ? Number(x) : x));
  }
  if (v && typeof v === 'object' && !(v instanceof Date)) {
    const o: Row = {};
    for (const [k, x] of Object.entries(v as Row)) o[k] = normalizeValue(x);
    return o;
  }
  return v;
}

async function parseParquet(bytes: Uint8Array, file: string): Promise<Records> {
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  let objs: Row[];
  try {
    objs = (await parquetReadObjects({ file: buf })) as Row[];
  } catch (e) {
    throw new DataError(`cannot read parquet: ${(e as Error).message}`, { file });
  }
  const rows = objs.map((o) => normalizeValue(o) as Row);
  return { rows, sources: rows.map((_, i) => ({ file, index: i })) };
}

function parseText(text: string, file: string): Records {
  const lines = text.split(/\r?\n/);
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  return { rows: lines.map((t) => ({ text: t })), sources: lines.map((_, i) => ({ file, index: i, line: i + 1 })) };
}

/** Parse one data file by its extension. */
export async function parseDataFile(bytes: Uint8Array, file: string): Promise<LoadedFile> {
  const ext = fileExtension(file);
  const warnings: string[] = [];
  switch (FILE_TYPES[ext]) {
    case 'json':
      return { ...parseJson(decodeText(bytes, file, warnings), file, ext === 'jsonl'), warnings };
    case 'csv':
      return { ...parseCsv(decodeText(bytes, file, warnings), file), warnings };
    case 'parquet':
      return { ...(await parseParquet(bytes, file)), warnings };
    case 'text':
      return { ...parseText(decodeText(bytes, file, warnings), file), warnings };
    default:
      throw new DataError(`unsupported file type ".${ext}"; allowed: ${Object.keys(FILE_TYPES).join(', ')}`, { file });
  }
}
