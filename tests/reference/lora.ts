// f64 CPU references for LoRA / DoRA (src/kernels/lora.ts). The forward follows PEFT's code
// literally (layer.py Linear.forward, variants.py DoraLinearVariant.forward, dora.py
// DoraLinearLayer.forward); the backward is the hand-derived gradient with the DoRA norm detached,
// checked against finite differences of the forward (with the norm held fixed) in the tests.
// lora_dropout: the mask is reproduced here from its key (refDropoutKeep), independently of the
// shader, and then applied as PEFT's nn.Dropout: x ⊙ M / (1 - p).

type Arr = ArrayLike<number>;

export interface LoraRefProblem {
  T: number;
  K: number;
  N: number;
  r: number;
  x: Arr; // [T, K]
  /** lora_dropout in training: keep mask M [T, K] of 0 / 1; the LoRA branch reads x ⊙ M / (1 - p) */
  dropout?: { keep: Arr; p: number };
  W: Arr; // [N, K]
  bias?: Arr | null; // [N]
  A: Arr; // [r, K]
  B: Arr; // [N, r]
  s: number;
  /** DoRA magnitude [N] */
  mag?: Arr | null;
  /** DoRA: use this row norm instead of computing it (finite differences hold it fixed) */
  norm?: Arr;
}

/** pcg4d (Jarzynski & Olano 2020) with wrapping u32 arithmetic, as shaders/lora.wgsl. */
function pcg4d(a: number, b: number, c: number, d: number): number {
  const lcg = (u: number) => (Math.imul(u, 1664525) + 1013904223) >>> 0;
  let [x, y, z, w] = [lcg(a), lcg(b), lcg(c), lcg(d)];
  const mix = () => {
    x = (x + Math.imul(y, w)) >>> 0;
    y = (y + Math.imul(z, x)) >>> 0;
    z = (z + Math.imul(x, y)) >>> 0;
    w = (w + Math.imul(y, z)) >>> 0;
  };
  mix();
  [x, y, z, w] = [x ^ (x >>> 16), y ^ (y >>> 16), z ^ (z >>> 16), w ^ (w >>> 16)];
  mix();
  return x;
}

/** The dropout keep mask [T, K] for a key (src/kernels/lora.ts dropoutKey): hash >= p·2³² keeps. */
export function refDropoutKeep(key: readonly [number, number], T: number, K: number, p: number): Uint8Array {
  const threshold = Math.min(2 ** 32 - 1, Math.round(p * 2 ** 32));
  const keep = new Uint8Array(T * K);
  for (let t = 0; t < T; t++) for (let k = 0; k < K; k++) keep[t * K + k] = pcg4d(key[0], key[1], t, k) >= threshold ? 1 : 0;
  return keep;
}

/** x ⊙ M / (1 - p) (nn.Dropout in training, inverted) */
function dropped(x: Arr, d: { keep: Arr; p: number }): Float64Array {
  return Float64Array.from(x, (v, i) => (v * d.keep[i]!) / (1 - d.p));
}

/** C[M, N] = P[M, K] · Q[N, K]ᵀ */
function mulNT(P: Arr, Q: Arr, M: number, N: number, K: number): Float64Array {
  const C = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += P[m * K + k]! * Q[n * K + k]!;
      C[m * N + n] = acc;
    }
  return C;
}

/** C[M, N] = P[M, K] · Q[K, N] */
function mulNN(P: Arr, Q: Arr, M: number, N: number, K: number): Float64Array {
  const C = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let k = 0; k < K; k++) {
      const p = P[m * K + k]!;
      for (let n = 0; n < N; n++) C[m * N + n]! += p * Q[k * N + n]!;
    }
  return C;
}

/** C[M, N] = P[K, M]ᵀ · Q[K, N] */
function mulTN(P: Arr, Q: Arr, M: number, N: number, K: number): Float64Array {
  const C = new Float64Array(M * N);
  for (let k = 0; k < K; k++)
    for (let m = 0; m < M; m++) {
      const p = P[k * M + m]!;
      for (let n = 0; n < N; n++) C[m * N + n]! += p * Q[k * N + n]!;
    }
  return C;
}

/** ||W + s B A|| per row (torch.linalg.norm(weight, dim=1) in get_weight_norm). */
export function refWeightNorm(W: Arr, A: Arr, B: Arr, s: number, N: number, K: number, r: number): Float64Array {
  const BA = mulNN(B, A, N, K, r);
  const out = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let acc = 0;
    for (let k = 0; k < K; k++) acc += (W[n * K + k]! + s * BA[n * K + k]!) ** 2;
    out[n] = Math.sqrt(acc);
  }
  return out;
}

export interface LoraRefForward {
  y: Float64Array; // [T, N]
  xa: Float64Array; // [T, r]
  baseOut?: Float64Array; // DoRA: [T, N] xl Wᵀ
  norm?: Float64Array; // DoRA: [N]
}

