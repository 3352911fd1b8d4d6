// f64 CPU reference for causal grouped-query attention (src/kernels/attention.ts): forward with
// log-sum-exp, and the analytic backward. Layouts: q, out [B, Sq, Hq, Dh]; k, v [B, cap, Hkv, Dh];
// lse [B, Hq, Sq]. Masking: key j is visible to query i iff j < kvLen, j <= qOffset + i, with a
// window W also j > qOffset + i - W (HF masking_utils sliding_window_overlay), with segments also
// seg[b, i] == seg[b, j].

export interface RefShape {
  batch: number;
  qLen: number;
  kvLen: number;
  kvCapacity?: number;
  qOffset?: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  softcap?: number;
  window?: number;
  segments?: ArrayLike<number>;
}

type Arr = ArrayLike<number>;

function dims(s: RefShape) {
  const cap = s.kvCapacity ?? s.kvLen;
  const qOff = s.qOffset ?? s.kvLen - s.qLen;
  return { B: s.batch, Sq: s.qLen, Hq: s.heads, Hkv: s.kvHeads, Dh: s.headDim, cap, qOff, G: s.heads / s.kvHeads };
}

export function refVisible(s: RefShape, b: number, i: number, j: number): boolean {
  const { Sq, qOff } = dims(s);
  if (j >= s.kvLen || j > qOff + i) return false;
  if (s.window && j <= qOff + i - s.window) return false;
  if (s.segments && s.segments[b * Sq + i] !== s.segments[b * Sq + j]) return false;
  return true;
}

/** Scores of one query row against all keys: { s (capped), t (tanh value when capped) } per visible key. */
function rowScores(s: RefShape, q: Arr, k: Arr, b: number, i: number, h: number) {
  const { Sq, Hq, Hkv, Dh, cap, G } = dims(s);
  const kh = Math.floor(h / G);
  const qb = ((b * Sq + i) * Hq + h) * Dh;
  const js: number[] = [], ss: number[] = [], ts: number[] = [];
  for (let j = 0; j < s.kvLen; j++) {
    if (!refVisible(s, b, i, j)) continue;
    const kb = ((b * cap + j) * Hkv + kh) * Dh;
    let dot = 0;
    for (let d = 0; d < Dh; d++) dot += q[qb + d]! * k[kb + d]!;
    let x = dot * s.scale, t = 0;
    if (s.softcap) {
      t = Math.tanh(x / s.softcap);
      x = s.softcap * t;
    }
    js.push(j);
    ss.push(x);
    ts.push(t);
  }
  return { js, ss, ts };
}

/** out [B, Sq, Hq, Dh] and lse [B, Hq, Sq] (-Infinity for a row that sees no key; its out is 0). */
export function refAttention(q: Arr, k: Arr, v: Arr, s: RefShape): { out: Float64Array; lse: Float64Array } {
  const { B, Sq, Hq, Hkv, Dh, cap, G } = dims(s);
  const out = new Float64Array(B * Sq * Hq * Dh);
  const lse = new Float64Array(B * Hq * Sq);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++)
      for (let i = 0; i < Sq; i++) {
        const { js, ss } = rowScores(s, q, k, b, i, h);
        const ob = ((b * Sq + i) * Hq + h) * Dh;
        if (js.length === 0) {
          lse[(b * Hq + h) * Sq + i] = -Infinity;
          continue;
        }
        const m = Math.max(...ss);
        let l = 0;
        for (const x of ss) l += Math.exp(x - m);
        js.forEach((j, n) => {
          const p = Math.exp(ss[n]! - m) / l;
          const vb = ((b * cap + j) * Hkv + Math.floor(h / G)) * Dh;
          for (let d = 0; d < Dh; d++) out[ob + d] += p * v[vb + d]!;
        });
        lse[(b * Hq + h) * Sq + i] = m + Math.log(l);
      }
  return { out, lse };
}

/** Gradients of sum(out * dOut) with respect to q, k, v (dk, dv summed over each group's heads). */
export function refAttentionBackward(dOut: Arr, q: Arr, k: Arr, v: Arr, s: RefShape) {
  const { B, Sq, Hq, Hkv, Dh, cap, G } = dims(s);
  const { out, lse } = refAttention(q, k, v, s);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++)
      for (let i = 0; i < Sq; i++) {
        const { js, ss, ts } = rowScores(s, q, k, b, i, h);
        const ob = ((b * Sq + i) * Hq + h) * Dh;
        let D = 0;
        for (let d = 0; d < Dh; d++) D += dOut[ob + d]! * out[ob + d]!;
        const L = lse[(b * Hq + h) * Sq + i]!;
        js.forEach((j, n) => {
          const kvb = ((b * cap + j) * Hkv + Math.floor(h / G)) * Dh;
          const p = Math.exp(ss[n]! - L);
          let dp = 0;
          for (let d = 0; d < Dh; d++) dp += dOut[ob + d]! * v[kvb + d]!;
          let dx = p * (dp - D);
          if (s.softcap) dx *= 1 - ts[n]! * ts[n]!;
          dx *= s.scale;
          for (let d = 0; d < Dh; d++) {
            dq[ob + d] += dx * k[kvb + d]!;
            dk[kvb + d] += dx * q[ob + d]!;
            dv[kvb + d] += p * dOut[ob + d]!;
          }
        });
      }
  return { dq, dk, dv };
}

/** sum(out * dOut) of the f64 forward: the loss whose gradient refAttentionBackward gives. */
export function refAttentionLoss(dOut: Arr, q: Arr, k: Arr, v: Arr, s: RefShape): number {
  const { out } = refAttention(q, k, v, s);
  let l = 0;
  for (let n = 0; n < out.length; n++) l += out[n]! * dOut[n]!;
  return l;
}
