// Mamba-2's SSD scan (src/kernels/ssd.ts), f32, as Granite 4.0 H's Mamba layers use it. Per head h
// (group h / (H / G)) with the state S [N, P]:
//   dtp_t = clamp(softplus(dt_t + dt_bias[h]), dtMin, dtMax);  g_t = dtp_t a  (a = -exp(A_log[h]))
//   S <- exp(g_t) S + B_t (dtp_t x_t)^T;  y_t = S^T C_t + D[h] x_t
// Layouts: x, y [B, T, H, P]; dt [B, T, H]; Bm, Cm [B, T, G, N]; dtBias, aLog, D [H];
// state [B, H, N, P]. The value columns of S evolve independently, so the scans split P into
// blocks of CB columns, one workgroup per (column block, head, batch row).
//
// ssd_steps: per token and head, the step (dtp, d dtp / d dt, g, a) into the prep scratch.
// Chunked forward (training and prefill), chunks of C tokens with cumulative log decays c_i:
//   ssd_chunk_prepare, one workgroup per (chunk, head, row): the masked intra-chunk scores
//     QK[i, m] = exp(c_i - c_m) C_i.B_m (m <= i).
//   ssd_chunk_scan, sequential over chunks:
//     y_i = exp(c_i) S0^T C_i + sum_{m<=i} QK[i, m] dtp_m x_m + D x_i;
//     S <- exp(c_last) S0 + sum_m exp(c_last - c_m) B_m (dtp_m x_m)^T.
//   It saves the state at each chunk start for the backward.
// Recurrent form (decode): ssd_recurrent, token by token with the state in place.
// Backward: ssd_backward walks the chunks in reverse; per chunk it recomputes the decayed states
//   P_t = exp(g_t) S_{t-1} from the saved chunk-start state (into a scratch region of its own),
//   then steps back through the tokens with dS (the gradient of the state):
//     dS += C_t dy_t^T;  dv_t = dS^T B_t;  dB_t = dS v_t;  dC_t = S_t dy_t;  dg_t = sum(P_t * dS);
//     dS <- exp(g_t) dS     (v_t = dtp_t x_t, S_t = P_t + B_t v_t^T)
//   dB, dC and dg are per column block partial sums. ssd_backward_reduce_x adds them in a fixed
//   order into dx = dtp dv + D dy and ddt = (x.dv + a dg) d dtp / d dt; ssd_backward_reduce_bc sums
//   dB and dC over the blocks and the heads of a group; ssd_backward_params the gradients of
//   dt_bias (sum ddt), A_log (sum dg g) and D (sum x.dy) over the tokens.
// Packed sequences (segments [B, T]): the state is zeroed before each segment's first token (after
// the row's first), so a chunk masks its decays between tokens of different segments (a segment
// number sn counts the starts inside the chunk; only sn 0 reads the state from before the chunk),
// and the backward's step decay is zero at a segment start.
// Large batches run in slices of SB rows (workgroup z = row in the slice) so that the scratch
// regions stay within one binding; the parameter gradients accumulate over the slices.
// Entry points alias binding numbers; each uses one consistent set.
// variant: DN, CB, CHUNK

const WG = 256u;

struct Params {
  B: u32, T: u32, H: u32, G: u32,
  N: u32, P: u32,
  // chunk size, number of chunks, number of column blocks
  C: u32, NC: u32, NCB: u32,
  // bit 0: read the initial state; bit 1: write the final state; bit 2: save for the backward;
  // bit 3: accumulate the parameter gradients (slices after the first); bit 4: segment ids given;
  // bit 5: ssd_steps writes the segment-start flags (the chunked forward's prep)
  flags: u32,
  dtMin: f32, dtMax: f32,
  // the batch rows of this dispatch: b0 .. b0 + SB (scratch regions hold SB rows, indexed locally)
  b0: u32, SB: u32,
}

@group(1) @binding(0) var<uniform> p: Params;

