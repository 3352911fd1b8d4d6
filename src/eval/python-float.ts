// Python's float arithmetic where LLaMA-Factory's metrics depend on it, so that the numbers
// Crucible writes are the ones LLaMA-Factory writes: round(x, n), math.fsum, numpy's mean
// (pairwise summation) and json.dump's float repr.

/**
 * Python's round(x, digits): the exact binary value rounded to `digits` decimals, exact ties to
 * even. toFixed rounds the exact value too but breaks ties upwards; an exact tie at d decimals
 * happens only when x * 2^(d+1) is an odd integer (x = k + m / 2^(d+1), m odd, as 10^d's factor
 * 5^d must divide m), which is exactly checkable since scaling by a power of two is exact.
 */
export function pyRound(x: number, digits: number): number {
  if (!Number.isFinite(x) || Math.abs(x) >= 1e21) return x;
  const scaled = x * 2 ** (digits + 1);
  if (Number.isInteger(scaled) && Math.abs(scaled % 2) === 1) {
    const down = Math.floor(x * 10 ** digits);
    const even = down % 2 === 0 ? down : down + 1;
    return even / 10 ** digits;
  }
  return Number(x.toFixed(digits));
}

/**
 * Python's math.fsum: the correctly rounded sum (Shewchuk's partials, then the half-even
 * correction of the last partial that CPython applies).
 */
export function fsum(values: Iterable<number>): number {
  const partials: number[] = [];
  for (let x of values) {
    let i = 0;
    for (let y of partials) {
      if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x];
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo !== 0) partials[i++] = lo;
      x = hi;
    }
    partials.length = i;
    if (x !== 0) partials.push(x);
  }
  let n = partials.length;
  if (n === 0) return 0;
  let hi = partials[--n]!;
  let lo = 0;
  while (n > 0) {
    const x = hi;
    const y = partials[--n]!;
    hi = x + y;
    const yr = hi - x;
    lo = y - yr;
    if (lo !== 0) break;
  }
  // round half to even when the remaining partials push a tie one way
  if (n > 0 && ((lo < 0 && partials[n - 1]! < 0) || (lo > 0 && partials[n - 1]! > 0))) {
    const y = lo * 2;
    const x = hi + y;
    if (y === x - hi) hi = x;
  }
  return hi;
}

/**
 * numpy's float64 mean of a list: np.add.reduce starts from add's identity (0) and adds the
 * pairwise sum of the elements (8 accumulators up to 128 elements, halves above), then divides by
 * the count. Lists over 8192 elements are reduced in buffered chunks by numpy, which this does
 * not model.
 */
export function npMean(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  return (0 + pairwiseSum(values, 0, values.length)) / values.length;
}

function pairwiseSum(a: readonly number[], start: number, n: number): number {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i]!;
    return res;
  }
  if (n <= 128) {
    const r = a.slice(start, start + 8) as number[];
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j]! += a[start + i + j]!;
    let res = (r[0]! + r[1]! + (r[2]! + r[3]!)) + (r[4]! + r[5]! + (r[6]! + r[7]!));
    for (; i < n; i++) res += a[start + i]!;
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseSum(a, start, n2) + pairwiseSum(a, start + n2, n - n2);
}

/** Python's repr of a float (json.dump writes floats so): 12.0, 0.0001, 1e-05, 1e+16. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mantissa, expPart] = x.toExponential().split('e') as [string, string];
  const exp = Number(expPart);
  const sign = mantissa.startsWith('-') ? '-' : '';
  const digits = mantissa.replace('-', '').replace('.', '');
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const whole = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
  const frac = digits.slice(exp + 1);
  return `${sign}${whole}.${frac || '0'}`;
}

/**
 * json.dump(value, indent=4, sort_keys=True) of a flat metrics record, as HF Trainer's
 * save_metrics writes *_results.json (its floats in Python's repr). `keep` holds entries of an
 * earlier file as their JSON text (an int stays an int), overridden by `metrics`.
 */
export function metricsJson(metrics: Readonly<Record<string, number>>, keep: ReadonlyMap<string, string> = new Map()): string {
  const literals = new Map(keep);
  for (const [k, v] of Object.entries(metrics)) literals.set(k, pyFloatRepr(v));
  const keys = [...literals.keys()].sort();
  if (keys.length === 0) return '{}';
  return `{\n${keys.map((k) => `    ${JSON.stringify(k)}: ${literals.get(k)}`).join(',\n')}\n}`;
}

const ENTRY = /"((?:[^"\\]|\\.)*)"\s*:\s*("(?:[^"\\]|\\.)*"|[^\s,}]+)/gy;

/** The entries of a flat JSON object as their literal text, or null when `text` is not one. */
export function flatJsonEntries(text: string): Map<string, string> | null {
  const inner = text.trim();
  if (!inner.startsWith('{') || !inner.endsWith('}')) return null;
  const entries = new Map<string, string>();
  const body = inner.slice(1, -1);
  let pos = 0;
  while (true) {
    pos += /^[\s,]*/.exec(body.slice(pos))![0].length;
    if (pos >= body.length) return entries;
    ENTRY.lastIndex = pos;
    const m = ENTRY.exec(body);
    if (!m) return null;
    const key = JSON.parse(`"${m[1]!}"`) as string;
    const literal = m[2]!;
    if (!/^("|-?\d|NaN|-?Infinity|true|false|null)/.test(literal)) return null;
    entries.set(key, literal);
    pos = ENTRY.lastIndex;
  }
}
