// The gated delta rule of Gated DeltaNet (src/kernels/delta-rule.ts), f32. Per value head h (key
// head h / (Hv / Hk)) with the state S [Dk, Dv]:
//   S <- exp(g_t) S;  delta_t = beta_t (v_t - S^T k_t);  S <- S + k_t delta_t^T;  o_t = scale S^T q_t
// Layouts: q, k [B, T, Hk, Dk]; v, out [B, T, Hv, Dv]; g, beta [B, T, Hv]; state [B, Hv, Dk, Dv].
// The value columns of S evolve independently, so the scans split Dv into blocks of CB columns,
// one workgroup per (column block, head, batch).
//
// Chunked forward (training and prefill), chunks of C tokens with cumulative log decays c_i:
//   delta_rule_chunk_prepare, one workgroup per (chunk, head, batch): A[i,m] = beta_i
//     exp(c_i - c_m) k_i.k_m (m < i) and the forward substitution with I + A (the UT transform)
//     U = (I + A)^-1 beta V, W = (I + A)^-1 diag(beta exp(c)) K, so that the chunk's deltas are
//     U - W S0; and the masked intra-chunk scores QK[i, m] = scale exp(c_i - c_m) q_i.k_m (m <= i).
//   delta_rule_chunk_scan, sequential over chunks: D = U - W S0;
//     o_i = scale exp(c_i) S0^T q_i + sum_{m<=i} QK[i, m] D_m;
//     S <- exp(c_last) S0 + sum_m exp(c_last - c_m) k_m D_m^T.
//   It saves the state at each chunk start and every delta for the backward.
// Recurrent form (decode): delta_rule_recurrent, token by token with the state in place.
// Backward: delta_rule_backward walks the chunks in reverse; per chunk it recomputes the decayed
//   states P_t = exp(g_t) S_{t-1} from the saved chunk-start state and deltas (into a scratch
//   region of its own), then steps back through the tokens with dS (the gradient of the state):
//     dS += scale q_t do_t^T;  ddelta = dS^T k_t;  dv_t = beta_t ddelta;
//     dq_t = scale S_t do_t;  dk_t = dS delta_t - beta_t P_t ddelta;  dbeta_t = ddelta . delta_t / beta_t;
//     dP = dS - beta_t k_t ddelta^T;  dg_t = sum(P_t * dP);  dS <- exp(g_t) dP.
//   dq, dk, dbeta, dg are per column block partial sums, added in a fixed order by
//   delta_rule_backward_reduce (which also sums the value heads that share a key head).
// Packed sequences (segments [B, T]): the state is zeroed before each segment's first token (after
// the row's first), so a chunk masks its decays between tokens of different segments (a segment
// number sn counts the starts inside the chunk; only sn 0 reads the state from before the chunk).
// Large batches run in slices of SB rows (workgroup z = row in the slice) so that the scratch
// regions stay within one binding.
// Entry points alias binding numbers; each uses one consistent set.
// variant: DK, CB, CHUNK

const WG = 256u;

struct Params {
  B: u32, T: u32, Hk: u32, Hv: u32,
  Dk: u32, Dv: u32,
  // chunk size, number of chunks, number of column blocks
  C: u32, NC: u32, NCB: u32,
  // bit 0: read the initial state; bit 1: write the final state; bit 2: save for the backward;
  // bit 3: segment ids given
  flags: u32,
  scale: f32,
  // the batch rows of this dispatch: b0 .. b0 + SB (scratch regions hold SB rows, indexed locally)
  b0: u32, SB: u32,
}

@group(1) @binding(0) var<uniform> p: Params;

