// Causal depthwise conv1d + SiLU over time (Gated DeltaNet's and Mamba-2's short convolution; without
// the SiLU, LFM2's), f32:
//   y[b, t, c] = silu(a) (or a),  a = sum_k w[c, k] * xs[b, t + k, c] (+ bias[c]),  xs = concat(left, x) along time,
// left = the K - 1 inputs before x (the conv state [B, K - 1, C]) or zeros. x, y [B, T, C], w [C, K].
// The state update keeps the last K - 1 inputs of xs. Packed sequences (segments [B, T]): an input
// of another segment counts as zero (the left context belongs to the row's first segment).
// Backward (training: zero left context):
//   da = dy * silu'(a);  dx[t] = sum_k w[c, k] da[t + K - 1 - k];  dw[c, k] = sum_{b,t} da[t] xs[t + k];
//   dbias[c] = sum_{b,t} da[t]
// Elementwise entry points are 1-D over elements, folded into x/y by Gpu.grid().
// Entry points alias binding numbers; each uses one consistent set.

// SILU: whether the output is silu(a) (Gated DeltaNet) or a itself (LFM2's short convolution)
// variant: SILU

const WG = 256u;

struct Params {
  B: u32, T: u32, C: u32, K: u32,
  // conv1d_forward: 1 when the left context comes from the state binding
  hasState: u32,
  // 1 when the segments binding holds segment ids
  hasSegments: u32,
  // 1 when the bias binding holds a bias (Mamba-2's conv1d.bias)
  hasBias: u32,
}

@group(1) @binding(0) var<uniform> p: Params;

fn element(wg: vec3u, nwg: vec3u, lane: u32) -> u32 {
  return (wg.y * nwg.x + wg.x) * WG + lane;
}

fn sigmoid(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(-x));
}

// segment ids [B, T], binding 0 of every entry point that reads them (unread without segments)
@group(0) @binding(0) var<storage, read> segIds: array<i32>;

// whether output t of row b reads xs[b, s] (s in [0, K - 1 + T)): same segment, or no segments
fn visible(b: u32, t: u32, s: u32) -> bool {
  if (p.hasSegments == 0u) { return true; }
  let src = max(s + 1u, p.K) - p.K;
  return segIds[b * p.T + src] == segIds[b * p.T + t];
}

// ---- forward -----------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> fX: array<f32>;
@group(0) @binding(2) var<storage, read> fW: array<f32>;
@group(0) @binding(3) var<storage, read> fState: array<f32>;
@group(0) @binding(4) var<storage, read_write> fY: array<f32>;
@group(0) @binding(5) var<storage, read> fBias: array<f32>;

// xs[b, s, c] for s in [0, K - 1 + T)
fn forwardInput(b: u32, s: u32, c: u32) -> f32 {
  if (s + 1u >= p.K) { return fX[(b * p.T + s + 1u - p.K) * p.C + c]; }
  if (p.hasState != 0u) { return fState[(b * (p.K - 1u) + s) * p.C + c]; }
  return 0.0;
}

@compute @workgroup_size(WG)
fn conv1d_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let e = element(wg, nwg, lane);
  if (e >= p.B * p.T * p.C) { return; }
  let c = e % p.C;
  let bt = e / p.C;
  let t = bt % p.T;
  let b = bt / p.T;
  var a = 0.0;
  if (p.hasBias != 0u) { a = fBias[c]; }
  for (var k = 0u; k < p.K; k++) {
    if (visible(b, t, t + k)) { a += fW[c * p.K + k] * forwardInput(b, t + k, c); }
  }
  if (SILU) { fY[e] = a * sigmoid(a); } else { fY[e] = a; }
}

// ---- state update: state <- the last K - 1 entries of concat(state, x), one invocation per (b, c)
// Ascending k reads state entries at T + k > k only, so the update can be in place.

@group(0) @binding(0) var<storage, read> uX: array<f32>;
@group(0) @binding(1) var<storage, read_write> uState: array<f32>;

