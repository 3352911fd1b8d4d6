/**
 * Errors raised by the data layer. Every error about user data says where it comes from:
 * the file (or dataset), the line (text formats) or record index (0-based), and the field.
 */

export interface DataErrorLocation {
  /** Dataset name as written in `dataset:` (when known). */
  dataset?: string;
  /** Path of the file (as passed to readFile) or `hub:<repo>/<path>`. */
  file?: string;
  /** 1-based line number for json/jsonl/csv/txt files. */
  line?: number;
  /** 0-based record index inside the file (json arrays, parquet rows, csv rows). */
  index?: number;
  /** Field (column) name, with a path for nested values, e.g. `conversations[2].from`. */
  field?: string;
}

export class DataError extends Error {
  readonly location: DataErrorLocation;
  constructor(message: string, location: DataErrorLocation = {}) {
    super(formatLocation(location) + message);
    this.name = 'DataError';
    this.location = location;
  }
}

export function formatLocation(loc: DataErrorLocation): string {
  const parts: string[] = [];
  if (loc.file) parts.push(loc.file);
  if (loc.line !== undefined) parts.push(`line ${loc.line}`);
  if (loc.index !== undefined) parts.push(`record ${loc.index}`);
  if (loc.field) parts.push(`field "${loc.field}"`);
  let s = parts.join(', ');
  if (loc.dataset && !(loc.file ?? '').includes(loc.dataset)) s = `dataset "${loc.dataset}"` + (s ? ` (${s})` : '');
  return s ? s + ': ' : '';
}

export function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}