fn qkRow(b: u32, t: u32, h: u32) -> u32 {
  return ((b * p.T + t) * p.Hk + h / (p.Hv / p.Hk)) * p.Dk;
}
fn vRow(b: u32, t: u32, h: u32) -> u32 {
  return ((b * p.T + t) * p.Hv + h) * p.Dv;
}
fn gIndex(b: u32, t: u32, h: u32) -> u32 {
  return (b * p.T + t) * p.Hv + h;
}
fn stateBase(b: u32, h: u32) -> u32 {
  return (b * p.Hv + h) * p.Dk * p.Dv;
}
// the saved chunk-start states [B, Hv, NC, Dk, Dv], the deltas [B, T, Hv, Dv], the segment-start
// flags [B, T]
fn checkpointBase(b: u32, h: u32, n: u32) -> u32 {
  return ((b * p.Hv + h) * p.NC + n) * p.Dk * p.Dv;
}
fn savedDelta(b: u32, t: u32, h: u32) -> u32 {
  return p.B * p.Hv * p.NC * p.Dk * p.Dv + vRow(b, t, h);
}
fn savedReset(b: u32, t: u32) -> u32 {
  return p.B * p.Hv * (p.NC * p.Dk * p.Dv + p.T * p.Dv) + b * p.T + t;
}
// the prepare pass's output (rows of the slice): UW [B, T, Hv, Dv + Dk] (U then W per token), QK [B, Hv, T, C], the
// segment-start flags [B, T]
fn prepUW(b: u32, t: u32, h: u32) -> u32 {
  return ((b * p.T + t) * p.Hv + h) * (p.Dv + p.Dk);
}
fn prepQK(b: u32, h: u32, t: u32) -> u32 {
  return p.SB * p.T * p.Hv * (p.Dv + p.Dk) + ((b * p.Hv + h) * p.T + t) * p.C;
}
fn prepReset(b: u32, t: u32) -> u32 {
  return p.SB * p.T * p.Hv * (p.Dv + p.Dk + p.C) + b * p.T + t;
}

var<workgroup> S: array<f32, DK * CB>;
var<workgroup> gc: array<f32, CHUNK>;
var<workgroup> sn: array<u32, CHUNK>;

// decay from token m to token i of the chunk (m <= i): zero across a segment start
fn decayBetween(i: u32, m: u32) -> f32 {
  if (sn[i] != sn[m]) { return 0.0; }
  return exp(gc[i] - gc[m]);
}
// decay of the state from before the chunk to token i: zero once a segment started
fn decayFromStart(i: u32) -> f32 {
  if (sn[i] != 0u) { return 0.0; }
  return exp(gc[i]);
}

// ---- chunked forward: prepare ------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> pQ: array<f32>;
@group(0) @binding(1) var<storage, read> pK: array<f32>;
@group(0) @binding(2) var<storage, read> pV: array<f32>;
@group(0) @binding(3) var<storage, read> pG: array<f32>;
@group(0) @binding(4) var<storage, read> pBeta: array<f32>;
@group(0) @binding(5) var<storage, read> pSeg: array<i32>;
@group(0) @binding(6) var<storage, read_write> pPrep: array<f32>;

var<workgroup> arow: array<f32, CHUNK>;

fn prepDot(a: u32, b: u32, isQ: bool) -> f32 {
  var s = 0.0;
  for (var i = 0u; i < p.Dk; i++) {
    var x: f32;
    if (isQ) { x = pQ[a + i]; } else { x = pK[a + i]; }
    s += x * pK[b + i];
  }
  return s;
}

@compute @workgroup_size(WG)
fn delta_rule_chunk_prepare(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let n = wg.x;
  let h = wg.y;
  let lb = wg.z;
  let b = p.b0 + lb;
  let t0 = n * p.C;
  let L = min(p.C, p.T - t0);
  if (lane == 0u) {
    var acc = 0.0;
    var starts = 0u;
    for (var i = 0u; i < L; i++) {
      let t = t0 + i;
      acc += pG[gIndex(b, t, h)];
      gc[i] = acc;
      var reset = 0u;
      if ((p.flags & 8u) != 0u && t > 0u && pSeg[b * p.T + t] != pSeg[b * p.T + t - 1u]) { reset = 1u; }
      starts += reset;
      sn[i] = starts;
      if (h == 0u) { pPrep[prepReset(lb, t)] = f32(reset); }
    }
  }
  workgroupBarrier();
  let W = p.Dv + p.Dk;
  for (var i = 0u; i < L; i++) {
    let bi = pBeta[gIndex(b, t0 + i, h)];
    let ki = qkRow(b, t0 + i, h);
    for (var m = lane; m < i; m += WG) {
      arow[m] = bi * decayBetween(i, m) * prepDot(ki, qkRow(b, t0 + m, h), false);
    }
    workgroupBarrier();
    // each invocation owns its columns of U and W in every row: it reads back only its own writes
    for (var col = lane; col < W; col += WG) {
      var x: f32;
      if (col < p.Dv) { x = bi * pV[vRow(b, t0 + i, h) + col]; } else { x = bi * decayFromStart(i) * pK[ki + col - p.Dv]; }
      for (var m = 0u; m < i; m++) { x -= arow[m] * pPrep[prepUW(lb, t0 + m, h) + col]; }
      pPrep[prepUW(lb, t0 + i, h) + col] = x;
    }
    workgroupBarrier();
  }
  for (var idx = lane; idx < L * L; idx += WG) {
    let i = idx / L;
    let m = idx % L;
    var s = 0.0;
    if (m <= i) { s = p.scale * decayBetween(i, m) * prepDot(qkRow(b, t0 + i, h), qkRow(b, t0 + m, h), true); }
    pPrep[prepQK(lb, h, t0 + i) + m] = s;
  }
}

