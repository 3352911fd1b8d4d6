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
//   adamw_segments: the same update over every tensor of an arena at once (see "arena" below).
//   grad_norm_squared_partial / _sum: deterministic two-level sum of squares over several tensors;
//     grad_norm_squared_segments: the first level over an arena's tensors.
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

// The flat index of an invocation of a 256-wide workgroup, the grid folded over x/y (Gpu.grid()).
fn element(wg: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wg.y * nwg.x + wg.x) * 256u + lid;
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
  let i = element(wg, nwg, lid);
  if (i >= ap.n) { return; }
  update(i, G[i], ap);
}

@compute @workgroup_size(256)
fn adamw_scaled(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                @builtin(local_invocation_index) lid: u32) {
  let i = element(wg, nwg, lid);
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

// ---- arena: many tensors in one buffer --------------------------------------------------------------
// A segment table lists them: vec4u(first, end, group, 0) per tensor, elements [first, end) of the
// buffer, sorted by first. The padding between segments is never read nor written.
//   adamw_segments: update above for each element of a segment, with its group's decay and step size.
//   grad_norm_squared_segments: workgroup w of `groups` sums x[i]^2 over the segments' elements with
//     i = w*256 + lid + k*groups*256 (fixed by the layout alone), then _sum adds the partials.

struct SegmentAdamParams {
  n: u32,        // elements spanned: the last segment's end
  segments: u32,
  lerpHigh: u32,
  pad0: u32,
  w1: f32,
  beta2: f32,
  c2: f32,
  bc2sqrt: f32,
  eps: f32,
  pad1: f32,
  pad2: f32,
  pad3: f32,
  groups: array<vec4f, 4>, // group k's (decay, stepSize): groups[k / 2].xy for even k, .zw for odd
}

@group(0) @binding(5) var<storage, read> Segs: array<vec4u>;
@group(1) @binding(0) var<uniform> sp: SegmentAdamParams;

// The segment holding element i if any: the last one starting at or before it.
fn segmentOf(i: u32) -> vec4u {
  var lo = 0u;
  var hi = sp.segments;
  while (hi - lo > 1u) {
    let mid = (lo + hi) / 2u;
    if (Segs[mid].x <= i) { lo = mid; } else { hi = mid; }
  }
  return Segs[lo];
}

@compute @workgroup_size(256)
fn adamw_segments(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                  @builtin(local_invocation_index) lid: u32) {
  let i = element(wg, nwg, lid);
  if (i >= sp.n) { return; }
  let seg = segmentOf(i);
  if (i < seg.x || i >= seg.y) { return; }
  let pair = sp.groups[seg.z / 2u];
  let odd = (seg.z & 1u) == 1u;
  let a = AdamParams(sp.n, sp.lerpHigh, select(pair.x, pair.z, odd), sp.w1, sp.beta2, sp.c2,
                     select(pair.y, pair.w, odd), sp.bc2sqrt, sp.eps);
  update(i, G[i] * S[0], a);
}

struct SegmentReduceParams {
  segments: u32,
  base: u32,   // first partial slot of this arena
  groups: u32, // workgroups
  pad: u32,
}

@group(0) @binding(2) var<storage, read> NormSegs: array<vec4u>;
@group(1) @binding(0) var<uniform> srp: SegmentReduceParams;

@compute @workgroup_size(256)
fn grad_norm_squared_segments(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let stride = srp.groups * 256u;
  let own = wg.x * 256u + lid;
  var s = 0.0;
  for (var k = 0u; k < srp.segments; k++) {
    let seg = NormSegs[k];
    var i = own;
    if (i < seg.x) { i += (seg.x - i + stride - 1u) / stride * stride; }
    for (; i < seg.y; i += stride) {
      let x = X[i];
      s += x * x;
    }
  }
  red[lid] = s;
  reduceTree(lid);
  if (lid == 0u) { partials[srp.base + wg.x] = red[0]; }
}

// ---- Adam-mini (adam-mini 1.1.1): one second moment per block of B consecutive elements ------------
//   adam_mini_vmean:  vmean[b] = beta2 vmean[b] + (1 - beta2) mean_{i in block b} (s g_i)^2
//   adam_mini_update: p = p (1 - lr wd);  m = lerp(m, s g, 1 - beta1);
//                     p = p - stepSize m / (sqrt(vmean[i / B]) / sqrt(1 - beta2^t) + eps)
//   s = scale[0], the gradient-clipping factor (1 without clipping).

struct BlockParams {
  n: u32,        // elements
  block: u32,    // elements per block B
  blocks: u32,   // ceil(n / B)
  lerpHigh: u32,
  decay: f32,
  w1: f32,
  beta2: f32,
  c2: f32,
  stepSize: f32,
  bc2sqrt: f32,
  eps: f32,
}

@group(0) @binding(0) var<storage, read> Gb: array<f32>;
@group(0) @binding(1) var<storage, read_write> Vmean: array<f32>;
@group(0) @binding(2) var<storage, read> Sb: array<f32>;
@group(1) @binding(0) var<uniform> bp: BlockParams;

// One workgroup per block (blocks folded over x/y).
@compute @workgroup_size(256)
fn adam_mini_vmean(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                   @builtin(local_invocation_index) lid: u32) {
  let b = wg.y * nwg.x + wg.x;
  if (b >= bp.blocks) { return; }
  let first = b * bp.block;
  let end = min(first + bp.block, bp.n);
  let s = Sb[0];
  var acc = 0.0;
  for (var i = first + lid; i < end; i += 256u) {
    let g = Gb[i] * s;
    acc += g * g;
  }
  red[lid] = acc;
  reduceTree(lid);
  if (lid == 0u) { Vmean[b] = Vmean[b] * bp.beta2 + bp.c2 * (red[0] / f32(end - first)); }
}

@group(0) @binding(0) var<storage, read_write> Pm: array<f32>;
@group(0) @binding(1) var<storage, read> Gm: array<f32>;
@group(0) @binding(2) var<storage, read_write> Mm: array<f32>;
@group(0) @binding(3) var<storage, read> VmeanIn: array<f32>;
@group(0) @binding(4) var<storage, read> Sm: array<f32>;

@compute @workgroup_size(256)
fn adam_mini_update(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                    @builtin(local_invocation_index) lid: u32) {
  let i = element(wg, nwg, lid);
  if (i >= bp.n) { return; }
  let g = Gm[i] * Sm[0];
  let p = Pm[i] * bp.decay;
  var m = Mm[i];
  if (bp.lerpHigh == 0u) {
    m = m + bp.w1 * (g - m);
  } else {
    m = g - (g - m) * (1.0 - bp.w1);
  }
  let h = sqrt(VmeanIn[i / bp.block]) / bp.bc2sqrt + bp.eps;
  Pm[i] = p - bp.stepSize * m / h;
  Mm[i] = m;
}

// ---- Muon: momentum, Newton-Schulz normalisation, update -------------------------------------------
//   muon_momentum:   buf = mu buf + s g;  u = s g + mu buf (Nesterov) or buf
//   muon_normalize:  u = u / (sqrt(sumSq[0]) + 1e-7)   (Newton-Schulz's start: unit Frobenius norm)
//   muon_apply:      p = p (1 - lr wd) - adjustedLr u

struct MuonParams {
  n: u32,
  nesterov: u32,
  momentum: f32,
  decay: f32,     // 1 - lr * wd
  stepSize: f32,  // the adjusted learning rate
}

@group(0) @binding(0) var<storage, read> Gu: array<f32>;
@group(0) @binding(1) var<storage, read_write> Buf: array<f32>;
@group(0) @binding(2) var<storage, read_write> U: array<f32>;
@group(0) @binding(3) var<storage, read> Su: array<f32>;
@group(1) @binding(0) var<uniform> mp: MuonParams;

@compute @workgroup_size(256)
fn muon_momentum(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                 @builtin(local_invocation_index) lid: u32) {
  let i = element(wg, nwg, lid);
  if (i >= mp.n) { return; }
  let g = Gu[i] * Su[0];
  let b = Buf[i] * mp.momentum + g;
  Buf[i] = b;
  U[i] = select(b, g + b * mp.momentum, mp.nesterov != 0u);
}

@group(0) @binding(0) var<storage, read_write> Un: array<f32>;
@group(0) @binding(1) var<storage, read> SumSq: array<f32>;

@compute @workgroup_size(256)
fn muon_normalize(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                  @builtin(local_invocation_index) lid: u32) {
  let i = element(wg, nwg, lid);
  if (i >= mp.n) { return; }
  Un[i] = Un[i] / (sqrt(SumSq[0]) + 1e-7);
}

@group(0) @binding(0) var<storage, read_write> Pu: array<f32>;
@group(0) @binding(1) var<storage, read> Ua: array<f32>;

@compute @workgroup_size(256)
fn muon_apply(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_index) lid: u32) {
  let i = element(wg, nwg, lid);
  if (i >= mp.n) { return; }
  Pu[i] = Pu[i] * mp.decay - mp.stepSize * Ua[i];
}

