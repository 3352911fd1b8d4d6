// Rotary position embedding, HF's rotate_half convention (not interleaved): in each head, dims
// (i, i + half) for i < half = rotaryDim / 2 rotate by angle = f32(position) * invFreq[i]; dims
// >= rotaryDim pass through (partial rotary). With c = scaling * cos, s = sign * scaling * sin:
//   y[i] = x[i] * c - x[i + half] * s,   y[i + half] = x[i + half] * c + x[i] * s
// The forward has sign 1; the backward (dx = R^T dy) sign -1, the transpose.
//
// cos/sin: HF evaluates cos/sin of the f32 angle with the accurate CUDA/CPU functions. GPU
// built-ins are only specified to 2^-11 absolute error inside [-pi, pi] and are worse outside it,
// and angles reach ~1e5 rad at long positions, so the angle is reduced here by k * pi/2 with
// pi/2 split into 7-bit pieces (each product k * piece is exact for |k| < 2^17, i.e. angles up to
// ~2e5 rad; no reliance on fma) and evaluated with Cephes' single-precision minimax polynomials:
// about 2^-23 absolute error over that range, the same on every GPU.
//
// With a bias (the q/k projection's, fused into this pass): x + bias[head * Dh + d] is rotated,
// out of place only; the backward is unchanged (the bias gradient is the rotated-back gradient).
//
// Sectioned positions (SECTIONS; Qwen2-VL's M-RoPE and its vision tower's 2-D rope): positions
// are [C, T], and pair j takes its angle from component (j >= s1) + (j >= s2), so the text model's
// mrope_section [16, 24, 24] rotates pairs 0..15 by the temporal, 16..39 by the height and 40..63 by
// the width position, the vision tower's [Dh/4, Dh/4] pairs by (row, column).
//
// One invocation per (token, head, j): j < half rotates a pair; half <= j < P copies one
// pass-through element (out-of-place only). Element count folded into x/y by Gpu.grid(). In-place
// forms have their own entry points (one read_write binding).

// variant: SECTIONS

const WG = 256u;

struct Params {
  n: u32,        // T * H * P
  H: u32, Dh: u32,
  half: u32,     // rotaryDim / 2
  P: u32,        // invocations per head
  scaling: f32,  // attention scaling applied to cos and sin
  T: u32,        // tokens (the stride between position components)
  s1: u32, s2: u32, // first pairs of the second and third position components (SECTIONS)
}

// The position rotating pair j of token t.
fn positionIndex(t: u32, j: u32) -> u32 {
  if (!SECTIONS) { return t; }
  return (u32(j >= p.s1) + u32(j >= p.s2)) * p.T + t;
}

fn element(wg: vec3u, nwg: vec3u, lane: u32) -> u32 {
  return (wg.y * nwg.x + wg.x) * WG + lane;
}

// (cos a, sin a)
fn sincos(a: f32) -> vec2f {
  let kf = round(a * 0.6366197723675814);
  var r = a - kf * 0x1.90p0f;
  r = r - kf * 0x1.0cp-7f;
  r = r - kf * 0x1.ecp-14f;
  r = r - kf * 0x1.50p-22f;
  r = r - kf * 0x1.10p-30f;
  r = r - kf * 0x1.68p-39f;
  let z = r * r;
  let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
  let c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
  let q = i32(kf) & 3;
  if (q == 0) { return vec2f(c, s); }
  if (q == 1) { return vec2f(-s, c); }
  if (q == 2) { return vec2f(-c, -s); }
  return vec2f(s, -c);
}

fn rotatePair(x1: f32, x2: f32, position: i32, invFreq: f32, scaling: f32, sign: f32) -> vec2f {
  let cs = sincos(f32(position) * invFreq) * scaling;
  let sn = sign * cs.y;
  return vec2f(x1 * cs.x - x2 * sn, x2 * cs.x + x1 * sn);
}

// ---- out of place ------------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> POS: array<i32>;
@group(0) @binding(2) var<storage, read> INV: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn rope_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  rotate(element(wg, nwg, lane), 1.0);
}

@compute @workgroup_size(WG)
fn rope_backward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  rotate(element(wg, nwg, lane), -1.0);
}

fn rotate(i: u32, sign: f32) {
  if (i >= p.n) { return; }
  let th = i / p.P; // token * H + head
  let j = i - th * p.P;
  let i1 = th * p.Dh + j;
  if (j >= p.half) {
    Y[i1 + p.half] = X[i1 + p.half]; // pass-through dim j + half (>= rotaryDim)
    return;
  }
  let i2 = i1 + p.half;
  let y = rotatePair(X[i1], X[i2], POS[positionIndex(th / p.H, j)], INV[j], p.scaling, sign);
  Y[i1] = y.x;
  Y[i2] = y.y;
}

// ---- out of place with the projection's bias ---------------------------------------------------

@group(0) @binding(0) var<storage, read> bX: array<f32>;
@group(0) @binding(1) var<storage, read> bPOS: array<i32>;
@group(0) @binding(2) var<storage, read> bINV: array<f32>;
@group(0) @binding(3) var<storage, read> bBIAS: array<f32>;
@group(0) @binding(4) var<storage, read_write> bY: array<f32>;

@compute @workgroup_size(WG)
fn rope_forward_bias(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= p.n) { return; }
  let th = i / p.P; // token * H + head
  let j = i - th * p.P;
  let i1 = th * p.Dh + j;
  let b1 = (th % p.H) * p.Dh + j;
  if (j >= p.half) {
    bY[i1 + p.half] = bX[i1 + p.half] + bBIAS[b1 + p.half];
    return;
  }
  let i2 = i1 + p.half;
  let y = rotatePair(bX[i1] + bBIAS[b1], bX[i2] + bBIAS[b1 + p.half], bPOS[positionIndex(th / p.H, j)], bINV[j], p.scaling, 1.0);
  bY[i1] = y.x;
  bY[i2] = y.y;
}

// ---- in place ----------------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read_write> XY: array<f32>;
@group(0) @binding(1) var<storage, read> iPOS: array<i32>;
@group(0) @binding(2) var<storage, read> iINV: array<f32>;

@compute @workgroup_size(WG)
fn rope_forward_in_place(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  rotateInPlace(element(wg, nwg, lane), 1.0);
}

@compute @workgroup_size(WG)
fn rope_backward_in_place(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  rotateInPlace(element(wg, nwg, lane), -1.0);
}

fn rotateInPlace(i: u32, sign: f32) {
  if (i >= p.n) { return; }
  let th = i / p.P; // P = half: no pass-through invocations
  let j = i - th * p.P;
  let i1 = th * p.Dh + j;
  let i2 = i1 + p.half;
  let y = rotatePair(XY[i1], XY[i2], iPOS[positionIndex(th / p.H, j)], iINV[j], p.scaling, sign);
  XY[i1] = y.x;
  XY[i2] = y.y;
}
