// f16 tensors written from f32 values without shader-f16: halves are read and written as u32 pairs
// through unpack2x16float / pack2x16float (core WGSL). Dispatches are 1-D over pairs, folded into
// x/y by Gpu.grid(): pair = (y * nx + x) * WG + lane.
// add_to_f16 updates f16 weights; absmax_partial + to_f16_scaled make the f16 operands of the f16
// tier's products from f32 activations and gradients, scaled by a power of two so that the largest
// lands just below 2^15: small gradients stay out of f16's subnormals, large values below 65504.

const WG = 256u;

struct Params {
  // f16 values in the tensor (the last pair's upper half is padding when odd)
  n: u32,
}

@group(0) @binding(0) var<storage, read_write> w: array<u32>;
@group(0) @binding(1) var<storage, read> delta: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

// w[i] = f16(f32(w[i]) + delta[i])
@compute @workgroup_size(WG)
fn add_to_f16(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let pair = (wg.y * nwg.x + wg.x) * WG + lane;
  let i = 2u * pair;
  if (i >= p.n) {
    return;
  }
  let old = unpack2x16float(w[pair]);
  var hi = old.y;
  if (i + 1u < p.n) {
    hi = old.y + delta[i + 1u];
  }
  w[pair] = pack2x16float(vec2f(old.x + delta[i], hi));
}

// ---- f32 -> f16, scaled by a power of two ------------------------------------------------------

struct ScaleParams {
  // elements of x
  n: u32,
  // workgroups of absmax_partial (at most WG): partial maxima in stats[0 .. groups)
  groups: u32,
}

// stats[DESCALE]: the inverse of the scale to_f16_scaled applied (a GEMM folds it back)
const DESCALE = 256u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> xh: array<u32>;
@group(1) @binding(0) var<uniform> q: ScaleParams;

var<workgroup> red: array<f32, WG>;

fn workgroup_max(lane: u32, v: f32) -> f32 {
  red[lane] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lane < s) { red[lane] = max(red[lane], red[lane + s]); }
    workgroupBarrier();
  }
  return red[0];
}

// stats[wg] = max |x| over the elements wg·WG + lane + k·groups·WG
@compute @workgroup_size(WG)
fn absmax_partial(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lane: u32) {
  var m = 0.0;
  for (var i = wg.x * WG + lane; i < q.n; i += q.groups * WG) {
    m = max(m, abs(x[i]));
  }
  let r = workgroup_max(lane, m);
  if (lane == 0u) { stats[wg.x] = r; }
}

// xh = f16(x · 2^e) with e such that max |x| · 2^e < 2^15; stats[DESCALE] = 2^-e
@compute @workgroup_size(WG)
fn to_f16_scaled(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  var m = 0.0;
  if (lane < q.groups) { m = stats[lane]; }
  let amax = workgroup_max(lane, m);
  var e = 0;
  // all zeros, or inf / NaN (which pass through unscaled)
  if (amax > 0.0 && amax <= 3.0e38) { e = clamp(15 - frexp(amax).exp, -110, 110); }
  let pair = (wg.y * nwg.x + wg.x) * WG + lane;
  if (pair == 0u) { stats[DESCALE] = ldexp(1.0, -e); }
  let i = 2u * pair;
  if (i >= q.n) {
    return;
  }
  var hi = 0.0;
  if (i + 1u < q.n) { hi = x[i + 1u]; }
  xh[pair] = pack2x16float(vec2f(x[i], hi) * ldexp(1.0, e));
}
