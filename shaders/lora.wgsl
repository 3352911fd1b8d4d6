// LoRA / DoRA helper kernels, forward and backward (src/kernels/lora.ts). The products themselves
// go through matmul.wgsl; these are the parts gemm cannot express:
//   lora_forward_bias        y[t, n] = bias[n]
//   lora_weight_norm         out[n0 + n] = ||W[n, :] + s (B A)[n0 + n, :]|| (or its inverse), BA
//                            never stored
//   lora_dropout             out[t, k] (=|+=) in[t, k] keep(t, k) / (1 - p) (inverted dropout)
//   dora_forward             y[t, n] = g[n] (base[t, n] + s (xa Bᵀ)[t, n]) + bias[n]   (flag 0)
//                            y[t, n] += bias[n] + (g[n] - 1) base[t, n] + g[n] s (xa Bᵀ)[t, n]
//                            (flag 1: dropout)
//   dora_backward_scale      out[t, n] = dy[t, n] * (mag[n] * normInv[n] - sub)  (DoRA's g = m / ||V||)
//   dora_backward_magnitude  dm[n] (=|+=) normInv[n] Σ_t dy[t, n] (base[t, n] + s (xa Bᵀ)[t, n])
// The weight norm's W holds f32 (read as u32 bits), or with W_F16 f16 pairs packed in u32 words
// (src/kernels/f16.ts), math in f32; the other entry points are f32 only.
// variant: W_F16

// ---- elementwise --------------------------------------------------------------------------------

struct EwParams { T: u32, N: u32, sub: f32, _pad: u32 }

@group(0) @binding(0) var<storage, read> fb_bias: array<f32>;
@group(0) @binding(1) var<storage, read_write> fb_y: array<f32>;
@group(1) @binding(0) var<uniform> ew: EwParams;

// 1-D index over T*N folded into a 2-D grid (see Gpu.grid)
fn flat(wg: vec3u, nwg: vec3u, lid: vec3u) -> u32 {
  return (wg.y * nwg.x + wg.x) * 256u + lid.x;
}

@compute @workgroup_size(256)
fn lora_forward_bias(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wg, nwg, lid);
  if (i >= ew.T * ew.N) { return; }
  fb_y[i] = fb_bias[i % ew.N];
}

@group(0) @binding(0) var<storage, read> cs_dy: array<f32>;
@group(0) @binding(1) var<storage, read> cs_mag: array<f32>;
@group(0) @binding(2) var<storage, read> cs_ninv: array<f32>;
@group(0) @binding(3) var<storage, read_write> cs_out: array<f32>;

@compute @workgroup_size(256)
fn dora_backward_scale(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wg, nwg, lid);
  if (i >= ew.T * ew.N) { return; }
  let n = i % ew.N;
  cs_out[i] = cs_dy[i] * (cs_mag[n] * cs_ninv[n] - ew.sub);
}

// ---- row norm of W + s B A ----------------------------------------------------------------------

struct NormParams { rows: u32, K: u32, r: u32, n0: u32, s: f32, inverse: u32 }

@group(0) @binding(0) var<storage, read> rn_w: array<u32>;        // [rows, K], one weight part
@group(0) @binding(1) var<storage, read> rn_a: array<f32>;        // A [r, K]
@group(0) @binding(2) var<storage, read> rn_b: array<f32>;        // B [N, r]
@group(0) @binding(3) var<storage, read_write> rn_out: array<f32>; // [N]
@group(1) @binding(0) var<uniform> rn: NormParams;

fn w_at(i: u32) -> f32 {
  if (W_F16) { return unpack2x16float(rn_w[i >> 1u])[i & 1u]; }
  return bitcast<f32>(rn_w[i]);
}

var<workgroup> red256: array<f32, 256>;