// ---- chunked forward: scan over chunks ---------------------------------------------------------

@group(0) @binding(0) var<storage, read> sQ: array<f32>;
@group(0) @binding(1) var<storage, read> sK: array<f32>;
@group(0) @binding(2) var<storage, read> sG: array<f32>;
@group(0) @binding(3) var<storage, read> sPrep: array<f32>;
@group(0) @binding(4) var<storage, read_write> sState: array<f32>;
@group(0) @binding(5) var<storage, read_write> sOut: array<f32>;
@group(0) @binding(6) var<storage, read_write> sSaved: array<f32>;

var<workgroup> D: array<f32, CHUNK * CB>;

@compute @workgroup_size(WG)
fn delta_rule_chunk_scan(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let col0 = wg.x * CB;
  let h = wg.y;
  let lb = wg.z;
  let b = p.b0 + lb;
  let save = (p.flags & 4u) != 0u;
  for (var e = lane; e < DK * CB; e += WG) {
    let i = e / CB;
    let col = col0 + e % CB;
    var s = 0.0;
    if ((p.flags & 1u) != 0u && col < p.Dv) { s = sState[stateBase(b, h) + i * p.Dv + col]; }
    S[e] = s;
  }
  for (var n = 0u; n < p.NC; n++) {
    let t0 = n * p.C;
    let L = min(p.C, p.T - t0);
    if (lane == 0u) {
      var acc = 0.0;
      var starts = 0u;
      for (var i = 0u; i < L; i++) {
        acc += sG[gIndex(b, t0 + i, h)];
        gc[i] = acc;
        let reset = sPrep[prepReset(lb, t0 + i)];
        starts += u32(reset);
        sn[i] = starts;
        if (save && h == 0u && wg.x == 0u) { sSaved[savedReset(b, t0 + i)] = reset; }
      }
    }
    // each invocation saves the state elements it updates below
    if (save) {
      for (var e = lane; e < DK * CB; e += WG) {
        let col = col0 + e % CB;
        if (col < p.Dv) { sSaved[checkpointBase(b, h, n) + (e / CB) * p.Dv + col] = S[e]; }
      }
    }
    workgroupBarrier();
    // deltas of the chunk: D = U - W S0
    for (var e = lane; e < L * CB; e += WG) {
      let t = e / CB;
      let j = e % CB;
      let col = col0 + j;
      var d = 0.0;
      if (col < p.Dv) {
        let row = prepUW(lb, t0 + t, h);
        d = sPrep[row + col];
        for (var i = 0u; i < p.Dk; i++) { d -= sPrep[row + p.Dv + i] * S[i * CB + j]; }
        if (save) { sSaved[savedDelta(b, t0 + t, h) + col] = d; }
      }
      D[e] = d;
    }
    workgroupBarrier();
    for (var e = lane; e < L * CB; e += WG) {
      let t = e / CB;
      let j = e % CB;
      let col = col0 + j;
      if (col < p.Dv) {
        let qr = qkRow(b, t0 + t, h);
        var inter = 0.0;
        for (var i = 0u; i < p.Dk; i++) { inter += sQ[qr + i] * S[i * CB + j]; }
        var o = p.scale * decayFromStart(t) * inter;
        let qk = prepQK(lb, h, t0 + t);
        for (var m = 0u; m <= t; m++) { o += sPrep[qk + m] * D[m * CB + j]; }
        sOut[vRow(b, t0 + t, h) + col] = o;
      }
    }
    workgroupBarrier();
    for (var e = lane; e < DK * CB; e += WG) {
      let i = e / CB;
      let j = e % CB;
      var s = decayFromStart(L - 1u) * S[e];
      for (var m = 0u; m < L; m++) { s += decayBetween(L - 1u, m) * sK[qkRow(b, t0 + m, h) + i] * D[m * CB + j]; }
      S[e] = s;
    }
    workgroupBarrier();
  }
  if ((p.flags & 2u) != 0u) {
    for (var e = lane; e < DK * CB; e += WG) {
      let col = col0 + e % CB;
      if (col < p.Dv) { sState[stateBase(b, h) + (e / CB) * p.Dv + col] = S[e]; }
    }
  }
}