// ---- transformers' AdamW direction (galore_torch, apollo_torch: the step size carries the bias
// corrections, eps is added outside the square root) ------------------------------------------------
//   adam_direction: m = b1 m + (1 - b1) s g;  v = b2 v + (1 - b2) (s g)²;  u = m / (sqrt(v) + eps)

struct DirectionParams {
  n: u32,
  beta1: f32,
  beta2: f32,
  eps: f32,
}

@group(0) @binding(0) var<storage, read> Gd: array<f32>;
@group(0) @binding(1) var<storage, read_write> Md: array<f32>;
@group(0) @binding(2) var<storage, read_write> Vd: array<f32>;
@group(0) @binding(3) var<storage, read_write> Ud: array<f32>;
@group(0) @binding(4) var<storage, read> Sd: array<f32>;
@group(1) @binding(0) var<uniform> dp: DirectionParams;

@compute @workgroup_size(256)
fn adam_direction(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                  @builtin(local_invocation_index) lid: u32) {
  let i = element(wg, nwg, lid);
  if (i >= dp.n) { return; }
  let g = Gd[i] * Sd[0];
  let m = Md[i] * dp.beta1 + (1.0 - dp.beta1) * g;
  let v = Vd[i] * dp.beta2 + (1.0 - dp.beta2) * g * g;
  Md[i] = m;
  Vd[i] = v;
  Ud[i] = m / (sqrt(v) + dp.eps);
}