// One workgroup per row; threads stride over K, each element of W + s·BA is formed on the fly
// (r fused multiply-adds reading a column of A, coalesced across threads).
@compute @workgroup_size(256)
fn lora_weight_norm(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.y * nwg.x + wg.x; // uniform across the workgroup
  if (row >= rn.rows) { return; }
  let n = rn.n0 + row;
  var acc = 0.0;
  for (var k = lid.x; k < rn.K; k += 256u) {
    var d = 0.0;
    for (var j = 0u; j < rn.r; j++) {
      d = fma(rn_b[n * rn.r + j], rn_a[j * rn.K + k], d);
    }
    let v = w_at(row * rn.K + k) + rn.s * d;
    acc = fma(v, v, acc);
  }
  red256[lid.x] = acc;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride >>= 1u) {
    if (lid.x < stride) { red256[lid.x] += red256[lid.x + stride]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    let norm = sqrt(red256[0]);
    rn_out[n] = select(norm, 1.0 / norm, rn.inverse != 0u);
  }
}

// ---- DoRA forward epilogue and magnitude gradient (16 x 16 tiles, xa·Bᵀ over r in steps of 16) --

struct DoraParams { T: u32, N: u32, r: u32, s: f32, flag: u32, hasBias: u32 }

var<workgroup> xs: array<f32, 256>; // [16 t][16 j]
var<workgroup> bs: array<f32, 256>; // [16 n][16 j]

@group(0) @binding(0) var<storage, read> df_base: array<f32>;  // [T, N]
@group(0) @binding(1) var<storage, read> df_xa: array<f32>;    // [T, r]
@group(0) @binding(2) var<storage, read> df_b: array<f32>;     // [N, r]
@group(0) @binding(3) var<storage, read> df_mag: array<f32>;   // [N]
@group(0) @binding(4) var<storage, read> df_ninv: array<f32>;  // [N]
@group(0) @binding(5) var<storage, read> df_bias: array<f32>;  // [N] (any buffer when !hasBias)
@group(0) @binding(6) var<storage, read_write> df_y: array<f32>; // [T, N]
@group(1) @binding(0) var<uniform> dora: DoraParams;

// Σ_jj xs[t][jj] bs[n][jj] for this thread's (t, n) within the staged 16-wide slice of r
fn tileDot(lid: vec3u) -> f32 {
  var acc = 0.0;
  for (var jj = 0u; jj < 16u; jj++) {
    acc = fma(xs[lid.y * 16u + jj], bs[lid.x * 16u + jj], acc);
  }
  return acc;
}

@compute @workgroup_size(16, 16)
fn dora_forward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t0 = wg.y * 16u;
  let n0 = wg.x * 16u;
  var lora = 0.0;
  for (var j0 = 0u; j0 < dora.r; j0 += 16u) {
    let j = j0 + lid.x;
    let tl = t0 + lid.y;
    let nl = n0 + lid.y;
    var xv = 0.0;
    var bv = 0.0;
    if (tl < dora.T && j < dora.r) { xv = df_xa[tl * dora.r + j]; }
    if (nl < dora.N && j < dora.r) { bv = df_b[nl * dora.r + j]; }
    xs[lid.y * 16u + lid.x] = xv;
    bs[lid.y * 16u + lid.x] = bv;
    workgroupBarrier();
    lora += tileDot(lid);
    workgroupBarrier();
  }
  let t = t0 + lid.y;
  let n = n0 + lid.x;
  if (t >= dora.T || n >= dora.N) { return; }
  let idx = t * dora.N + n;
  let g = df_mag[n] * df_ninv[n];
  var bias = 0.0;
  if (dora.hasBias != 0u) { bias = df_bias[n]; }
  let base = df_base[idx];
  if (dora.flag != 0u) {
    df_y[idx] = df_y[idx] + bias + (g - 1.0) * base + g * dora.s * lora;
  } else {
    df_y[idx] = g * (base + dora.s * lora) + bias;
  }
}

@group(0) @binding(0) var<storage, read> dm_dy: array<f32>;    // [T, N]
@group(0) @binding(1) var<storage, read> dm_base: array<f32>;  // [T, N]
@group(0) @binding(2) var<storage, read> dm_xa: array<f32>;    // [T, r]
@group(0) @binding(3) var<storage, read> dm_b: array<f32>;     // [N, r]
@group(0) @binding(4) var<storage, read> dm_ninv: array<f32>;  // [N]
@group(0) @binding(5) var<storage, read_write> dm_out: array<f32>; // [N]