// ---- recurrent form (decode): token by token, the state updated in place ------------------------

@group(0) @binding(0) var<storage, read> rQ: array<f32>;
@group(0) @binding(1) var<storage, read> rK: array<f32>;
@group(0) @binding(2) var<storage, read> rV: array<f32>;
@group(0) @binding(3) var<storage, read> rG: array<f32>;
@group(0) @binding(4) var<storage, read> rBeta: array<f32>;
@group(0) @binding(5) var<storage, read_write> rState: array<f32>;
@group(0) @binding(6) var<storage, read_write> rOut: array<f32>;

var<workgroup> colv: array<f32, CB>;
var<workgroup> colpart: array<f32, WG>;

// Sums over the rows of S per column, WG / CB invocations to a column: invocation `lane` owns
// column lane % CB and every (WG / CB)-th row from lane / CB; columnSum adds the parts (in a fixed
// order) and returns column `lane`'s total to invocations lane < CB.
fn columnSum(lane: u32, part: f32) -> f32 {
  colpart[lane] = part;
  workgroupBarrier();
  var total = 0.0;
  if (lane < CB) {
    for (var q = 0u; q < WG / CB; q++) { total += colpart[q * CB + lane]; }
  }
  workgroupBarrier();
  return total;
}

// the recurrence's part of S^T k (withK) or S^T q of this invocation's column
fn columnPart(lane: u32, kr: u32, withK: bool) -> f32 {
  let j = lane % CB;
  var acc = 0.0;
  for (var i = lane / CB; i < p.Dk; i += WG / CB) {
    var x: f32;
    if (withK) { x = rK[kr + i]; } else { x = rQ[kr + i]; }
    acc += S[i * CB + j] * x;
  }
  return acc;
}

@compute @workgroup_size(WG)
fn delta_rule_recurrent(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let col0 = wg.x * CB;
  let h = wg.y;
  let lb = wg.z;
  let b = p.b0 + lb;
  let base = stateBase(b, h);
  for (var e = lane; e < DK * CB; e += WG) {
    let col = col0 + e % CB;
    var s = 0.0;
    if (col < p.Dv) { s = rState[base + (e / CB) * p.Dv + col]; }
    S[e] = s;
  }
  for (var t = 0u; t < p.T; t++) {
    let decay = exp(rG[gIndex(b, t, h)]);
    let beta = rBeta[gIndex(b, t, h)];
    let kr = qkRow(b, t, h);
    for (var e = lane; e < DK * CB; e += WG) { S[e] *= decay; }
    workgroupBarrier();
    // kv = S^T k per column, then delta
    let kv = columnSum(lane, columnPart(lane, kr, true));
    if (lane < CB) {
      let col = col0 + lane;
      var d = 0.0;
      if (col < p.Dv) { d = beta * (rV[vRow(b, t, h) + col] - kv); }
      colv[lane] = d;
    }
    workgroupBarrier();
    for (var e = lane; e < DK * CB; e += WG) { S[e] += rK[kr + e / CB] * colv[e % CB]; }
    workgroupBarrier();
    let o = columnSum(lane, columnPart(lane, kr, false));
    if (lane < CB && col0 + lane < p.Dv) { rOut[vRow(b, t, h) + col0 + lane] = p.scale * o; }
    workgroupBarrier();
  }
  for (var e = lane; e < DK * CB; e += WG) {
    let col = col0 + e % CB;
    if (col < p.Dv) { rState[base + (e / CB) * p.Dv + col] = S[e]; }
  }
}