@compute @workgroup_size(WG)
fn conv1d_state_update(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let e = element(wg, nwg, lane);
  if (e >= p.B * p.C) { return; }
  let c = e % p.C;
  let b = e / p.C;
  let keep = p.K - 1u;
  for (var k = 0u; k < keep; k++) {
    let s = p.T + k;
    var v: f32;
    if (s >= keep) { v = uX[(b * p.T + s - keep) * p.C + c]; } else { v = uState[(b * keep + s) * p.C + c]; }
    uState[(b * keep + k) * p.C + c] = v;
  }
}

// ---- backward ----------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> aDY: array<f32>;
@group(0) @binding(2) var<storage, read> aX: array<f32>;
@group(0) @binding(3) var<storage, read> aW: array<f32>;
@group(0) @binding(4) var<storage, read_write> aDA: array<f32>;
@group(0) @binding(5) var<storage, read> aBias: array<f32>;

// xs with a zero left context
fn trainInput(b: u32, s: u32, c: u32) -> f32 {
  if (s + 1u >= p.K) { return aX[(b * p.T + s + 1u - p.K) * p.C + c]; }
  return 0.0;
}

// da = dy * silu'(a), the pre-activation recomputed (da = dy without the SiLU)
@compute @workgroup_size(WG)
fn conv1d_backward_preact(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let e = element(wg, nwg, lane);
  if (e >= p.B * p.T * p.C) { return; }
  let c = e % p.C;
  let bt = e / p.C;
  let t = bt % p.T;
  let b = bt / p.T;
  var a = 0.0;
  if (p.hasBias != 0u) { a = aBias[c]; }
  for (var k = 0u; k < p.K; k++) {
    if (visible(b, t, t + k)) { a += aW[c * p.K + k] * trainInput(b, t + k, c); }
  }
  if (!SILU) { aDA[e] = aDY[e]; return; }
  let s = sigmoid(a);
  aDA[e] = aDY[e] * s * (1.0 + a * (1.0 - s));
}

@group(0) @binding(1) var<storage, read> iDA: array<f32>;
@group(0) @binding(2) var<storage, read> iW: array<f32>;
@group(0) @binding(3) var<storage, read_write> iDX: array<f32>;

// dx[t] = sum_k w[c, k] da[t + K - 1 - k] over the outputs that read x[t]
@compute @workgroup_size(WG)
fn conv1d_backward_input(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let e = element(wg, nwg, lane);
  if (e >= p.B * p.T * p.C) { return; }
  let c = e % p.C;
  let bt = e / p.C;
  let t = bt % p.T;
  let b = bt / p.T;
  var acc = 0.0;
  for (var k = 0u; k < p.K; k++) {
    let out = t + p.K - 1u - k;
    if (out < p.T && visible(b, out, t + p.K - 1u)) { acc += iW[c * p.K + k] * iDA[(b * p.T + out) * p.C + c]; }
  }
  iDX[e] = acc;
}

@group(0) @binding(1) var<storage, read> wDA: array<f32>;
@group(0) @binding(2) var<storage, read> wX: array<f32>;
@group(0) @binding(3) var<storage, read_write> wDW: array<f32>;

// dw[c, k] = sum over (b, t) in order of da[b, t, c] * xs[b, t + k, c]: one invocation per (c, k)
@compute @workgroup_size(WG)
fn conv1d_backward_weight(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let e = element(wg, nwg, lane);
  if (e >= p.C * p.K) { return; }
  let c = e / p.K;
  let k = e % p.K;
  var acc = 0.0;
  for (var b = 0u; b < p.B; b++) {
    for (var t = 0u; t < p.T; t++) {
      let s = t + k;
      if (s + 1u >= p.K && visible(b, t, s)) { acc += wDA[(b * p.T + t) * p.C + c] * wX[(b * p.T + s + 1u - p.K) * p.C + c]; }
    }
  }
  wDW[e] = acc;
}

@group(0) @binding(0) var<storage, read> dbDA: array<f32>;
@group(0) @binding(1) var<storage, read_write> dbDBias: array<f32>;

// dbias[c] = sum over (b, t) in order of da[b, t, c]: one invocation per channel
@compute @workgroup_size(WG)
fn conv1d_backward_bias(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let c = element(wg, nwg, lane);
  if (c >= p.C) { return; }
  var acc = 0.0;
  for (var bt = 0u; bt < p.B * p.T; bt++) { acc += dbDA[bt * p.C + c]; }
  dbDBias[c] = acc;
}
