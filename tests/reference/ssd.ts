// f64 CPU reference of Mamba-2's SSD scan (src/kernels/ssd.ts), written from transformers'
// GraniteMoeHybridMambaLayer.torch_forward (models/granitemoehybrid/modeling_granitemoehybrid.py:
// the discretisation, the chunked "ssd naive" path and the cached single-token step) and derived by
// hand for the backward; nothing here comes from src/.
//
// Layouts: x, y [B, T, H, P]; dt [B, T, H] (the in_proj output, before dt_bias and softplus);
// Bm, Cm [B, T, G, N] (head h reads group floor(h / (H / G)), repeat_interleave); dtBias, aLog,
// D [H]; state [B, H, N, P] (transformers keeps [B, H, P, N]: the same numbers transposed).
// Per head, with a = -exp(A_log), dtp = clamp(softplus(dt + dt_bias), dtMin, dtMax):
//   S <- exp(dtp a) S + B_t (dtp x_t)^T;   y_t = S^T C_t + D x_t
// Packed sequences (segments [B, T], contiguous ids; the seq_idx of mamba_chunk_scan_combined): the
// state is zeroed before the first token of each segment after the first, as if each ran alone.

type Arr = ArrayLike<number>;

export interface SsdShape {
  B: number;
  T: number;
  H: number;
  G: number;
  N: number;
  P: number;
  /** time_step_limit; (0, inf) by default. */
  dtMin?: number;
  dtMax?: number;
}

export interface SsdInputs {
  x: Arr;
  dt: Arr;
  Bm: Arr;
  Cm: Arr;
  dtBias: Arr;
  aLog: Arr;
  D: Arr;
  /** [B, H, N, P]; zeros when absent. */
  state?: Arr;
  /** [B, T] segment ids of packed sequences. */
  segments?: Arr;
}

/** Whether token t of row b starts a segment after the first (its state starts from zeros). */
function resets(s: SsdShape, x: SsdInputs, b: number, t: number): boolean {
  return !!x.segments && t > 0 && x.segments[b * s.T + t] !== x.segments[b * s.T + t - 1];
}

export interface SsdGrads {
  dx: Float64Array;
  ddt: Float64Array;
  dBm: Float64Array;
  dCm: Float64Array;
  ddtBias: Float64Array;
  daLog: Float64Array;
  dD: Float64Array;
  dstate: Float64Array;
}

/** torch's softplus with its default threshold 20 (linear above it). */
function softplus(u: number): number {
  return u > 20 ? u : Math.log1p(Math.exp(u));
}

function indexers(s: SsdShape) {
  const rep = s.H / s.G;
  if (!Number.isInteger(rep)) throw new Error(`reference: H ${s.H} is not a multiple of G ${s.G}`);
  return {
    x: (b: number, t: number, h: number) => ((b * s.T + t) * s.H + h) * s.P,
    bc: (b: number, t: number, h: number) => ((b * s.T + t) * s.G + Math.floor(h / rep)) * s.N,
    dt: (b: number, t: number, h: number) => (b * s.T + t) * s.H + h,
    st: (b: number, h: number) => (b * s.H + h) * s.N * s.P,
  };
}

/** The discretised step size of token t and its derivative by the raw dt (0 where the clamp holds it). */
function stepSize(s: SsdShape, dt: number, bias: number): { dtp: number; slope: number } {
  const u = dt + bias;
  const sp = softplus(u);
  const lo = s.dtMin ?? 0, hi = s.dtMax ?? Infinity;
  const dtp = Math.min(Math.max(sp, lo), hi);
  const slope = sp < lo || sp > hi ? 0 : u > 20 ? 1 : 1 / (1 + Math.exp(-u));
  return { dtp, slope };
}

