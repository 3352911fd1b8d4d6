// Gated activations (SwiGLU, GeGLU) and elementwise helpers, f32, one element per invocation.
// Dispatches are 1-D over elements, folded into x/y by Gpu.grid(): element = (y * nx + x) * WG + lane.
// Entry points alias binding numbers; each entry point uses one consistent set. A buffer may not be
// bound both read-only and writable in one dispatch, nor twice writable over overlapping ranges,
// so in-place forms have their own entry points with a single read_write binding.
//
// Gated layout (src/kernels/act.ts): output element i = (t, f) with t = i / F, f = i % F reads
// gate[gOff + t * gStride + f] and up[uOff + t * uStride + f]; separate tensors use F = n and
// strides 0, the fused [T, 2F] gate_up layout uses strides 2F and uOff = F.

override WG: u32 = 256u;
// 0: silu, 1: gelu with the tanh approximation (gelu_pytorch_tanh), 2: exact erf gelu
override ACT: u32 = 0u;

struct Gated {
  n: u32, F: u32,
  gStride: u32, gOff: u32,
  uStride: u32, uOff: u32,
}

struct Elem {
  n: u32,
  alpha: f32,
}

struct Copy2d {
  rows: u32, cols: u32,
  srcOff: u32, srcStride: u32,
  dstOff: u32, dstStride: u32,
  accumulate: u32,
}

fn element(wg: vec3u, nwg: vec3u, lane: u32) -> u32 {
  return (wg.y * nwg.x + wg.x) * WG + lane;
}

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_C: f32 = 0.044715;
const INV_SQRT_2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;

fn sigmoid(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(-x));
}

// gelu_tanh(x) = 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): the
// sigmoid form keeps its relative accuracy in the negative tail, where 1 + tanh(u) cancels, and
// never evaluates tanh (which some backends compute through exp and overflow to NaN).
fn geluTanhArg(x: f32) -> f32 {
  return 2.0 * SQRT_2_OVER_PI * (x + GELU_C * x * x * x);
}

// erfc(z) for z >= 0 with relative error below 1.2e-7 (Numerical Recipes' erfcc Chebyshev fit),
// so that both tails of Phi keep their relative accuracy.
fn erfcPos(z: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(-z * z + poly);
}

// Standard normal CDF
fn Phi(x: f32) -> f32 {
  let h = 0.5 * erfcPos(abs(x) * INV_SQRT_2);
  return select(h, 1.0 - h, x >= 0.0);
}

fn act(x: f32) -> f32 {
  if (ACT == 0u) {
    return x * sigmoid(x);
  } else if (ACT == 1u) {
    return x * sigmoid(geluTanhArg(x));
  }
  return x * Phi(x);
}

fn actGrad(x: f32) -> f32 {
  // 1 - sigmoid(v) is evaluated as sigmoid(-v): accurate where sigmoid(v) is close to 1
  if (ACT == 0u) {
    return sigmoid(x) * (1.0 + x * sigmoid(-x));
  } else if (ACT == 1u) {
    let v = geluTanhArg(x);
    return sigmoid(v) + 2.0 * x * sigmoid(v) * sigmoid(-v) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x);
  }
  return Phi(x) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
}

// ---- gated activation -------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> gG: array<f32>;
@group(0) @binding(1) var<storage, read> gU: array<f32>;
@group(0) @binding(2) var<storage, read_write> gOut: array<f32>;
@group(0) @binding(3) var<uniform> gp: Gated;

@compute @workgroup_size(WG)
fn gated_fwd(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= gp.n) { return; }
  let t = i / gp.F;
  let f = i - t * gp.F;
  let g = gG[gp.gOff + t * gp.gStride + f];
  let u = gU[gp.uOff + t * gp.uStride + f];
  gOut[i] = act(g) * u;
}

@group(0) @binding(0) var<storage, read> bDOut: array<f32>;
@group(0) @binding(1) var<storage, read> bG: array<f32>;
@group(0) @binding(2) var<storage, read> bU: array<f32>;
@group(0) @binding(3) var<storage, read_write> bDG: array<f32>;
@group(0) @binding(4) var<storage, read_write> bDU: array<f32>;
@group(0) @binding(5) var<uniform> bp: Gated;