// ---- APOLLO (apollo-torch): scaling factors from the projected Adam direction ----------------------
//   apollo_factor:  factor[c] = ||u_c|| / (||s low_c|| + 1e-8), channel c holding `len` elements at
//                   c * strideCh + k * strideK (one workgroup per channel; one channel = the tensor)
//   apollo_scale_grad: y = s g factor[channel(i)] mul  (channel = row, column, or the one tensor factor)
//   apollo_limit:   Fira's norm-growth limiter on ||y||: the first step keeps it, later steps divide
//                   by max(||y|| / (prev + 1e-8), 1.01) / 1.01; prev becomes the limited norm
//   scaled_step:    p = (p - stepSize y / limiter) (1 - lr wd)

struct FactorParams {
  channels: u32,
  len: u32,
  strideCh: u32,
  strideK: u32,
}

@group(0) @binding(0) var<storage, read> LowF: array<f32>;
@group(0) @binding(1) var<storage, read> UF: array<f32>;
@group(0) @binding(2) var<storage, read_write> Factor: array<f32>;
@group(0) @binding(3) var<storage, read> SF: array<f32>;
@group(1) @binding(0) var<uniform> fp: FactorParams;

var<workgroup> red2: array<f32, 256>;

@compute @workgroup_size(256)
fn apollo_factor(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                 @builtin(local_invocation_index) lid: u32) {
  let c = wg.y * nwg.x + wg.x;
  if (c >= fp.channels) { return; }
  let s = SF[0];
  var su = 0.0;
  var sl = 0.0;
  for (var k = lid; k < fp.len; k += 256u) {
    let i = c * fp.strideCh + k * fp.strideK;
    let u = UF[i];
    let l = LowF[i] * s;
    su += u * u;
    sl += l * l;
  }
  red[lid] = su;
  red2[lid] = sl;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      red[lid] += red[lid + stride];
      red2[lid] += red2[lid + stride];
    }
    workgroupBarrier();
  }
  if (lid == 0u) { Factor[c] = sqrt(red[0]) / (sqrt(red2[0]) + 1e-8); }
}

struct ScaleParams {
  n: u32,
  cols: u32,
  mode: u32, // 0: one factor, 1: per row, 2: per column
  mul: f32,
}

