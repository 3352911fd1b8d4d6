// Central finite differences of a scalar function of one array's entries (the f64 references'
// gradient checks).

/** d loss / d arr[i] by (loss(arr[i] + h) - loss(arr[i] - h)) / 2h, restoring arr[i]. */
export function finiteDiff(arr: Float64Array, i: number, loss: () => number, h = 1e-6): number {
  const v = arr[i]!;
  arr[i] = v + h;
  const lp = loss();
  arr[i] = v - h;
  const lm = loss();
  arr[i] = v;
  return (lp - lm) / (2 * h);
}

/** sum(a * b) */
export function dotAll(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}
