// Random inputs and error measures for kernel tests. Every run draws a fresh seed; failures
// print it (set SEED=... to replay).
import { expect } from 'vitest';

export function makeRng(seed = process.env.SEED ? Number(process.env.SEED) : (Math.random() * 2 ** 31) >>> 0) {
  let s = seed >>> 0 || 1;
  const next = (): number => {
    // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = (): number => {
    const u = Math.max(next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
  };
  return {
    seed,
    next,
    normal,
    randn: (n: number, scale = 1): Float32Array => Float32Array.from({ length: n }, () => normal() * scale),
    uniform: (n: number, lo = -1, hi = 1): Float32Array => Float32Array.from({ length: n }, () => lo + (hi - lo) * next()),
    int: (n: number, max: number): Int32Array => Int32Array.from({ length: n }, () => Math.floor(next() * max)),
  };
}
export type Rng = ReturnType<typeof makeRng>;

/** ||out - ref|| / ||ref||; NaN anywhere in out gives Infinity. */
export function relErr(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length) throw new Error(`length ${out.length} != reference length ${ref.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    const o = out[i]!, r = ref[i]!;
    if (!Number.isFinite(o)) return Infinity;
    num += (o - r) ** 2;
    den += r * r;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

export function expectClose(out: ArrayLike<number>, ref: ArrayLike<number>, tol: number, what: string, seed?: number): void {
  const err = relErr(out, ref);
  expect(err, `${what}: relative error ${err.toExponential(2)} > ${tol}${seed !== undefined ? ` (SEED=${seed})` : ''}`).toBeLessThanOrEqual(tol);
}
