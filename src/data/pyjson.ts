/**
 * Python's json.dumps(value, ensure_ascii=False[, indent=n]) in TypeScript, so tool descriptions and
 * function calls render byte-for-byte as LLaMA-Factory renders them (", " and ": " separators).
 * Numbers follow JavaScript (a float written 1.0 in the source file is 1 after JSON.parse).
 */
export function pyJsonDumps(value: unknown, indent?: number): string {
  return dump(value, indent, 0);
}

function dumpString(s: string): string {
  return JSON.stringify(s);
}

function dump(v: unknown, indent: number | undefined, level: number): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return 'NaN';
    if (!Number.isFinite(v)) return v > 0 ? 'Infinity' : '-Infinity';
    return String(v);
  }
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'string') return dumpString(v);
  const nl = indent !== undefined ? '\n' + ' '.repeat(indent * (level + 1)) : '';
  const nlEnd = indent !== undefined ? '\n' + ' '.repeat(indent * level) : '';
  const sep = indent !== undefined ? ',' : ', ';
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    return '[' + nl + v.map((x) => dump(x, indent, level + 1)).join(sep + nl) + nlEnd + ']';
  }
  if (typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>);
    if (entries.length === 0) return '{}';
    return (
      '{' +
      nl +
      entries.map(([k, x]) => dumpString(k) + ': ' + dump(x, indent, level + 1)).join(sep + nl) +
      nlEnd +
      '}'
    );
  }
  return dumpString(String(v));
}