var<workgroup> red16: array<f32, 256>; // [16 t][16 n]

// One workgroup per 16 output columns, walking all of T in 16-row tiles; flag = accumulate.
@compute @workgroup_size(16, 16)
fn dora_backward_magnitude(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let n0 = wg.x * 16u;
  let n = n0 + lid.x;
  var sum = 0.0;
  for (var t0 = 0u; t0 < dora.T; t0 += 16u) {
    var lora = 0.0;
    for (var j0 = 0u; j0 < dora.r; j0 += 16u) {
      let j = j0 + lid.x;
      let tl = t0 + lid.y;
      let nl = n0 + lid.y;
      var xv = 0.0;
      var bv = 0.0;
      if (tl < dora.T && j < dora.r) { xv = dm_xa[tl * dora.r + j]; }
      if (nl < dora.N && j < dora.r) { bv = dm_b[nl * dora.r + j]; }
      xs[lid.y * 16u + lid.x] = xv;
      bs[lid.y * 16u + lid.x] = bv;
      workgroupBarrier();
      lora += tileDot(lid);
      workgroupBarrier();
    }
    let t = t0 + lid.y;
    if (t < dora.T && n < dora.N) {
      let idx = t * dora.N + n;
      sum = fma(dm_dy[idx], dm_base[idx] + dora.s * lora, sum);
    }
  }
  red16[lid.y * 16u + lid.x] = sum;
  workgroupBarrier();
  for (var stride = 8u; stride > 0u; stride >>= 1u) {
    if (lid.y < stride) { red16[lid.y * 16u + lid.x] += red16[(lid.y + stride) * 16u + lid.x]; }
    workgroupBarrier();
  }
  if (lid.y == 0u && n < dora.N) {
    let v = red16[lid.x] * dm_ninv[n];
    if (dora.flag != 0u) { dm_out[n] = dm_out[n] + v; } else { dm_out[n] = v; }
  }
}

// ---- lora_dropout: a mask that is a pure function of a counter -----------------------------------
// keep(t, k) = pcg4d(key0, key1, t, k).x >= threshold (threshold = p·2³²), with (key0, key1) the
// host's hash of (seed, step, micro-batch, site) (lora.ts dropoutKey). Nothing is stored: the
// backward regenerates the forward's mask from the same key. pcg4d: Jarzynski & Olano, "Hash
// Functions for GPU Rendering", JCGT 9(3), 2020. u32 arithmetic wraps.

struct DropParams { count: u32, K: u32, key0: u32, key1: u32, threshold: u32, accumulate: u32, scale: f32, _pad: u32 }

@group(0) @binding(0) var<storage, read> dr_in: array<f32>;        // [T, K]
@group(0) @binding(1) var<storage, read_write> dr_out: array<f32>; // [T, K]
@group(1) @binding(0) var<uniform> dr: DropParams;

fn pcg4d(seed: vec4u) -> vec4u {
  var v = seed * 1664525u + 1013904223u;
  v.x += v.y * v.w; v.y += v.z * v.x; v.z += v.x * v.y; v.w += v.y * v.z;
  v ^= v >> vec4u(16u);
  v.x += v.y * v.w; v.y += v.z * v.x; v.z += v.x * v.y; v.w += v.y * v.z;
  return v;
}

@compute @workgroup_size(256)
fn lora_dropout(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = flat(wg, nwg, lid);
  if (i >= dr.count) { return; }
  let kept = pcg4d(vec4u(dr.key0, dr.key1, i / dr.K, i % dr.K)).x >= dr.threshold;
  let v = select(0.0, dr_in[i] * dr.scale, kept);
  if (dr.accumulate != 0u) { dr_out[i] = dr_out[i] + v; } else { dr_out[i] = v; }
}