// ---- backward ----------------------------------------------------------------------------------
// P [B, Hv, NCB, C, Dk, CB]: the decayed states of the current chunk, per workgroup.
// Parts: dq partials [NCB, B, T, Hv, Dk], dk partials (same), (dbeta, dg) partials
// [NCB, B, T, Hv, 2], then dv [B, T, Hv, Dv].

@group(0) @binding(0) var<storage, read> bQ: array<f32>;
@group(0) @binding(1) var<storage, read> bK: array<f32>;
@group(0) @binding(2) var<storage, read> bG: array<f32>;
@group(0) @binding(3) var<storage, read> bBeta: array<f32>;
@group(0) @binding(4) var<storage, read> bDO: array<f32>;
@group(0) @binding(5) var<storage, read> bSaved: array<f32>;
@group(0) @binding(6) var<storage, read_write> bP: array<f32>;
@group(0) @binding(7) var<storage, read_write> bParts: array<f32>;

var<workgroup> red: array<vec2f, WG>;

fn partsDk() -> u32 {
  return p.NCB * p.SB * p.T * p.Hv * p.Dk;
}
fn partsBG() -> u32 {
  return 2u * partsDk();
}
fn partsDv() -> u32 {
  return partsBG() + p.NCB * p.SB * p.T * p.Hv * 2u;
}

fn workgroupSum2(v: vec2f, lane: u32) -> vec2f {
  red[lane] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lane < s) { red[lane] += red[lane + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}

// exp(g_t), or zero at a segment start
fn stepDecay(b: u32, t: u32, h: u32) -> f32 {
  if (bSaved[savedReset(b, t)] != 0.0) { return 0.0; }
  return exp(bG[gIndex(b, t, h)]);
}

@compute @workgroup_size(WG)
fn delta_rule_backward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let cb = wg.x;
  let col0 = cb * CB;
  let h = wg.y;
  let lb = wg.z;
  let b = p.b0 + lb;
  let pBase = ((lb * p.Hv + h) * p.NCB + cb) * CHUNK * DK * CB;
  // dS lives in S
  for (var e = lane; e < DK * CB; e += WG) { S[e] = 0.0; }
  for (var nn = 0u; nn < p.NC; nn++) {
    let n = p.NC - 1u - nn;
    let t0 = n * p.C;
    let L = min(p.C, p.T - t0);
    // recompute the decayed states of the chunk; each invocation owns its elements
    storageBarrier();
    for (var e = lane; e < DK * CB; e += WG) {
      let i = e / CB;
      let col = col0 + e % CB;
      if (col < p.Dv) {
        var s = bSaved[checkpointBase(b, h, n) + i * p.Dv + col];
        for (var t = 0u; t < L; t++) {
          s *= stepDecay(b, t0 + t, h);
          bP[pBase + t * DK * CB + e] = s;
          s += bK[qkRow(b, t0 + t, h) + i] * bSaved[savedDelta(b, t0 + t, h) + col];
        }
      } else {
        for (var t = 0u; t < L; t++) { bP[pBase + t * DK * CB + e] = 0.0; }
      }
    }
    storageBarrier();
    for (var tt = 0u; tt < L; tt++) {
      let t = L - 1u - tt;
      let ta = t0 + t;
      let gi = gIndex(b, ta, h);
      let beta = bBeta[gi];
      let kr = qkRow(b, ta, h);
      let vr = vRow(b, ta, h);
      let pt = pBase + t * DK * CB;
      for (var e = lane; e < DK * CB; e += WG) {
        let col = col0 + e % CB;
        if (col < p.Dv) { S[e] += p.scale * bQ[kr + e / CB] * bDO[vr + col]; }
      }
      workgroupBarrier();
      // per column: ddelta = dS^T k, and dv
      var part = 0.0;
      for (var i = lane / CB; i < p.Dk; i += WG / CB) { part += S[i * CB + lane % CB] * bK[kr + i]; }
      let dd = columnSum(lane, part);
      if (lane < CB) {
        let col = col0 + lane;
        if (col < p.Dv) { bParts[partsDv() + vRow(lb, ta, h) + col] = beta * dd; }
        colv[lane] = dd;
      }
      workgroupBarrier();
      // per row: dq and dk partials over this block's columns; dg and dbeta summed over the block
      var acc = vec2f(0.0);
      if (lane < p.Dk) {
        let i = lane;
        let ki = bK[kr + i];
        var dq = 0.0;
        var dk = 0.0;
        for (var j = 0u; j < CB; j++) {
          let col = col0 + j;
          if (col >= p.Dv) { break; }
          let delta = bSaved[savedDelta(b, ta, h) + col];
          let pij = bP[pt + i * CB + j];
          let dS = S[i * CB + j];
          dq += (pij + ki * delta) * bDO[vr + col];
          dk += dS * delta - beta * pij * colv[j];
          acc.y += pij * (dS - beta * ki * colv[j]);
        }
        let part = ((cb * p.SB + lb) * p.T + ta) * p.Hv + h;
        bParts[part * p.Dk + i] = p.scale * dq;
        bParts[partsDk() + part * p.Dk + i] = dk;
      }
      if (lane < CB && col0 + lane < p.Dv) {
        acc.x = colv[lane] * bSaved[savedDelta(b, ta, h) + col0 + lane] / beta;
      }
      let total = workgroupSum2(acc, lane);
      if (lane == 0u) {
        let part = ((cb * p.SB + lb) * p.T + ta) * p.Hv + h;
        bParts[partsBG() + part * 2u] = total.x;
        bParts[partsBG() + part * 2u + 1u] = total.y;
      }
      let decay = stepDecay(b, ta, h);
      for (var e = lane; e < DK * CB; e += WG) {
        S[e] = decay * (S[e] - beta * bK[kr + e / CB] * colv[e % CB]);
      }
      workgroupBarrier();
    }
  }
}