fn xRow(b: u32, t: u32, h: u32) -> u32 {
  return ((b * p.T + t) * p.H + h) * p.P;
}
fn bcRow(b: u32, t: u32, h: u32) -> u32 {
  return ((b * p.T + t) * p.G + h / (p.H / p.G)) * p.N;
}
fn headIndex(b: u32, t: u32, h: u32) -> u32 {
  return (b * p.T + t) * p.H + h;
}
fn stateBase(b: u32, h: u32) -> u32 {
  return (b * p.H + h) * p.N * p.P;
}
// the saved chunk-start states [B, H, NC, N, P], then the segment-start flags [B, T]
fn checkpointBase(b: u32, h: u32, n: u32) -> u32 {
  return ((b * p.H + h) * p.NC + n) * p.N * p.P;
}
fn savedReset(b: u32, t: u32) -> u32 {
  return p.B * p.H * p.NC * p.N * p.P + b * p.T + t;
}
// the prep scratch (rows of the slice): steps [SB, T, H, 4] = (dtp, d dtp / d dt, g, a), then the
// scores QK [SB, H, T, C], then the segment-start flags [SB, T]
fn prepStep(lb: u32, t: u32, h: u32) -> u32 {
  return ((lb * p.T + t) * p.H + h) * 4u;
}
fn prepQK(lb: u32, h: u32, t: u32) -> u32 {
  return p.SB * p.T * p.H * 4u + ((lb * p.H + h) * p.T + t) * p.C;
}
fn prepReset(lb: u32, t: u32) -> u32 {
  return p.SB * p.T * p.H * (4u + p.C) + lb * p.T + t;
}

fn softplus(u: f32) -> f32 {
  if (u > 20.0) { return u; }
  return max(u, 0.0) + log(1.0 + exp(-abs(u)));
}

var<workgroup> S: array<f32, DN * CB>;
var<workgroup> gc: array<f32, CHUNK>;
var<workgroup> sn: array<u32, CHUNK>;
var<workgroup> colpart: array<f32, WG>;

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

// ---- steps: dtp, its slope, the log decay --------------------------------------------------------

@group(0) @binding(0) var<storage, read> tDt: array<f32>;
@group(0) @binding(1) var<storage, read> tBias: array<f32>;
@group(0) @binding(2) var<storage, read> tALog: array<f32>;
@group(0) @binding(3) var<storage, read_write> tPrep: array<f32>;
@group(0) @binding(4) var<storage, read> tSeg: array<i32>;

@compute @workgroup_size(WG)
fn ssd_steps(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let e = (wg.y * nwg.x + wg.x) * WG + lane;
  if (e >= p.SB * p.T * p.H) { return; }
  let h = e % p.H;
  let lt = e / p.H;
  let u = tDt[p.b0 * p.T * p.H + e] + tBias[h];
  let sp = softplus(u);
  let dtp = clamp(sp, p.dtMin, p.dtMax);
  var slope = 0.0;
  if (sp >= p.dtMin && sp <= p.dtMax) { slope = select(1.0 / (1.0 + exp(-u)), 1.0, u > 20.0); }
  let a = -exp(tALog[h]);
  let o = lt * p.H * 4u + h * 4u;
  tPrep[o] = dtp;
  tPrep[o + 1u] = slope;
  tPrep[o + 2u] = dtp * a;
  tPrep[o + 3u] = a;
  if ((p.flags & 32u) != 0u && h == 0u) {
    let t = lt % p.T;
    let row = (p.b0 + lt / p.T) * p.T;
    var reset = 0.0;
    if ((p.flags & 16u) != 0u && t > 0u && tSeg[row + t] != tSeg[row + t - 1u]) { reset = 1.0; }
    tPrep[prepReset(lt / p.T, t)] = reset;
  }
}

// ---- chunked forward: prepare --------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> pB: array<f32>;
@group(0) @binding(1) var<storage, read> pC: array<f32>;
@group(0) @binding(2) var<storage, read_write> pPrep: array<f32>;

@compute @workgroup_size(WG)
fn ssd_chunk_prepare(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lane: u32) {
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
      acc += pPrep[prepStep(lb, t0 + i, h) + 2u];
      gc[i] = acc;
      starts += u32(pPrep[prepReset(lb, t0 + i)]);
      sn[i] = starts;
    }
  }
  workgroupBarrier();
  for (var idx = lane; idx < L * L; idx += WG) {
    let i = idx / L;
    let m = idx % L;
    var s = 0.0;
    if (m <= i) {
      let ci = bcRow(b, t0 + i, h);
      let bm = bcRow(b, t0 + m, h);
      for (var k = 0u; k < p.N; k++) { s += pC[ci + k] * pB[bm + k]; }
      s *= decayBetween(i, m);
    }
    pPrep[prepQK(lb, h, t0 + i) + m] = s;
  }
}

