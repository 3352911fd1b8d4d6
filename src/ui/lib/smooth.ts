// The smoothed curve LLaMA Board draws over a training metric: an exponential moving average
// (TensorBoard's) whose weight grows with the number of points, 1.8 * (sigmoid(0.05 n) - 0.5),
// so a short run is barely smoothed and a long one strongly (n = 100: 0.81).

export function emaWeight(n: number): number {
  return 1.8 * (1 / (1 + Math.exp(-0.05 * n)) - 0.5);
}

/** The values smoothed, starting from the first one. */
export function smoothEma(values: readonly number[]): number[] {
  const w = emaWeight(values.length);
  const out: number[] = [];
  let last = values[0] ?? 0;
  for (const v of values) {
    last = last * w + (1 - w) * v;
    out.push(last);
  }
  return out;
}
