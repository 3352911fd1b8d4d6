// f64 CPU reference of the causal depthwise conv1d + SiLU of Gated DeltaNet (src/kernels/conv1d.ts),
// from transformers' causal_conv1d_fn / causal_conv1d_update (models/qwen3_5/modeling_qwen3_5.py):
// each channel c is convolved with its own K taps over time, left-padded by K - 1 zeros or, with a
// state, by the K - 1 inputs that came before; the new state is the last K - 1 inputs.
//   y[b, t, c] = silu(sum_k w[c, k] * xs[b, t + k, c] (+ bias[c])),   xs = concat(state or zeros, x) along time
// (Mamba-2's conv adds a bias; LFM2's drops the SiLU).
// Layouts: x, y [B, T, C]; w [C, K]; state [B, K - 1, C]. Packed sequences (segments [B, T]):
// inputs of another segment count as zeros (the state belongs to the row's first segment).

type Arr = ArrayLike<number>;

export interface ConvShape {
  B: number;
  T: number;
  C: number;
  K: number;
  /** conv1d.bias [C], added before the SiLU (Mamba-2). */
  bias?: Arr;
  /** false: no SiLU, y = the convolution (LFM2's Lfm2ShortConv). */
  silu?: boolean;
}

/** The input extended on the left by the state (or zeros): [B, K - 1 + T, C]. */
function extended(s: ConvShape, x: Arr, state?: Arr): Float64Array {
  const { B, T, C, K } = s;
  const xs = new Float64Array(B * (K - 1 + T) * C);
  for (let b = 0; b < B; b++) {
    const base = b * (K - 1 + T) * C;
    if (state) for (let e = 0; e < (K - 1) * C; e++) xs[base + e] = state[b * (K - 1) * C + e]!;
    for (let e = 0; e < T * C; e++) xs[base + (K - 1) * C + e] = x[b * T * C + e]!;
  }
  return xs;
}

/** Whether output t of row b may read extended input t + k (same segment, or no segments). */
function visible(s: ConvShape, segments: Arr | undefined, b: number, t: number, k: number): boolean {
  if (!segments) return true;
  const src = Math.max(0, t + k - (s.K - 1));
  return segments[b * s.T + src] === segments[b * s.T + t];
}

export function conv1dRef(s: ConvShape, x: Arr, w: Arr, state?: Arr, segments?: Arr): { y: Float64Array; state: Float64Array } {
  const { B, T, C, K } = s;
  const xs = extended(s, x, state);
  const y = new Float64Array(B * T * C), next = new Float64Array(B * (K - 1) * C);
  for (let b = 0; b < B; b++) {
    const base = b * (K - 1 + T) * C;
    for (let t = 0; t < T; t++)
      for (let c = 0; c < C; c++) {
        let a = s.bias ? s.bias[c]! : 0;
        for (let k = 0; k < K; k++) if (visible(s, segments, b, t, k)) a += w[c * K + k]! * xs[base + (t + k) * C + c]!;
        y[(b * T + t) * C + c] = s.silu === false ? a : a / (1 + Math.exp(-a));
      }
    for (let e = 0; e < (K - 1) * C; e++) next[b * (K - 1) * C + e] = xs[base + T * C + e]!;
  }
  return { y, state: next };
}

/** Gradients of sum(dy * y) with respect to x, w, the bias and the incoming state. */
export function conv1dBackwardRef(s: ConvShape, dy: Arr, x: Arr, w: Arr, state?: Arr, segments?: Arr) {
  const { B, T, C, K } = s;
  const xs = extended(s, x, state);
  const dxs = new Float64Array(xs.length), dw = new Float64Array(C * K), dbias = new Float64Array(C);
  for (let b = 0; b < B; b++) {
    const base = b * (K - 1 + T) * C;
    for (let t = 0; t < T; t++)
      for (let c = 0; c < C; c++) {
        let a = s.bias ? s.bias[c]! : 0;
        for (let k = 0; k < K; k++) if (visible(s, segments, b, t, k)) a += w[c * K + k]! * xs[base + (t + k) * C + c]!;
        const sig = 1 / (1 + Math.exp(-a));
        const da = s.silu === false ? dy[(b * T + t) * C + c]! : dy[(b * T + t) * C + c]! * sig * (1 + a * (1 - sig));
        dbias[c]! += da;
        for (let k = 0; k < K; k++) {
          if (!visible(s, segments, b, t, k)) continue;
          dw[c * K + k]! += da * xs[base + (t + k) * C + c]!;
          dxs[base + (t + k) * C + c]! += da * w[c * K + k]!;
        }
      }
  }
  const dx = new Float64Array(B * T * C), dstate = new Float64Array(B * (K - 1) * C);
  for (let b = 0; b < B; b++) {
    const base = b * (K - 1 + T) * C;
    for (let e = 0; e < (K - 1) * C; e++) dstate[b * (K - 1) * C + e] = dxs[base + e]!;
    for (let e = 0; e < T * C; e++) dx[b * T * C + e] = dxs[base + (K - 1) * C + e]!;
  }
  return { dx, dw, dbias, dstate };
}