// ---- chunked forward: scan over chunks -----------------------------------------------------------

@group(0) @binding(0) var<storage, read> sX: array<f32>;
@group(0) @binding(1) var<storage, read> sB: array<f32>;
@group(0) @binding(2) var<storage, read> sC: array<f32>;
@group(0) @binding(3) var<storage, read> sD: array<f32>;
@group(0) @binding(4) var<storage, read> sPrep: array<f32>;
@group(0) @binding(5) var<storage, read_write> sState: array<f32>;
@group(0) @binding(6) var<storage, read_write> sOut: array<f32>;
@group(0) @binding(7) var<storage, read_write> sSaved: array<f32>;

var<workgroup> dtc: array<f32, CHUNK>;

@compute @workgroup_size(WG)
fn ssd_chunk_scan(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let col0 = wg.x * CB;
  let h = wg.y;
  let lb = wg.z;
  let b = p.b0 + lb;
  let save = (p.flags & 4u) != 0u;
  let dskip = sD[h];
  for (var e = lane; e < DN * CB; e += WG) {
    let i = e / CB;
    let col = col0 + e % CB;
    var s = 0.0;
    if ((p.flags & 1u) != 0u && i < p.N && col < p.P) { s = sState[stateBase(b, h) + i * p.P + col]; }
    S[e] = s;
  }
  for (var n = 0u; n < p.NC; n++) {
    let t0 = n * p.C;
    let L = min(p.C, p.T - t0);
    if (lane == 0u) {
      var acc = 0.0;
      var starts = 0u;
      for (var i = 0u; i < L; i++) {
        let st = prepStep(lb, t0 + i, h);
        acc += sPrep[st + 2u];
        gc[i] = acc;
        dtc[i] = sPrep[st];
        let reset = sPrep[prepReset(lb, t0 + i)];
        starts += u32(reset);
        sn[i] = starts;
        if (save && h == 0u && wg.x == 0u) { sSaved[savedReset(b, t0 + i)] = reset; }
      }
    }
    // each invocation saves the state elements it updates below
    if (save) {
      for (var e = lane; e < DN * CB; e += WG) {
        let i = e / CB;
        let col = col0 + e % CB;
        if (i < p.N && col < p.P) { sSaved[checkpointBase(b, h, n) + i * p.P + col] = S[e]; }
      }
    }
    workgroupBarrier();
    for (var e = lane; e < L * CB; e += WG) {
      let t = e / CB;
      let j = e % CB;
      let col = col0 + j;
      if (col < p.P) {
        let cr = bcRow(b, t0 + t, h);
        var inter = 0.0;
        for (var i = 0u; i < p.N; i++) { inter += sC[cr + i] * S[i * CB + j]; }
        let xr = xRow(b, t0 + t, h);
        var o = decayFromStart(t) * inter + dskip * sX[xr + col];
        let qk = prepQK(lb, h, t0 + t);
        for (var m = 0u; m <= t; m++) { o += sPrep[qk + m] * dtc[m] * sX[xRow(b, t0 + m, h) + col]; }
        sOut[xr + col] = o;
      }
    }
    workgroupBarrier();
    for (var e = lane; e < DN * CB; e += WG) {
      let i = e / CB;
      let col = col0 + e % CB;
      if (i < p.N && col < p.P) {
        var s = decayFromStart(L - 1u) * S[e];
        for (var m = 0u; m < L; m++) {
          s += decayBetween(L - 1u, m) * sB[bcRow(b, t0 + m, h) + i] * dtc[m] * sX[xRow(b, t0 + m, h) + col];
        }
        S[e] = s;
      }
    }
    workgroupBarrier();
  }
  if ((p.flags & 2u) != 0u) {
    for (var e = lane; e < DN * CB; e += WG) {
      let i = e / CB;
      let col = col0 + e % CB;
      if (i < p.N && col < p.P) { sState[stateBase(b, h) + i * p.P + col] = S[e]; }
    }
  }
}

// ---- recurrent form (decode): token by token, the state updated in place --------------------------