@compute @workgroup_size(WG)
fn gated_bwd(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= bp.n) { return; }
  let g = bG[i];
  let d = bDOut[i];
  bDG[i] = d * bU[i] * actGrad(g);
  bDU[i] = d * act(g);
}

// fused layout: gate and up read from one tensor, both gradients written into one tensor
@group(0) @binding(0) var<storage, read> fDOut: array<f32>;
@group(0) @binding(1) var<storage, read> fGU: array<f32>;
@group(0) @binding(2) var<storage, read_write> fDGU: array<f32>;
@group(0) @binding(3) var<uniform> fp: Gated;

@compute @workgroup_size(WG)
fn gated_bwd_fused(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= fp.n) { return; }
  let t = i / fp.F;
  let f = i - t * fp.F;
  let gi = fp.gOff + t * fp.gStride + f;
  let ui = fp.uOff + t * fp.uStride + f;
  let g = fGU[gi];
  let d = fDOut[i];
  fDGU[gi] = d * fGU[ui] * actGrad(g);
  fDGU[ui] = d * act(g);
}

// ---- elementwise ------------------------------------------------------------------------------

// out = a + b
@group(0) @binding(0) var<storage, read> eA: array<f32>;
@group(0) @binding(1) var<storage, read> eB: array<f32>;
@group(0) @binding(2) var<storage, read_write> eOut: array<f32>;
@group(0) @binding(3) var<uniform> ep: Elem;

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= ep.n) { return; }
  eOut[i] = eA[i] + eB[i];
}

// y = y + alpha * x (add in place with alpha 1, and axpy)
@group(0) @binding(0) var<storage, read> aX: array<f32>;
@group(0) @binding(1) var<storage, read_write> aY: array<f32>;
@group(0) @binding(2) var<uniform> ap: Elem;

@compute @workgroup_size(WG)
fn axpy(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= ap.n) { return; }
  aY[i] = aY[i] + ap.alpha * aX[i];
}

// out = alpha * x
@group(0) @binding(0) var<storage, read> sX: array<f32>;
@group(0) @binding(1) var<storage, read_write> sOut: array<f32>;
@group(0) @binding(2) var<uniform> sp: Elem;

@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= sp.n) { return; }
  sOut[i] = sp.alpha * sX[i];
}

// x = alpha * x
@group(0) @binding(0) var<storage, read_write> iX: array<f32>;
@group(0) @binding(1) var<uniform> ip: Elem;

@compute @workgroup_size(WG)
fn scale_inplace(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= ip.n) { return; }
  iX[i] = ip.alpha * iX[i];
}

// 2-D strided copy (or add) of rows x cols elements
@group(0) @binding(0) var<storage, read> cSrc: array<f32>;
@group(0) @binding(1) var<storage, read_write> cDst: array<f32>;
@group(0) @binding(2) var<uniform> cp: Copy2d;

@compute @workgroup_size(WG)
fn copy2d(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= cp.rows * cp.cols) { return; }
  let r = i / cp.cols;
  let c = i - r * cp.cols;
  let d = cp.dstOff + r * cp.dstStride + c;
  var v = cSrc[cp.srcOff + r * cp.srcStride + c];
  if (cp.accumulate != 0u) { v += cDst[d]; }
  cDst[d] = v;
}

// the same within one buffer (disjoint source and destination elements); offsets are relative
// to the start of the bound range
@group(0) @binding(0) var<storage, read_write> cBuf: array<f32>;
@group(0) @binding(1) var<uniform> cq: Copy2d;

@compute @workgroup_size(WG)
fn copy2d_same(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= cq.rows * cq.cols) { return; }
  let r = i / cq.cols;
  let c = i - r * cq.cols;
  let d = cq.dstOff + r * cq.dstStride + c;
  var v = cBuf[cq.srcOff + r * cq.srcStride + c];
  if (cq.accumulate != 0u) { v += cBuf[d]; }
  cBuf[d] = v;
}
