// CPU reference for token sampling (src/kernels/sample.ts), in HF's order and semantics:
// repetition penalty, temperature, top-k (keep >= k-th largest value), top-p (keep a token iff
// the probability mass of strictly larger kept values is < top_p; ties with the cutoff all kept),
// then inverse-CDF sampling in index order. f64 math.

export interface RefSampleOptions {
  temperature: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  history?: ArrayLike<number>;
  softcap?: number;
}

/** Logits after soft-capping, repetition penalty and temperature (temperature 0 leaves them unscaled). */
export function refProcess(logits: ArrayLike<number>, o: RefSampleOptions): Float64Array {
  const V = logits.length;
  const cap = (x: number) => (o.softcap ? o.softcap * Math.tanh(x / o.softcap) : x);
  const s = Float64Array.from({ length: V }, (_, i) => cap(logits[i]!));
  const pen = o.repetitionPenalty ?? 1;
  if (pen !== 1 && o.history) {
    const seen = new Set<number>();
    for (let h = 0; h < o.history.length; h++) if (o.history[h]! < V) seen.add(o.history[h]!);
    for (const id of seen) s[id] = s[id]! < 0 ? s[id]! * pen : s[id]! / pen;
  }
  if (o.temperature > 0) for (let i = 0; i < V; i++) s[i] = s[i]! / o.temperature;
  return s;
}

export function refArgmax(s: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < s.length; i++) if (s[i]! > s[best]!) best = i;
  return best;
}

/** Probabilities in index order after top-k / top-p filtering (0 for removed tokens), and the nucleus margin. */
export function refProbs(s: Float64Array, o: RefSampleOptions): { probs: Float64Array; margin: number } {
  const V = s.length;
  const topK = o.topK ?? 0, topP = o.topP ?? 1;
  const m = Math.max(...s);
  const keep = new Array<boolean>(V).fill(true);
  if (topK > 0 && topK < V) {
    const kth = [...s].sort((a, b) => b - a)[topK - 1]!;
    for (let i = 0; i < V; i++) keep[i] = s[i]! >= kth;
  }
  let margin = Infinity;
  if (topP < 1) {
    const e = Float64Array.from(s, (x, i) => (keep[i] ? Math.exp(x - m) : 0));
    const Z = e.reduce((a, b) => a + b, 0);
    const values = [...new Set([...s].filter((_, i) => keep[i]))].sort((a, b) => b - a);
    let above = 0;
    let cutoff = -Infinity;
    for (const v of values) {
      margin = Math.min(margin, Math.abs(above - topP * Z) / Z);
      if (above >= topP * Z) break;
      cutoff = v;
      for (let i = 0; i < V; i++) if (s[i] === v && keep[i]) above += e[i]!;
    }
    for (let i = 0; i < V; i++) keep[i] = keep[i]! && s[i]! >= cutoff;
  }
  const probs = Float64Array.from(s, (x, i) => (keep[i] ? Math.exp(x - m) : 0));
  const Z = probs.reduce((a, b) => a + b, 0);
  for (let i = 0; i < V; i++) probs[i] = probs[i]! / Z;
  return { probs, margin };
}

/** First index where the running probability exceeds u; also the distance of u to the nearest CDF boundary. */
export function refPick(probs: Float64Array, u: number): { token: number; boundary: number } {
  let acc = 0, token = -1, boundary = Infinity, last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i]! <= 0) continue;
    last = i;
    acc += probs[i]!;
    boundary = Math.min(boundary, Math.abs(acc - u));
    if (token < 0 && acc > u) token = i;
  }
  return { token: token < 0 ? last : token, boundary };
}