@group(0) @binding(0) var<storage, read> rX: array<f32>;
@group(0) @binding(1) var<storage, read> rB: array<f32>;
@group(0) @binding(2) var<storage, read> rC: array<f32>;
@group(0) @binding(3) var<storage, read> rD: array<f32>;
@group(0) @binding(4) var<storage, read> rPrep: array<f32>;
@group(0) @binding(5) var<storage, read_write> rState: array<f32>;
@group(0) @binding(6) var<storage, read_write> rOut: array<f32>;

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

@compute @workgroup_size(WG)
fn ssd_recurrent(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let col0 = wg.x * CB;
  let h = wg.y;
  let lb = wg.z;
  let b = p.b0 + lb;
  let base = stateBase(b, h);
  for (var e = lane; e < DN * CB; e += WG) {
    let i = e / CB;
    let col = col0 + e % CB;
    var s = 0.0;
    if (i < p.N && col < p.P) { s = rState[base + i * p.P + col]; }
    S[e] = s;
  }
  workgroupBarrier();
  for (var t = 0u; t < p.T; t++) {
    let st = prepStep(lb, t, h);
    let dtp = rPrep[st];
    let decay = exp(rPrep[st + 2u]);
    let xr = xRow(b, t, h);
    let br = bcRow(b, t, h);
    for (var e = lane; e < DN * CB; e += WG) {
      let i = e / CB;
      let col = col0 + e % CB;
      if (i < p.N && col < p.P) { S[e] = decay * S[e] + rB[br + i] * dtp * rX[xr + col]; }
    }
    workgroupBarrier();
    let j = lane % CB;
    var part = 0.0;
    for (var i = lane / CB; i < p.N; i += WG / CB) { part += S[i * CB + j] * rC[br + i]; }
    let o = columnSum(lane, part);
    if (lane < CB && col0 + lane < p.P) { rOut[xr + col0 + lane] = o + rD[h] * rX[xr + col0 + lane]; }
  }
  for (var e = lane; e < DN * CB; e += WG) {
    let i = e / CB;
    let col = col0 + e % CB;
    if (i < p.N && col < p.P) { rState[base + i * p.P + col] = S[e]; }
  }
}

// ---- backward ------------------------------------------------------------------------------------
// P [SB, H, NCB, C, DN, CB]: the decayed states of the current chunk, per workgroup.
// Parts: dB partials [NCB, SB, T, H, N], dC partials (same), dg partials [NCB, SB, T, H],
// then dv [SB, T, H, P].

@group(0) @binding(0) var<storage, read> bX: array<f32>;
@group(0) @binding(1) var<storage, read> bB: array<f32>;
@group(0) @binding(2) var<storage, read> bC: array<f32>;
@group(0) @binding(3) var<storage, read> bDY: array<f32>;
@group(0) @binding(4) var<storage, read> bPrep: array<f32>;
@group(0) @binding(5) var<storage, read> bSaved: array<f32>;
@group(0) @binding(6) var<storage, read_write> bP: array<f32>;
@group(0) @binding(7) var<storage, read_write> bParts: array<f32>;

var<workgroup> red: array<f32, WG>;

fn partsDC() -> u32 {
  return p.NCB * p.SB * p.T * p.H * p.N;
}
fn partsDG() -> u32 {
  return 2u * partsDC();
}
fn partsDV() -> u32 {
  return partsDG() + p.NCB * p.SB * p.T * p.H;
}

// exp(g_t), or zero at a segment start
fn stepDecay(b: u32, t: u32, st: u32) -> f32 {
  if (bSaved[savedReset(b, t)] != 0.0) { return 0.0; }
  return exp(bPrep[st + 2u]);
}