/** The plain recurrence, token by token (the cached decode step); returns y and the final state. */
export function ssdRecurrentRef(s: SsdShape, x: SsdInputs): { y: Float64Array; state: Float64Array } {
  const { N, P } = s;
  const ix = indexers(s);
  const y = new Float64Array(s.B * s.T * s.H * P);
  const state = x.state ? Float64Array.from(x.state) : new Float64Array(s.B * s.H * N * P);
  for (let b = 0; b < s.B; b++)
    for (let h = 0; h < s.H; h++) {
      const S = state.subarray(ix.st(b, h), ix.st(b, h) + N * P);
      const a = -Math.exp(x.aLog[h]!);
      for (let t = 0; t < s.T; t++) {
        const { dtp } = stepSize(s, x.dt[ix.dt(b, t, h)]!, x.dtBias[h]!);
        const decay = Math.exp(dtp * a), xo = ix.x(b, t, h), bo = ix.bc(b, t, h);
        if (resets(s, x, b, t)) S.fill(0);
        for (let i = 0; i < N; i++)
          for (let j = 0; j < P; j++) S[i * P + j] = decay * S[i * P + j]! + x.Bm[bo + i]! * dtp * x.x[xo + j]!;
        for (let j = 0; j < P; j++) {
          let o = x.D[h]! * x.x[xo + j]!;
          for (let i = 0; i < N; i++) o += S[i * P + j]! * x.Cm[bo + i]!;
          y[xo + j] = o;
        }
      }
    }
  return { y, state };
}

/**
 * The chunked form as torch_forward computes it, chunks of C tokens: inside a chunk with cumulative
 * log decays c (A_cumsum), the diagonal block Y_diag[t] = sum_{m<=t} exp(c_t - c_m) (C_t.B_m) v_m,
 * the chunk's own state sum_m exp(c_last - c_m) B_m v_m^T, the states passed between chunks by
 * exp(c_last), and the off-diagonal part Y_off[t] = exp(c_t) C_t^T S_prev; plus D x.
 */
export function ssdChunkedRef(s: SsdShape, x: SsdInputs, C: number): { y: Float64Array; state: Float64Array } {
  if (x.segments) throw new Error('reference: the chunked form has no packed segments (torch_forward has none)');
  const { N, P } = s;
  const ix = indexers(s);
  const y = new Float64Array(s.B * s.T * s.H * P);
  const state = x.state ? Float64Array.from(x.state) : new Float64Array(s.B * s.H * N * P);
  for (let b = 0; b < s.B; b++)
    for (let h = 0; h < s.H; h++) {
      const a = -Math.exp(x.aLog[h]!);
      const prev = state.subarray(ix.st(b, h), ix.st(b, h) + N * P);
      for (let t0 = 0; t0 < s.T; t0 += C) {
        const L = Math.min(C, s.T - t0);
        const c = new Float64Array(L), dtp = new Float64Array(L);
        for (let i = 0, acc = 0; i < L; i++) {
          dtp[i] = stepSize(s, x.dt[ix.dt(b, t0 + i, h)]!, x.dtBias[h]!).dtp;
          c[i] = acc += dtp[i]! * a;
        }
        const v = (m: number, j: number) => dtp[m]! * x.x[ix.x(b, t0 + m, h) + j]!;
        for (let t = 0; t < L; t++) {
          const co = ix.bc(b, t0 + t, h), xo = ix.x(b, t0 + t, h);
          for (let j = 0; j < P; j++) {
            let diag = 0;
            for (let m = 0; m <= t; m++) {
              let cb = 0;
              for (let i = 0; i < N; i++) cb += x.Cm[co + i]! * x.Bm[ix.bc(b, t0 + m, h) + i]!;
              diag += Math.exp(c[t]! - c[m]!) * cb * v(m, j);
            }
            let off = 0;
            for (let i = 0; i < N; i++) off += x.Cm[co + i]! * prev[i * P + j]!;
            y[xo + j] = diag + Math.exp(c[t]!) * off + x.D[h]! * x.x[xo + j]!;
          }
        }
        const last = c[L - 1]!;
        for (let i = 0; i < N; i++)
          for (let j = 0; j < P; j++) {
            let own = 0;
            for (let m = 0; m < L; m++) own += Math.exp(last - c[m]!) * x.Bm[ix.bc(b, t0 + m, h) + i]! * v(m, j);
            prev[i * P + j] = Math.exp(last) * prev[i * P + j]! + own;
          }
      }
    }
  return { y, state };
}

