// f64 CPU reference of Gated DeltaNet's pieces (src/kernels/delta-rule.ts), written from
// transformers' Qwen3_5GatedDeltaNet (models/qwen3_5/modeling_qwen3_5.py: the gating, l2norm,
// torch_recurrent_gated_delta_rule and torch_chunk_gated_delta_rule) and derived by hand; nothing
// here comes from src/.
//
// Layouts: q, k [B, T, Hk, Dk]; v, out [B, T, Hv, Dv]; g, beta [B, T, Hv]; state [B, Hv, Dk, Dv].
// Packed sequences (segments [B, T], contiguous ids): the state is zeroed before the first token
// of each segment after the first, as if each sequence ran alone.
// Value head h reads key head floor(h / (Hv / Hk)) (repeat_interleave). Per value head, with q
// already l2-normalised and `scale` = Dk^-0.5 applied here:
//   S <- exp(g_t) S;  delta = beta_t (v_t - S^T k_t);  S <- S + k_t delta^T;  o_t = S^T (scale q_t)
// The chunked form computes the same thing C tokens at a time: inside a chunk with cumulative log
// decays c_i, A[i,m] = beta_i exp(c_i - c_m) k_i.k_m (m < i); the deltas solve the unit lower
// triangular system (I + A) D = beta V - diag(beta exp(c)) K S0, then
//   o_i = exp(c_i) S0^T q_i + sum_{m<=i} exp(c_i - c_m) (q_i.k_m) delta_m
//   S_end = exp(c_last) S0 + sum_m exp(c_last - c_m) k_m delta_m^T.

type Arr = ArrayLike<number>;

export interface DeltaShape {
  B: number;
  T: number;
  Hk: number;
  Hv: number;
  Dk: number;
  Dv: number;
  scale: number;
}

export interface DeltaInputs {
  q: Arr;
  k: Arr;
  v: Arr;
  g: Arr;
  beta: Arr;
  /** [B, Hv, Dk, Dv]; zeros when absent. */
  state?: Arr;
  /** [B, T] segment ids of packed sequences. */
  segments?: Arr;
}

/** Whether token t of row b starts a segment after the first (its state starts from zeros). */
function resets(s: DeltaShape, x: DeltaInputs, b: number, t: number): boolean {
  return !!x.segments && t > 0 && x.segments[b * s.T + t] !== x.segments[b * s.T + t - 1];
}

const stateSize = (s: DeltaShape) => s.B * s.Hv * s.Dk * s.Dv;

function indexers(s: DeltaShape) {
  const rep = s.Hv / s.Hk;
  if (!Number.isInteger(rep)) throw new Error(`reference: Hv ${s.Hv} is not a multiple of Hk ${s.Hk}`);
  return {
    qk: (b: number, t: number, h: number) => ((b * s.T + t) * s.Hk + Math.floor(h / rep)) * s.Dk,
    vo: (b: number, t: number, h: number) => ((b * s.T + t) * s.Hv + h) * s.Dv,
    gb: (b: number, t: number, h: number) => (b * s.T + t) * s.Hv + h,
    st: (b: number, h: number) => (b * s.Hv + h) * s.Dk * s.Dv,
  };
}

/** The plain recurrence, token by token; returns the outputs and the final state. */
export function deltaRuleRecurrentRef(s: DeltaShape, x: DeltaInputs): { out: Float64Array; state: Float64Array } {
  const { Dk, Dv } = s;
  const ix = indexers(s);
  const out = new Float64Array(s.B * s.T * s.Hv * Dv);
  const state = x.state ? Float64Array.from(x.state) : new Float64Array(stateSize(s));
  for (let b = 0; b < s.B; b++)
    for (let h = 0; h < s.Hv; h++) {
      const S = state.subarray(ix.st(b, h), ix.st(b, h) + Dk * Dv);
      for (let t = 0; t < s.T; t++) {
        const qo = ix.qk(b, t, h), vo = ix.vo(b, t, h), decay = Math.exp(x.g[ix.gb(b, t, h)]!), beta = x.beta[ix.gb(b, t, h)]!;
        if (resets(s, x, b, t)) S.fill(0);
        for (let e = 0; e < Dk * Dv; e++) S[e]! *= decay;
        for (let j = 0; j < Dv; j++) {
          let kv = 0;
          for (let i = 0; i < Dk; i++) kv += S[i * Dv + j]! * x.k[qo + i]!;
          const delta = beta * (x.v[vo + j]! - kv);
          for (let i = 0; i < Dk; i++) S[i * Dv + j]! += x.k[qo + i]! * delta;
        }
        for (let j = 0; j < Dv; j++) {
          let o = 0;
          for (let i = 0; i < Dk; i++) o += S[i * Dv + j]! * x.q[qo + i]! * s.scale;
          out[vo + j] = o;
        }
      }
    }
  return { out, state };
}

