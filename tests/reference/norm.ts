// f64 CPU reference for RMSNorm (src/kernels/norm.ts), following transformers' LlamaRMSNorm
// (y = w * (x * rsqrt(mean(x^2) + eps))) and Gemma's (1 + w) variant; the backward is the
// hand-derived gradient, checked against finite differences of rmsNormRef in the tests.

type Arr = ArrayLike<number>;

export function rmsNormRef(x: Arr, w: Arr, R: number, D: number, eps: number, offset = 0): { y: Float64Array; rstd: Float64Array } {
  const y = new Float64Array(R * D), rstd = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let ss = 0;
    for (let j = 0; j < D; j++) ss += x[r * D + j]! ** 2;
    const s = 1 / Math.sqrt(ss / D + eps);
    rstd[r] = s;
    for (let j = 0; j < D; j++) y[r * D + j] = x[r * D + j]! * s * (offset + w[j]!);
  }
  return { y, rstd };
}

/** Gradients of sum(dy * y) with respect to x and w. */
export function rmsNormBackwardRef(dy: Arr, x: Arr, w: Arr, R: number, D: number, eps: number, offset = 0): { dx: Float64Array; dw: Float64Array } {
  const { rstd } = rmsNormRef(x, w, R, D, eps, offset);
  const dx = new Float64Array(R * D), dw = new Float64Array(D);
  for (let r = 0; r < R; r++) {
    const s = rstd[r]!;
    let dot = 0;
    for (let j = 0; j < D; j++) dot += dy[r * D + j]! * (offset + w[j]!) * x[r * D + j]!;
    const c = (s * s * s * dot) / D;
    for (let j = 0; j < D; j++) {
      const i = r * D + j;
      dx[i] = s * (offset + w[j]!) * dy[i]! - x[i]! * c;
      dw[j]! += dy[i]! * x[i]! * s;
    }
  }
  return { dx, dw };
}

/** Residual add + RMSNorm: s = a + b, y = RMSNorm(s). */
export function addRmsNormRef(a: Arr, b: Arr, w: Arr, R: number, D: number, eps: number, offset = 0): { s: Float64Array; y: Float64Array; rstd: Float64Array } {
  const s = Float64Array.from({ length: R * D }, (_, i) => a[i]! + b[i]!);
  return { s, ...rmsNormRef(s, w, R, D, eps, offset) };
}

/** Gradients of sum(dy * y) + sum(dS * s): da = db = dS + the norm's dx, and dw. */
export function addRmsNormBackwardRef(dy: Arr, dS: Arr, a: Arr, b: Arr, w: Arr, R: number, D: number, eps: number, offset = 0): { da: Float64Array; dw: Float64Array } {
  const { s } = addRmsNormRef(a, b, w, R, D, eps, offset);
  const { dx, dw } = rmsNormBackwardRef(dy, s, w, R, D, eps, offset);
  return { da: dx.map((v, i) => v + dS[i]!), dw };
}

/** torch.nn.LayerNorm: (x - mean) / sqrt(var + eps) * w + b, biased variance. */
export function layerNormRef(x: Arr, w: Arr, b: Arr, R: number, D: number, eps: number): Float64Array {
  const y = new Float64Array(R * D);
  for (let r = 0; r < R; r++) {
    let mean = 0;
    for (let j = 0; j < D; j++) mean += x[r * D + j]!;
    mean /= D;
    let v = 0;
    for (let j = 0; j < D; j++) v += (x[r * D + j]! - mean) ** 2;
    const s = 1 / Math.sqrt(v / D + eps);
    for (let j = 0; j < D; j++) y[r * D + j] = (x[r * D + j]! - mean) * s * w[j]! + b[j]!;
  }
  return y;
}