fn workgroupSum(v: f32, lane: u32) -> f32 {
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

@compute @workgroup_size(WG)
fn ssd_backward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let cb = wg.x;
  let col0 = cb * CB;
  let h = wg.y;
  let lb = wg.z;
  let b = p.b0 + lb;
  let pBase = ((lb * p.H + h) * p.NCB + cb) * CHUNK * DN * CB;
  // dS lives in S
  for (var e = lane; e < DN * CB; e += WG) { S[e] = 0.0; }
  for (var nn = 0u; nn < p.NC; nn++) {
    let n = p.NC - 1u - nn;
    let t0 = n * p.C;
    let L = min(p.C, p.T - t0);
    // recompute the decayed states of the chunk; each invocation owns its elements
    storageBarrier();
    for (var e = lane; e < DN * CB; e += WG) {
      let i = e / CB;
      let col = col0 + e % CB;
      if (i < p.N && col < p.P) {
        var s = bSaved[checkpointBase(b, h, n) + i * p.P + col];
        for (var t = 0u; t < L; t++) {
          let st = prepStep(lb, t0 + t, h);
          s *= stepDecay(b, t0 + t, st);
          bP[pBase + t * DN * CB + e] = s;
          s += bB[bcRow(b, t0 + t, h) + i] * bPrep[st] * bX[xRow(b, t0 + t, h) + col];
        }
      } else {
        for (var t = 0u; t < L; t++) { bP[pBase + t * DN * CB + e] = 0.0; }
      }
    }
    storageBarrier();
    for (var tt = 0u; tt < L; tt++) {
      let t = L - 1u - tt;
      let ta = t0 + t;
      let st = prepStep(lb, ta, h);
      let dtp = bPrep[st];
      let br = bcRow(b, ta, h);
      let xr = xRow(b, ta, h);
      let pt = pBase + t * DN * CB;
      for (var e = lane; e < DN * CB; e += WG) {
        let i = e / CB;
        let col = col0 + e % CB;
        if (i < p.N && col < p.P) { S[e] += bC[br + i] * bDY[xr + col]; }
      }
      workgroupBarrier();
      // per column: dv = dS^T B
      var part = 0.0;
      for (var i = lane / CB; i < p.N; i += WG / CB) { part += S[i * CB + lane % CB] * bB[br + i]; }
      let dv = columnSum(lane, part);
      if (lane < CB && col0 + lane < p.P) { bParts[partsDV() + xRow(lb, ta, h) + col0 + lane] = dv; }
      // per row: dB and dC partials over this block's columns; dg summed over the block
      var dg = 0.0;
      if (lane < p.N) {
        let i = lane;
        let bi = bB[br + i];
        var db = 0.0;
        var dc = 0.0;
        for (var j = 0u; j < CB; j++) {
          let col = col0 + j;
          if (col >= p.P) { break; }
          let v = dtp * bX[xr + col];
          let pij = bP[pt + i * CB + j];
          let dS = S[i * CB + j];
          db += dS * v;
          dc += (pij + bi * v) * bDY[xr + col];
          dg += pij * dS;
        }
        let row = (((cb * p.SB + lb) * p.T + ta) * p.H + h) * p.N + i;
        bParts[row] = db;
        bParts[partsDC() + row] = dc;
      }
      let total = workgroupSum(dg, lane);
      if (lane == 0u) { bParts[partsDG() + ((cb * p.SB + lb) * p.T + ta) * p.H + h] = total; }
      let decay = stepDecay(b, ta, st);
      for (var e = lane; e < DN * CB; e += WG) { S[e] *= decay; }
      workgroupBarrier();
    }
  }
}

// ---- backward: reduce the partials ---------------------------------------------------------------

fn flatIndex(wg: vec3u, nwg: vec3u, lane: u32) -> u32 {
  return (wg.y * nwg.x + wg.x) * WG + lane;
}

@group(0) @binding(0) var<storage, read> xParts: array<f32>;
@group(0) @binding(1) var<storage, read> xX: array<f32>;
@group(0) @binding(2) var<storage, read> xDY: array<f32>;
@group(0) @binding(3) var<storage, read> xD: array<f32>;
@group(0) @binding(4) var<storage, read> xPrep: array<f32>;
@group(0) @binding(5) var<storage, read_write> xDX: array<f32>;
@group(0) @binding(6) var<storage, read_write> xDDt: array<f32>;

// the gradient of the log decay of (row, token, head) of the slice, summed over the column blocks
fn dgOf(parts: u32, e: u32) -> f32 {
  var dg = 0.0;
  for (var cb = 0u; cb < p.NCB; cb++) { dg += xParts[parts + cb * p.SB * p.T * p.H + e]; }
  return dg;
}

