// Gated activations (SwiGLU, GeGLU, and the sigmoid output gate of Qwen3.5's attention), forward and backward, f32, one element per invocation.
// Dispatches are 1-D over elements, folded into x/y by Gpu.grid(): element = (y * nx + x) * WG + lane.
// Entry points alias binding numbers; each entry point uses one consistent set.
//
// Gated layout (src/kernels/act.ts): output element i = (t, f) with t = i / F, f = i % F reads
// gate[gOff + t * gStride + f] and up[uOff + t * uStride + f]; separate tensors use F = n and
// strides 0, the fused [T, 2F] gate_up layout uses strides 2F and uOff = F.

// Plain activations y = act(x) (vision towers' MLPs, forward only): act_forward.
//
// ACT: 0 silu, 1 gelu with the tanh approximation (gelu_pytorch_tanh), 2 exact erf gelu, 3 sigmoid,
// 4 identity (a plain product gate * up: LFM2's short-convolution gates),
// 5 quick_gelu (x * sigmoid(1.702 x), CLIP's and Qwen2-VL's vision MLP; forward only)
// variant: ACT

const WG = 256u;

struct Gated {
  n: u32, F: u32,
  gStride: u32, gOff: u32,
  uStride: u32, uOff: u32,
}

@group(1) @binding(0) var<uniform> p: Gated;

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
  } else if (ACT == 3u) {
    return sigmoid(x);
  } else if (ACT == 4u) {
    return x;
  } else if (ACT == 5u) {
    return x * sigmoid(1.702 * x);
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
  } else if (ACT == 3u) {
    return sigmoid(x) * sigmoid(-x);
  } else if (ACT == 4u) {
    return 1.0;
  }
  return Phi(x) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
}

// ---- gated activation -------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> gG: array<f32>;
@group(0) @binding(1) var<storage, read> gU: array<f32>;
@group(0) @binding(2) var<storage, read_write> gOut: array<f32>;

@compute @workgroup_size(WG)
fn gated_act_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= p.n) { return; }
  let t = i / p.F;
  let f = i - t * p.F;
  let g = gG[p.gOff + t * p.gStride + f];
  let u = gU[p.uOff + t * p.uStride + f];
  gOut[i] = act(g) * u;
}

// ---- plain activation --------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> aX: array<f32>;
@group(0) @binding(1) var<storage, read_write> aY: array<f32>;

@compute @workgroup_size(WG)
fn act_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= p.n) { return; }
  aY[i] = act(aX[i]);
}

@group(0) @binding(0) var<storage, read> bDOut: array<f32>;
@group(0) @binding(1) var<storage, read> bG: array<f32>;
@group(0) @binding(2) var<storage, read> bU: array<f32>;
@group(0) @binding(3) var<storage, read_write> bDG: array<f32>;
@group(0) @binding(4) var<storage, read_write> bDU: array<f32>;

@compute @workgroup_size(WG)
fn gated_act_backward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= p.n) { return; }
  let g = bG[i];
  let d = bDOut[i];
  bDG[i] = d * bU[i] * actGrad(g);
  bDU[i] = d * act(g);
}

// fused layout: gate and up read from one tensor, both gradients written into one tensor
@group(0) @binding(0) var<storage, read> fDOut: array<f32>;
@group(0) @binding(1) var<storage, read> fGU: array<f32>;
@group(0) @binding(2) var<storage, read_write> fDGU: array<f32>;

@compute @workgroup_size(WG)
fn gated_act_backward_fused(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= p.n) { return; }
  let t = i / p.F;
  let f = i - t * p.F;
  let gi = p.gOff + t * p.gStride + f;
  let ui = p.uOff + t * p.uStride + f;
  let g = fGU[gi];
  let d = fDOut[i];
  fDGU[gi] = d * fGU[ui] * actGrad(g);
  fDGU[ui] = d * act(g);
}