@group(0) @binding(0) var<storage, read> Gs: array<f32>;
@group(0) @binding(1) var<storage, read> FactorIn: array<f32>;
@group(0) @binding(2) var<storage, read_write> Ys: array<f32>;
@group(0) @binding(3) var<storage, read> Ss: array<f32>;
@group(1) @binding(0) var<uniform> scaleP: ScaleParams;

@compute @workgroup_size(256)
fn apollo_scale_grad(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                     @builtin(local_invocation_index) lid: u32) {
  let i = element(wg, nwg, lid);
  if (i >= scaleP.n) { return; }
  var c = 0u;
  if (scaleP.mode == 1u) { c = i / scaleP.cols; } else if (scaleP.mode == 2u) { c = i % scaleP.cols; }
  Ys[i] = Gs[i] * Ss[0] * FactorIn[c] * scaleP.mul;
}

@group(0) @binding(0) var<storage, read> NormSq: array<f32>;
@group(0) @binding(1) var<storage, read_write> Prev: array<f32>;
@group(0) @binding(2) var<storage, read_write> Limiter: array<f32>;

// Prev[0] < 0: no norm recorded yet (the first step)
@compute @workgroup_size(1)
fn apollo_limit() {
  let norm = sqrt(NormSq[0]);
  if (Prev[0] < 0.0) {
    Limiter[0] = 1.0;
    Prev[0] = norm;
    return;
  }
  let lim = max(norm / (Prev[0] + 1e-8), 1.01) / 1.01;
  Limiter[0] = lim;
  Prev[0] = norm / lim;
}

struct StepParams {
  n: u32,
  stepSize: f32,
  decay: f32,
}

@group(0) @binding(0) var<storage, read_write> Pst: array<f32>;
@group(0) @binding(1) var<storage, read> Yst: array<f32>;
@group(0) @binding(2) var<storage, read> Lst: array<f32>;
@group(1) @binding(0) var<uniform> stp: StepParams;

@compute @workgroup_size(256)
fn scaled_step(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
               @builtin(local_invocation_index) lid: u32) {
  let i = element(wg, nwg, lid);
  if (i >= stp.n) { return; }
  Pst[i] = (Pst[i] - stp.stepSize * (Yst[i] / Lst[0])) * stp.decay;
}

// ---- BAdam ratio mode (BlockOptimizerRatio): Adam on the entries idx[0..k) of a weight only ---------
//   masked_gather: gm[t] = g[idx[t]]
//   masked_adam:   gt = s gm[t];  m += (gt - m)(1 - b1);  v += (gt² - v)(1 - b2);
//                  p[idx[t]] -= stepSize m / (sqrt(v) + eps)   (no weight decay: its sparse Adam has none)

struct MaskedParams {
  k: u32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  stepSize: f32,
}

@group(0) @binding(0) var<storage, read> Gg: array<f32>;
@group(0) @binding(1) var<storage, read> Idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> Gmasked: array<f32>;
@group(1) @binding(0) var<uniform> mkp: MaskedParams;

@compute @workgroup_size(256)
fn masked_gather(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                 @builtin(local_invocation_index) lid: u32) {
  let t = element(wg, nwg, lid);
  if (t >= mkp.k) { return; }
  Gmasked[t] = Gg[Idx[t]];
}

@group(0) @binding(0) var<storage, read_write> Pk: array<f32>;
@group(0) @binding(1) var<storage, read> GmIn: array<f32>;
@group(0) @binding(2) var<storage, read> IdxIn: array<u32>;
@group(0) @binding(3) var<storage, read_write> Mk: array<f32>;
@group(0) @binding(4) var<storage, read_write> Vk: array<f32>;
@group(0) @binding(5) var<storage, read> Sk: array<f32>;

@compute @workgroup_size(256)
fn masked_adam(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
               @builtin(local_invocation_index) lid: u32) {
  let t = element(wg, nwg, lid);
  if (t >= mkp.k) { return; }
  let g = GmIn[t] * Sk[0];
  let m = Mk[t] + (g - Mk[t]) * (1.0 - mkp.beta1);
  let v = Vk[t] + (g * g - Vk[t]) * (1.0 - mkp.beta2);
  Mk[t] = m;
  Vk[t] = v;
  let i = IdxIn[t];
  Pk[i] = Pk[i] - mkp.stepSize * (m / (sqrt(v) + mkp.eps));
}