/** Gradients of sum(y * dy) (+ sum(final state * dFinal)) by reverse-mode through the recurrence. */
export function ssdBackwardRef(s: SsdShape, x: SsdInputs, dy: Arr, dFinal?: Arr): SsdGrads {
  const { N, P } = s;
  const ix = indexers(s);
  const g: SsdGrads = {
    dx: new Float64Array(x.x.length), ddt: new Float64Array(x.dt.length), dBm: new Float64Array(x.Bm.length), dCm: new Float64Array(x.Cm.length),
    ddtBias: new Float64Array(s.H), daLog: new Float64Array(s.H), dD: new Float64Array(s.H), dstate: new Float64Array(s.B * s.H * N * P),
  };
  for (let b = 0; b < s.B; b++)
    for (let h = 0; h < s.H; h++) {
      const a = -Math.exp(x.aLog[h]!);
      // states[t + 1] is the state after token t; states[0] the initial one
      const states = new Float64Array((s.T + 1) * N * P);
      if (x.state) for (let e = 0; e < N * P; e++) states[e] = x.state[ix.st(b, h) + e]!;
      const steps = Array.from({ length: s.T }, (_, t) => stepSize(s, x.dt[ix.dt(b, t, h)]!, x.dtBias[h]!));
      // a segment start sees a zero state before it
      const reset = (t: number) => resets(s, x, b, t);
      for (let t = 0; t < s.T; t++) {
        const { dtp } = steps[t]!, decay = reset(t) ? 0 : Math.exp(dtp * a), xo = ix.x(b, t, h), bo = ix.bc(b, t, h);
        for (let i = 0; i < N; i++)
          for (let j = 0; j < P; j++) {
            states[(t + 1) * N * P + i * P + j] = decay * states[t * N * P + i * P + j]! + x.Bm[bo + i]! * dtp * x.x[xo + j]!;
          }
      }
      const dS = new Float64Array(N * P);
      if (dFinal) for (let e = 0; e < N * P; e++) dS[e] = dFinal[ix.st(b, h) + e]!;
      for (let t = s.T - 1; t >= 0; t--) {
        const { dtp, slope } = steps[t]!, decay = Math.exp(dtp * a), xo = ix.x(b, t, h), bo = ix.bc(b, t, h);
        const St = states.subarray((t + 1) * N * P, (t + 2) * N * P), Sp = states.subarray(t * N * P, (t + 1) * N * P);
        // y_t = S_t^T C_t + D x_t
        for (let j = 0; j < P; j++) {
          const d = dy[xo + j]!;
          g.dx[xo + j]! += x.D[h]! * d;
          g.dD[h]! += x.x[xo + j]! * d;
          for (let i = 0; i < N; i++) {
            dS[i * P + j]! += x.Cm[bo + i]! * d;
            g.dCm[bo + i]! += St[i * P + j]! * d;
          }
        }
        // S_t = decay S_{t-1} + B_t v_t^T, v_t = dtp x_t
        let ddecay = 0, ddtp = 0;
        for (let j = 0; j < P; j++) {
          let dv = 0;
          for (let i = 0; i < N; i++) dv += dS[i * P + j]! * x.Bm[bo + i]!;
          g.dx[xo + j]! += dtp * dv;
          ddtp += x.x[xo + j]! * dv;
        }
        for (let i = 0; i < N; i++)
          for (let j = 0; j < P; j++) {
            g.dBm[bo + i]! += dS[i * P + j]! * dtp * x.x[xo + j]!;
            ddecay += Sp[i * P + j]! * dS[i * P + j]!;
          }
        if (reset(t)) {
          // the state before a segment start is dropped: no gradient to it or to this step's decay
          dS.fill(0);
          ddecay = 0;
        }
        for (let e = 0; e < N * P; e++) dS[e]! *= decay;
        // decay = exp(dtp a)
        ddtp += ddecay * decay * a;
        g.daLog[h]! += ddecay * decay * dtp * a;
        const ddt = ddtp * slope;
        g.ddt[ix.dt(b, t, h)] = ddt;
        g.ddtBias[h]! += ddt;
      }
      g.dstate.set(dS, ix.st(b, h));
    }
  return g;
}
