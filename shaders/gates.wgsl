// Gated DeltaNet's gates (src/kernels/gates.ts), f32, per token n and value head h:
//   g = -exp(A_log[h]) * softplus(a + dt_bias[h])   (log decay, <= 0)
//   beta = sigmoid(b)
// softplus as torch's default (linear above 20). Backward:
//   da = -dg * exp(A_log) * sigmoid(a + dt_bias);  db = dbeta * beta * (1 - beta);
//   dA_log[h] = sum_n dg * g;  ddt_bias[h] = sum_n da   (a fixed order over n, one invocation per head)
// Elementwise entry points are 1-D over elements, folded into x/y by Gpu.grid().
// Entry points alias binding numbers; each uses one consistent set.

const WG = 256u;

struct Params {
  N: u32, H: u32,
  accumulate: u32,
}

@group(1) @binding(0) var<uniform> p: Params;

fn element(wg: vec3u, nwg: vec3u, lane: u32) -> u32 {
  return (wg.y * nwg.x + wg.x) * WG + lane;
}

fn sigmoid(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(-x));
}

fn softplus(x: f32) -> f32 {
  if (x > 20.0) { return x; }
  // log(1 + e^x) without cancellation for very negative x
  return max(x, 0.0) + log(1.0 + exp(-abs(x)));
}

@group(0) @binding(0) var<storage, read> fA: array<f32>;
@group(0) @binding(1) var<storage, read> fB: array<f32>;
@group(0) @binding(2) var<storage, read> fALog: array<f32>;
@group(0) @binding(3) var<storage, read> fDt: array<f32>;
@group(0) @binding(4) var<storage, read_write> fG: array<f32>;
@group(0) @binding(5) var<storage, read_write> fBeta: array<f32>;

@compute @workgroup_size(WG)
fn delta_gates_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let e = element(wg, nwg, lane);
  if (e >= p.N * p.H) { return; }
  let h = e % p.H;
  fG[e] = -exp(fALog[h]) * softplus(fA[e] + fDt[h]);
  fBeta[e] = sigmoid(fB[e]);
}

@group(0) @binding(0) var<storage, read> bDG: array<f32>;
@group(0) @binding(1) var<storage, read> bDBeta: array<f32>;
@group(0) @binding(2) var<storage, read> bA: array<f32>;
@group(0) @binding(3) var<storage, read> bB: array<f32>;
@group(0) @binding(4) var<storage, read> bALog: array<f32>;
@group(0) @binding(5) var<storage, read> bDt: array<f32>;
@group(0) @binding(6) var<storage, read_write> bDA: array<f32>;
@group(0) @binding(7) var<storage, read_write> bDB: array<f32>;

@compute @workgroup_size(WG)
fn delta_gates_backward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let e = element(wg, nwg, lane);
  if (e >= p.N * p.H) { return; }
  let h = e % p.H;
  bDA[e] = -bDG[e] * exp(bALog[h]) * sigmoid(bA[e] + bDt[h]);
  let beta = sigmoid(bB[e]);
  bDB[e] = bDBeta[e] * beta * (1.0 - beta);
}

@group(0) @binding(0) var<storage, read> wDG: array<f32>;
@group(0) @binding(1) var<storage, read> wA: array<f32>;
@group(0) @binding(2) var<storage, read> wALog: array<f32>;
@group(0) @binding(3) var<storage, read> wDt: array<f32>;
@group(0) @binding(4) var<storage, read_write> wDALog: array<f32>;
@group(0) @binding(5) var<storage, read_write> wDDt: array<f32>;

// one invocation per head, summing over tokens in order
@compute @workgroup_size(WG)
fn delta_gates_backward_params(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let h = element(wg, nwg, lane);
  if (h >= p.H) { return; }
  let A = exp(wALog[h]);
  var dALog = 0.0;
  var dDt = 0.0;
  for (var n = 0u; n < p.N; n++) {
    let e = n * p.H + h;
    let x = wA[e] + wDt[h];
    dALog -= wDG[e] * A * softplus(x);
    dDt -= wDG[e] * A * sigmoid(x);
  }
  if (p.accumulate != 0u) {
    dALog += wDALog[h];
    dDt += wDDt[h];
  }
  wDALog[h] = dALog;
  wDDt[h] = dDt;
}