/** The chunked form (chunk size C; the last chunk may be shorter), with a triangular solve per chunk. */
export function deltaRuleChunkedRef(s: DeltaShape, x: DeltaInputs, C: number): { out: Float64Array; state: Float64Array } {
  const { Dk, Dv } = s;
  const ix = indexers(s);
  const out = new Float64Array(s.B * s.T * s.Hv * Dv);
  const state = x.state ? Float64Array.from(x.state) : new Float64Array(stateSize(s));
  const dot = (a: Arr, ao: number, b: Arr, bo: number) => {
    let d = 0;
    for (let i = 0; i < Dk; i++) d += a[ao + i]! * b[bo + i]!;
    return d;
  };
  for (let b = 0; b < s.B; b++)
    for (let h = 0; h < s.Hv; h++) {
      const S = state.subarray(ix.st(b, h), ix.st(b, h) + Dk * Dv);
      for (let t0 = 0; t0 < s.T; t0 += C) {
        const L = Math.min(C, s.T - t0);
        const c = new Float64Array(L);
        for (let i = 0, acc = 0; i < L; i++) c[i] = acc += x.g[ix.gb(b, t0 + i, h)]!;
        // segment number inside the chunk (0: the segment of the state before the chunk); tokens of
        // different segments do not interact, and only segment 0 reads the state
        const sn = new Int32Array(L);
        for (let i = 0, acc = 0; i < L; i++) sn[i] = acc += resets(s, x, b, t0 + i) ? 1 : 0;
        const decay = (i: number, m: number) => (sn[i] === sn[m] ? Math.exp(c[i]! - c[m]!) : 0);
        const fromStart = (i: number) => (sn[i] === 0 ? Math.exp(c[i]!) : 0);
        const kOf = (i: number) => ix.qk(b, t0 + i, h), betaOf = (i: number) => x.beta[ix.gb(b, t0 + i, h)]!;
        // rhs = beta V - diag(beta exp(c)) K S0, then forward substitution with (I + A)
        const D = new Float64Array(L * Dv);
        for (let i = 0; i < L; i++) {
          const bi = betaOf(i), vo = ix.vo(b, t0 + i, h);
          for (let j = 0; j < Dv; j++) {
            let kS = 0;
            for (let r = 0; r < Dk; r++) kS += x.k[kOf(i) + r]! * S[r * Dv + j]!;
            D[i * Dv + j] = bi * x.v[vo + j]! - bi * fromStart(i) * kS;
          }
          for (let m = 0; m < i; m++) {
            const a = bi * decay(i, m) * dot(x.k, kOf(i), x.k, kOf(m));
            for (let j = 0; j < Dv; j++) D[i * Dv + j]! -= a * D[m * Dv + j]!;
          }
        }
        for (let i = 0; i < L; i++) {
          const vo = ix.vo(b, t0 + i, h);
          for (let j = 0; j < Dv; j++) {
            let o = 0;
            for (let r = 0; r < Dk; r++) o += x.q[kOf(i) + r]! * S[r * Dv + j]!;
            o *= fromStart(i);
            for (let m = 0; m <= i; m++) o += decay(i, m) * dot(x.q, kOf(i), x.k, kOf(m)) * D[m * Dv + j]!;
            out[vo + j] = o * s.scale;
          }
        }
        for (let r = 0; r < Dk; r++)
          for (let j = 0; j < Dv; j++) {
            let v = fromStart(L - 1) * S[r * Dv + j]!;
            for (let m = 0; m < L; m++) v += decay(L - 1, m) * x.k[kOf(m) + r]! * D[m * Dv + j]!;
            S[r * Dv + j] = v;
          }
      }
    }
  return { out, state };
}

export interface DeltaGrads {
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  dg: Float64Array;
  dbeta: Float64Array;
  /** Gradient with respect to the initial state. */
  dstate: Float64Array;
}

/**
 * Gradients of sum(dout * out) + sum(dstate * finalState) (dFinal optional) through the
 * recurrence, by reverse-mode over the stored per-step states.
 */
