// f64 CPU references for gated activations (src/kernels/act.ts): SwiGLU, GeGLU and the sigmoid gate (tanh
// approximation as torch's gelu(approximate='tanh'), exact erf gelu as torch's gelu()).

type Arr = ArrayLike<number>;
export type Kind = 'silu' | 'gelu_tanh' | 'gelu' | 'sigmoid' | 'identity';

/** erf(x) to ~1e-15: Maclaurin series for |x| < 2.5, continued fraction for erfc beyond. */
export function erf(x: number): number {
  const a = Math.abs(x);
  if (a < 2.5) {
    let term = x, sum = x;
    for (let n = 1; n < 200; n++) {
      term *= (-x * x) / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  return Math.sign(x) * (1 - erfc(a));
}

/** erfc(z) for z >= 2 by its continued fraction, evaluated backwards. */
export function erfc(z: number): number {
  let k = z;
  for (let n = 80; n >= 1; n--) k = z + n / 2 / k;
  return Math.exp(-z * z) / (Math.sqrt(Math.PI) * k);
}

const K = Math.sqrt(2 / Math.PI);
const C = 0.044715;

/** Standard normal CDF without cancellation in either tail. */
export function Phi(x: number): number {
  const z = -x / Math.SQRT2;
  return z >= 2 ? 0.5 * erfc(z) : 0.5 * (1 - erf(z));
}

const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));

export function act(kind: Kind, x: number): number {
  switch (kind) {
    case 'silu':
      return x / (1 + Math.exp(-x));
    case 'gelu_tanh':
      // 0.5 x (1 + tanh(u)) written as x sigmoid(2u), free of cancellation for negative x
      return x * sigmoid(2 * K * (x + C * x * x * x));
    case 'gelu':
      return x * Phi(x); // 0.5 x (1 + erf(x / sqrt 2))
    case 'sigmoid':
      return sigmoid(x); // Qwen3.5's attention output gate
    case 'identity':
      return x; // LFM2's short-convolution gates: a plain product
  }
}

export function actGrad(kind: Kind, x: number): number {
  switch (kind) {
    case 'silu': {
      const s = 1 / (1 + Math.exp(-x));
      return s * (1 + x * (1 - s));
    }
    case 'gelu_tanh': {
      // d/dx 0.5 x (1 + tanh u) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) u', with
      // 0.5 (1 + tanh u) = sigmoid(2u) and 1 - tanh^2 u = 4 sigmoid(2u) sigmoid(-2u)
      const v = 2 * K * (x + C * x * x * x);
      return sigmoid(v) + 2 * x * sigmoid(v) * sigmoid(-v) * K * (1 + 3 * C * x * x);
    }
    case 'gelu':
      return Phi(x) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
    case 'sigmoid':
      return sigmoid(x) * sigmoid(-x);
    case 'identity':
      return 1;
  }
}

export function gatedActRef(kind: Kind, gate: Arr, up: Arr): Float64Array {
  return Float64Array.from({ length: gate.length }, (_, i) => act(kind, gate[i]!) * up[i]!);
}

export function gatedActBackwardRef(kind: Kind, dOut: Arr, gate: Arr, up: Arr): { dGate: Float64Array; dUp: Float64Array } {
  const n = gate.length;
  const dGate = new Float64Array(n), dUp = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    dGate[i] = dOut[i]! * up[i]! * actGrad(kind, gate[i]!);
    dUp[i] = dOut[i]! * act(kind, gate[i]!);
  }
  return { dGate, dUp };
}

/** quick_gelu (transformers' QuickGELUActivation): x * sigmoid(1.702 x). */
export const quickGelu = (x: number): number => x * sigmoid(1.702 * x);