export function refLoraForward(p: LoraRefProblem): LoraRefForward {
  const { T, K, N, r, s } = p;
  const xl = p.dropout ? dropped(p.x, p.dropout) : p.x;
  // result = self.base_layer(x)
  const y = mulNT(p.x, p.W, T, N, K);
  if (p.bias) for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) y[t * N + n]! += p.bias[n]!;
  const xa = mulNT(xl, p.A, T, r, K); // lora_A(dropout(x))
  const lora = mulNT(xa, p.B, T, N, r); // lora_B(...)
  if (!p.mag) {
    // result = result + lora_B(lora_A(dropout(x))) * scaling
    for (let i = 0; i < T * N; i++) y[i]! += s * lora[i]!;
    return { y, xa };
  }
  // DoRA: base_result = result (identity dropout: minus bias) or F.linear(dropout(x), W)
  let baseOut: Float64Array;
  if (p.dropout) baseOut = mulNT(xl, p.W, T, N, K);
  else {
    baseOut = Float64Array.from(y);
    if (p.bias) for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) baseOut[t * N + n]! -= p.bias[n]!;
  }
  const norm = p.norm ? Float64Array.from(p.norm) : refWeightNorm(p.W, p.A, p.B, s, N, K, r);
  // result_dora = (mag_norm_scale - 1) * base_result + mag_norm_scale * lora_result * scaling
  for (let t = 0; t < T; t++)
    for (let n = 0; n < N; n++) {
      const g = p.mag[n]! / norm[n]!, i = t * N + n;
      y[i]! += (g - 1) * baseOut[i]! + g * lora[i]! * s;
    }
  return { y, xa, baseOut, norm };
}

export interface LoraRefGrads {
  dx: Float64Array; // [T, K] ∂L/∂x
  dA: Float64Array; // [r, K]
  dB: Float64Array; // [N, r]
  dMag?: Float64Array; // [N]
}

/** Gradients of L = Σ dY ⊙ y, the DoRA norm detached (held constant). */
export function refLoraBackward(p: LoraRefProblem, dy: Arr): LoraRefGrads {
  const { T, K, N, r, s } = p;
  const xl = p.dropout ? dropped(p.x, p.dropout) : p.x;
  const fwd = refLoraForward(p);
  // D = ∂L/∂(xa Bᵀ) / s:  dY, or dY ⊙ g for DoRA
  const D = Float64Array.from(dy);
  let dMag: Float64Array | undefined;
  let g: Float64Array | undefined;
  if (p.mag) {
    g = new Float64Array(N);
    for (let n = 0; n < N; n++) g[n] = p.mag[n]! / fwd.norm![n]!;
    const lora = mulNT(fwd.xa, p.B, T, N, r);
    dMag = new Float64Array(N);
    for (let t = 0; t < T; t++)
      for (let n = 0; n < N; n++) {
        const i = t * N + n;
        dMag[n]! += (dy[i]! * (fwd.baseOut![i]! + s * lora[i]!)) / fwd.norm![n]!;
        D[i] = dy[i]! * g[n]!;
      }
  }
  const DB = mulNN(D, p.B, T, r, N); // [T, r]
  const dA = mulTN(DB, xl, r, K, T).map((v) => s * v);
  const dB = mulTN(D, fwd.xa, N, r, T).map((v) => s * v);
  const loraIn = mulNN(DB, p.A, T, K, r).map((v) => s * v); // ∂L/∂xl through the LoRA product
  // the base product's coefficient: g (DoRA without dropout) or 1 (the base_layer call)
  const Dbase = p.mag && !p.dropout ? D : Float64Array.from(dy);
  const dx = mulNN(Dbase, p.W, T, K, N);
  if (!p.dropout) {
    for (let i = 0; i < T * K; i++) dx[i]! += loraIn[i]!;
    return { dx, dA, dB, dMag };
  }
  const dxl = loraIn;
  if (p.mag) {
    // (g - 1) ⊙ (xl Wᵀ)
    const Dm1 = new Float64Array(T * N);
    for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) Dm1[t * N + n] = dy[t * N + n]! * (g![n]! - 1);
    const viaBase = mulNN(Dm1, p.W, T, K, N);
    for (let i = 0; i < T * K; i++) dxl[i]! += viaBase[i]!;
  }
  // xl = x ⊙ M / (1 - p): the LoRA path's gradient reaches x through the mask
  const masked = dropped(dxl, p.dropout);
  for (let i = 0; i < T * K; i++) dx[i]! += masked[i]!;
  return { dx, dA, dB, dMag };
}

/** L = Σ dY ⊙ y of the reference forward. */
export function refLoss(p: LoraRefProblem, dy: Arr): number {
  const { y } = refLoraForward(p);
  let L = 0;
  for (let i = 0; i < y.length; i++) L += dy[i]! * y[i]!;
  return L;
}