export function deltaRuleBackwardRef(s: DeltaShape, x: DeltaInputs, dout: Arr, dFinal?: Arr): DeltaGrads {
  const { Dk, Dv } = s;
  const ix = indexers(s);
  const dq = new Float64Array(x.q.length), dk = new Float64Array(x.k.length), dv = new Float64Array(x.v.length);
  const dg = new Float64Array(x.g.length), dbeta = new Float64Array(x.beta.length), dstate = new Float64Array(stateSize(s));
  const n = Dk * Dv;
  for (let b = 0; b < s.B; b++)
    for (let h = 0; h < s.Hv; h++) {
      // forward, keeping the decayed state P_t and the residual r_t = v_t - P_t^T k_t of each step
      const P: Float64Array[] = [], R: Float64Array[] = [];
      let S = x.state ? Float64Array.from(x.state).subarray(ix.st(b, h), ix.st(b, h) + n) : new Float64Array(n);
      for (let t = 0; t < s.T; t++) {
        const ko = ix.qk(b, t, h), vo = ix.vo(b, t, h), decay = Math.exp(x.g[ix.gb(b, t, h)]!), beta = x.beta[ix.gb(b, t, h)]!;
        const p = resets(s, x, b, t) ? new Float64Array(n) : S.map((e) => e * decay), r = new Float64Array(Dv);
        for (let j = 0; j < Dv; j++) {
          let kv = 0;
          for (let i = 0; i < Dk; i++) kv += p[i * Dv + j]! * x.k[ko + i]!;
          r[j] = x.v[vo + j]! - kv;
        }
        S = p.slice();
        for (let i = 0; i < Dk; i++) for (let j = 0; j < Dv; j++) S[i * Dv + j]! += x.k[ko + i]! * beta * r[j]!;
        P.push(p);
        R.push(r);
      }
      const dS = dFinal ? Float64Array.from(dFinal).subarray(ix.st(b, h), ix.st(b, h) + n) : new Float64Array(n);
      for (let t = s.T - 1; t >= 0; t--) {
        const ko = ix.qk(b, t, h), vo = ix.vo(b, t, h), gi = ix.gb(b, t, h);
        const decay = Math.exp(x.g[gi]!), beta = x.beta[gi]!, p = P[t]!, r = R[t]!;
        // o_t = S_t^T (scale q_t), S_t = p + k (beta r)^T
        for (let i = 0; i < Dk; i++)
          for (let j = 0; j < Dv; j++) {
            const St = p[i * Dv + j]! + x.k[ko + i]! * beta * r[j]!;
            dq[ko + i]! += s.scale * St * dout[vo + j]!;
            dS[i * Dv + j]! += s.scale * x.q[ko + i]! * dout[vo + j]!;
          }
        // S_t = p + k delta^T: d delta = dS^T k, dk += dS delta
        const ddelta = new Float64Array(Dv);
        for (let j = 0; j < Dv; j++) {
          let acc = 0;
          for (let i = 0; i < Dk; i++) acc += dS[i * Dv + j]! * x.k[ko + i]!;
          ddelta[j] = acc;
        }
        for (let i = 0; i < Dk; i++) {
          let acc = 0;
          for (let j = 0; j < Dv; j++) acc += dS[i * Dv + j]! * beta * r[j]!;
          dk[ko + i]! += acc;
        }
        // delta = beta (v - p^T k)
        for (let j = 0; j < Dv; j++) {
          dv[vo + j]! += beta * ddelta[j]!;
          dbeta[gi]! += ddelta[j]! * r[j]!;
        }
        // dp = dS - k (beta ddelta)^T; dk -= p (beta ddelta)
        for (let i = 0; i < Dk; i++) {
          let acc = 0;
          for (let j = 0; j < Dv; j++) {
            acc += p[i * Dv + j]! * beta * ddelta[j]!;
            dS[i * Dv + j]! -= x.k[ko + i]! * beta * ddelta[j]!;
          }
          dk[ko + i]! -= acc;
        }
        // p = exp(g) S_{t-1}, or zeros at a segment start
        let dgt = 0;
        for (let e = 0; e < n; e++) {
          dgt += p[e]! * dS[e]!;
          dS[e]! *= resets(s, x, b, t) ? 0 : decay;
        }
        dg[gi]! += dgt;
      }
      dstate.set(dS, ix.st(b, h));
    }
  return { dq, dk, dv, dg, dbeta, dstate };
}

/**
 * Qwen3_5GatedDeltaNet's gates per token and value head: beta = sigmoid(b),
 * g = -exp(A_log[h]) * softplus(a + dt_bias[h]). a, b [N, Hv] (N = B*T).
 */
export function gatesRef(a: Arr, bIn: Arr, aLog: Arr, dtBias: Arr, N: number, Hv: number): { g: Float64Array; beta: Float64Array } {
  const g = new Float64Array(N * Hv), beta = new Float64Array(N * Hv);
  for (let n = 0; n < N; n++)
    for (let h = 0; h < Hv; h++) {
      const i = n * Hv + h;
      g[i] = -Math.exp(aLog[h]!) * softplus(a[i]! + dtBias[h]!);
      beta[i] = 1 / (1 + Math.exp(-bIn[i]!));
    }
  return { g, beta };
}