// one invocation per element of the slice's dx [SB, T, H, P], then of ddt [SB, T, H]
@compute @workgroup_size(WG)
fn ssd_backward_reduce_x(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  var e = flatIndex(wg, nwg, lane);
  let nx = p.SB * p.T * p.H * p.P;
  let nh = p.SB * p.T * p.H;
  let dvAt = 2u * p.NCB * nh * p.N + p.NCB * nh;
  let off = p.b0 * p.T * p.H;
  if (e < nx) {
    let th = e / p.P;
    let h = th % p.H;
    xDX[off * p.P + e] = xPrep[th * 4u] * xParts[dvAt + e] + xD[h] * xDY[off * p.P + e];
    return;
  }
  e -= nx;
  if (e < nh) {
    var xdv = 0.0;
    for (var j = 0u; j < p.P; j++) { xdv += xX[(off + e) * p.P + j] * xParts[dvAt + e * p.P + j]; }
    let st = e * 4u;
    xDDt[off + e] = (xdv + xPrep[st + 3u] * dgOf(2u * p.NCB * nh * p.N, e)) * xPrep[st + 1u];
  }
}

@group(0) @binding(0) var<storage, read> cParts: array<f32>;
@group(0) @binding(1) var<storage, read_write> cDB: array<f32>;
@group(0) @binding(2) var<storage, read_write> cDC: array<f32>;

// one invocation per element of the slice's dB / dC [SB, T, G, N]: the column blocks and the heads
// of the group in a fixed order
@compute @workgroup_size(WG)
fn ssd_backward_reduce_bc(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let e = flatIndex(wg, nwg, lane);
  if (e >= p.SB * p.T * p.G * p.N) { return; }
  let k = e % p.N;
  let row = e / p.N;
  let grp = row % p.G;
  let lt = row / p.G;
  let rep = p.H / p.G;
  let dcAt = p.NCB * p.SB * p.T * p.H * p.N;
  var db = 0.0;
  var dc = 0.0;
  for (var cb = 0u; cb < p.NCB; cb++) {
    for (var r = 0u; r < rep; r++) {
      let at = ((cb * p.SB * p.T + lt) * p.H + grp * rep + r) * p.N + k;
      db += cParts[at];
      dc += cParts[dcAt + at];
    }
  }
  cDB[p.b0 * p.T * p.G * p.N + e] = db;
  cDC[p.b0 * p.T * p.G * p.N + e] = dc;
}

@group(0) @binding(0) var<storage, read> qParts: array<f32>;
@group(0) @binding(1) var<storage, read> qPrep: array<f32>;
@group(0) @binding(2) var<storage, read> qX: array<f32>;
@group(0) @binding(3) var<storage, read> qDY: array<f32>;
@group(0) @binding(4) var<storage, read> qDDt: array<f32>;
@group(0) @binding(5) var<storage, read_write> qDBias: array<f32>;
@group(0) @binding(6) var<storage, read_write> qDALog: array<f32>;
@group(0) @binding(7) var<storage, read_write> qDD: array<f32>;

var<workgroup> red3: array<vec3f, WG>;

// one workgroup per head: sums over the slice's tokens, added to the earlier slices' sums
@compute @workgroup_size(WG)
fn ssd_backward_params(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let h = wg.x;
  let nh = p.SB * p.T * p.H;
  let dgAt = 2u * p.NCB * nh * p.N;
  let off = p.b0 * p.T * p.H;
  var acc = vec3f(0.0);
  for (var lt = lane; lt < p.SB * p.T; lt += WG) {
    let e = lt * p.H + h;
    var dg = 0.0;
    for (var cb = 0u; cb < p.NCB; cb++) { dg += qParts[dgAt + cb * nh + e]; }
    var xdy = 0.0;
    for (var j = 0u; j < p.P; j++) { xdy += qX[(off + e) * p.P + j] * qDY[(off + e) * p.P + j]; }
    acc += vec3f(qDDt[off + e], dg * qPrep[e * 4u + 2u], xdy);
  }
  red3[lane] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lane < s) { red3[lane] += red3[lane + s]; }
    workgroupBarrier();
  }
  if (lane == 0u) {
    var total = red3[0];
    if ((p.flags & 8u) != 0u) { total += vec3f(qDBias[h], qDALog[h], qDD[h]); }
    qDBias[h] = total.x;
    qDALog[h] = total.y;
    qDD[h] = total.z;
  }
}
