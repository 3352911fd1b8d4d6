// Optimizer kernels (src/kernels/optim.ts).
//   adamw / adamw_scaled: torch.optim.AdamW, element-wise, in torch's operation order
//     (_single_tensor_adam with decoupled weight decay; scalars precomputed in f64 on the CPU
//     and rounded to f32, as torch does with Python floats):
//       p = p * (1 - lr*wd)
//       m = lerp(m, g, 1 - beta1)                  (torch's two-branch lerp formula)
//       v = v * beta2 + (1 - beta2) * g * g
//       denom = sqrt(v) / sqrt(1 - beta2^t) + eps
//       p = p + (-lr / (1 - beta1^t)) * (m / denom)
//     adamw_scaled first multiplies g by scale[0] (the gradient-clipping factor).
//   grad_norm_squared_partial / _sum: deterministic two-level sum of squares over several tensors.
//   clip_scale: torch.nn.utils.clip_grad_norm_'s factor min(1, max_norm / (sqrt(sum_sq) + 1e-6)).

struct AdamParams {
  n: u32,
  lerpHigh: u32, // 1 when the lerp weight is >= 0.5 (torch switches formula there)
  decay: f32,    // 1 - lr * weight_decay
  w1: f32,       // lerp weight 1 - beta1
  beta2: f32,
  c2: f32,       // 1 - beta2
  stepSize: f32, // lr / (1 - beta1^t)
  bc2sqrt: f32,  // sqrt(1 - beta2^t)
  eps: f32,
}

struct ReduceParams {
  n: u32,     // elements of x (partial) / partials (final)
  base: u32,  // first partial slot of this tensor
  groups: u32, // workgroups of this tensor
  maxNorm: f32,
}

@group(0) @binding(0) var<storage, read_write> P: array<f32>;
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read_write> M: array<f32>;
@group(0) @binding(3) var<storage, read_write> Vv: array<f32>;
@group(1) @binding(0) var<uniform> ap: AdamParams;
@group(0) @binding(4) var<storage, read> S: array<f32>;

fn update(i: u32, g: f32, a: AdamParams) {
  let p = P[i] * a.decay;
  var m = M[i];
  if (a.lerpHigh == 0u) {
    m = m + a.w1 * (g - m);
  } else {
    m = g - (g - m) * (1.0 - a.w1);
  }
  let v = Vv[i] * a.beta2 + a.c2 * g * g;
  let denom = sqrt(v) / a.bc2sqrt + a.eps;
  P[i] = p + (-a.stepSize) * (m / denom);
  M[i] = m;
  Vv[i] = v;
}

@compute @workgroup_size(256)
fn adamw(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
         @builtin(local_invocation_index) lid: u32) {
  let i = (wg.y * nwg.x + wg.x) * 256u + lid;
  if (i >= ap.n) { return; }
  update(i, G[i], ap);
}

@compute @workgroup_size(256)
fn adamw_scaled(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                @builtin(local_invocation_index) lid: u32) {
  let i = (wg.y * nwg.x + wg.x) * 256u + lid;
  if (i >= ap.n) { return; }
  update(i, G[i] * S[0], ap);
}

// ---- sum of squares ------------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(1) @binding(0) var<uniform> rp: ReduceParams;
@group(0) @binding(0) var<storage, read> partialsIn: array<f32>;
@group(0) @binding(1) var<storage, read_write> result: array<f32>;

var<workgroup> red: array<f32, 256>;

fn reduceTree(lid: u32) {
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { red[lid] += red[lid + stride]; }
    workgroupBarrier();
  }
}

// Workgroup w of `groups` sums x[i]^2 for i = w*256 + lid + k*groups*256 (fixed by n alone).
@compute @workgroup_size(256)
fn grad_norm_squared_partial(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = wg.x * 256u + lid; i < rp.n; i += rp.groups * 256u) {
    let x = X[i];
    s += x * x;
  }
  red[lid] = s;
  reduceTree(lid);
  if (lid == 0u) { partials[rp.base + wg.x] = red[0]; }
}

@compute @workgroup_size(256)
fn grad_norm_squared_sum(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < rp.n; i += 256u) { s += partialsIn[i]; }
  red[lid] = s;
  reduceTree(lid);
  if (lid == 0u) { result[0] = red[0]; }
}

// clip_scale binds (sumSq, out)
@compute @workgroup_size(1)
fn clip_scale() {
  let c = rp.maxNorm / (sqrt(partialsIn[0]) + 1e-6);
  result[0] = select(c, 1.0, c > 1.0); // NaN stays NaN, as torch.clamp
}