/** Gradients of sum(dg * g) + sum(dbeta * beta). */
export function gatesBackwardRef(dg: Arr, dbeta: Arr, a: Arr, bIn: Arr, aLog: Arr, dtBias: Arr, N: number, Hv: number) {
  const da = new Float64Array(N * Hv), db = new Float64Array(N * Hv), daLog = new Float64Array(Hv), ddtBias = new Float64Array(Hv);
  for (let n = 0; n < N; n++)
    for (let h = 0; h < Hv; h++) {
      const i = n * Hv + h, x = a[i]! + dtBias[h]!, A = Math.exp(aLog[h]!);
      const sig = 1 / (1 + Math.exp(-x)), beta = 1 / (1 + Math.exp(-bIn[i]!));
      da[i] = -dg[i]! * A * sig;
      ddtBias[h]! += da[i]!;
      daLog[h]! += -dg[i]! * A * softplus(x);
      db[i] = dbeta[i]! * beta * (1 - beta);
    }
  return { da, db, daLog, ddtBias };
}

/** torch's softplus with its default threshold 20 (linear above it). */
export function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

/** FLA's l2norm as transformers writes it: x * rsqrt(sum(x^2) + eps) per row of D. */
export function l2NormRef(x: Arr, R: number, D: number, eps: number): Float64Array {
  const y = new Float64Array(R * D);
  for (let r = 0; r < R; r++) {
    let ss = 0;
    for (let j = 0; j < D; j++) ss += x[r * D + j]! ** 2;
    const inv = 1 / Math.sqrt(ss + eps);
    for (let j = 0; j < D; j++) y[r * D + j] = x[r * D + j]! * inv;
  }
  return y;
}

export function l2NormBackwardRef(dy: Arr, x: Arr, R: number, D: number, eps: number): Float64Array {
  const dx = new Float64Array(R * D);
  for (let r = 0; r < R; r++) {
    let ss = 0, dot = 0;
    for (let j = 0; j < D; j++) {
      ss += x[r * D + j]! ** 2;
      dot += dy[r * D + j]! * x[r * D + j]!;
    }
    const inv = 1 / Math.sqrt(ss + eps);
    for (let j = 0; j < D; j++) dx[r * D + j] = inv * dy[r * D + j]! - x[r * D + j]! * inv ** 3 * dot;
  }
  return dx;
}

/** Qwen3_5RMSNormGated: y = w * (x * rsqrt(mean(x^2) + eps)) * silu(z), rows of D. */
export function rmsNormGatedRef(x: Arr, z: Arr, w: Arr, R: number, D: number, eps: number): Float64Array {
  const y = new Float64Array(R * D);
  for (let r = 0; r < R; r++) {
    let ss = 0;
    for (let j = 0; j < D; j++) ss += x[r * D + j]! ** 2;
    const rstd = 1 / Math.sqrt(ss / D + eps);
    for (let j = 0; j < D; j++) {
      const i = r * D + j;
      y[i] = w[j]! * x[i]! * rstd * silu(z[i]!);
    }
  }
  return y;
}

export function rmsNormGatedBackwardRef(dy: Arr, x: Arr, z: Arr, w: Arr, R: number, D: number, eps: number) {
  const dx = new Float64Array(R * D), dz = new Float64Array(R * D), dw = new Float64Array(D);
  for (let r = 0; r < R; r++) {
    let ss = 0;
    for (let j = 0; j < D; j++) ss += x[r * D + j]! ** 2;
    const rstd = 1 / Math.sqrt(ss / D + eps);
    let dot = 0;
    for (let j = 0; j < D; j++) {
      const i = r * D + j, sig = 1 / (1 + Math.exp(-z[i]!));
      const dn = dy[i]! * z[i]! * sig; // gradient into w * x * rstd
      dz[i] = dy[i]! * w[j]! * x[i]! * rstd * sig * (1 + z[i]! * (1 - sig));
      dw[j]! += dn * x[i]! * rstd;
      dot += dn * w[j]! * x[i]!;
    }
    for (let j = 0; j < D; j++) {
      const i = r * D + j, dn = dy[i]! * silu(z[i]!);
      dx[i] = rstd * w[j]! * dn - (x[i]! * rstd ** 3 * dot) / D;
    }
  }
  return { dx, dz, dw };
}

const silu = (x: number) => x / (1 + Math.exp(-x));