// ---- backward: reduce the partials ------------------------------------------------------------

@group(0) @binding(0) var<storage, read> gParts: array<f32>;
@group(0) @binding(1) var<storage, read_write> gDQ: array<f32>;
@group(0) @binding(2) var<storage, read_write> gDK: array<f32>;
@group(0) @binding(3) var<storage, read_write> gDV: array<f32>;
@group(0) @binding(4) var<storage, read_write> gDG: array<f32>;
@group(0) @binding(5) var<storage, read_write> gDBeta: array<f32>;

fn reduceElement(wg: vec3u, nwg: vec3u, lane: u32) -> u32 {
  return (wg.y * nwg.x + wg.x) * WG + lane;
}

// one invocation per element of the slice's dq/dk [SB, T, Hk, Dk], then of dbeta/dg [SB, T, Hv],
// then of dv; written at the slice's rows
@compute @workgroup_size(WG)
fn delta_rule_backward_reduce(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  var e = reduceElement(wg, nwg, lane);
  let nqk = p.SB * p.T * p.Hk * p.Dk;
  let ng = p.SB * p.T * p.Hv;
  if (e < nqk) {
    let i = e % p.Dk;
    let row = e / p.Dk;
    let hk = row % p.Hk;
    let bt = row / p.Hk;
    let rep = p.Hv / p.Hk;
    var dq = 0.0;
    var dk = 0.0;
    for (var cb = 0u; cb < p.NCB; cb++) {
      for (var r = 0u; r < rep; r++) {
        let at = ((cb * p.SB * p.T + bt) * p.Hv + hk * rep + r) * p.Dk + i;
        dq += gParts[at];
        dk += gParts[partsDk() + at];
      }
    }
    gDQ[p.b0 * p.T * p.Hk * p.Dk + e] = dq;
    gDK[p.b0 * p.T * p.Hk * p.Dk + e] = dk;
    return;
  }
  e -= nqk;
  if (e < ng) {
    var db = 0.0;
    var dg = 0.0;
    for (var cb = 0u; cb < p.NCB; cb++) {
      let at = partsBG() + (cb * ng + e) * 2u;
      db += gParts[at];
      dg += gParts[at + 1u];
    }
    gDBeta[p.b0 * p.T * p.Hv + e] = db;
    gDG[p.b0 * p.T * p.Hv + e] = dg;
    return;
  }
  e -= ng;
  if (e < ng * p.Dv) { gDV[p.b0 * p.T * p.Hv * p.Dv + e] = gParts[partsDv() + e]; }
}
