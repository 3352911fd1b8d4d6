// RMSNorm over the last dimension: y = x * rstd * (OFFSET + w), rstd = 1 / sqrt(mean(x^2) + eps),
// with OFFSET 1 for Gemma's (1 + w). One workgroup per row (rows folded into x/y by Gpu.grid()),
// WG threads striding over the D columns and a tree reduction in workgroup memory.
//
// Backward (g = OFFSET + w, r = rstd):
//   dx_j = r * g_j * dy_j - x_j * r^3 / D * sum_k dy_k g_k x_k     (written, or added into dx)
//   dw_j = sum_rows dy_j * x_j * r                                  (deterministic, two passes:
//          per-chunk partial sums over rows, then a sum over chunks in a fixed order)
//
// Gated (Qwen3.5's RMSNormGated, z the gate): y = x * rstd * (OFFSET + w) * silu(z). With
// dn = dy * silu(z) the input gradient is the plain one with dy -> dn, dw the plain one with dn,
// and dz = dy * x * rstd * (OFFSET + w) * silu'(z); the backward writes dn for the dw passes.
// Residual add + RMSNorm: s = a + b (written: the residual stream) and y = RMSNorm(s) in one pass.
// Its backward is the plain one on s, added into the gradient already flowing into s (which both a
// and b receive), so it reuses rms_norm_backward_input with accumulate.
// L2 norm (FLA's, for Gated DeltaNet's q/k): y = x * r, r = 1 / sqrt(sum(x^2) + eps);
//   dx = r * dy - x * r^3 * sum_k dy_k x_k.
// LayerNorm (vision towers; forward only, the towers are frozen): y = (x - mean) * rstd * w + b,
// rstd = 1 / sqrt(mean((x - mean)^2) + eps), the variance from the centred values (two passes).
// Entry points alias binding numbers; each uses one consistent set. WG threads per workgroup (the
// row kernels); OFFSET 0 or 1.
// variant: WG, OFFSET

struct Params {
  R: u32, D: u32,
  eps: f32,
  accumulate: u32,
  // dw passes: rows per chunk, number of chunks
  chunkRows: u32, chunks: u32,
}

@group(1) @binding(0) var<uniform> p: Params;

var<workgroup> red: array<f32, 256>;

fn rowIndex(wg: vec3u, nwg: vec3u) -> u32 {
  return wg.y * nwg.x + wg.x;
}

// Sum of v over the workgroup, returned to every invocation.
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

// ---- forward -----------------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> fX: array<f32>;
@group(0) @binding(1) var<storage, read> fW: array<f32>;
@group(0) @binding(2) var<storage, read_write> fY: array<f32>;
@group(0) @binding(3) var<storage, read_write> fRstd: array<f32>;

@compute @workgroup_size(WG)
fn rms_norm_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let row = rowIndex(wg, nwg);
  if (row >= p.R) { return; }
  let base = row * p.D;
  var ss = 0.0;
  for (var j = lane; j < p.D; j += WG) {
    let v = fX[base + j];
    ss += v * v;
  }
  let total = workgroupSum(ss, lane);
  let r = inverseSqrt(total / f32(p.D) + p.eps);
  for (var j = lane; j < p.D; j += WG) {
    fY[base + j] = (fX[base + j] * r) * (OFFSET + fW[j]);
  }
  if (lane == 0u) { fRstd[row] = r; }
}

// ---- layer norm -------------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> nX: array<f32>;
@group(0) @binding(1) var<storage, read> nW: array<f32>;
@group(0) @binding(2) var<storage, read> nB: array<f32>;
@group(0) @binding(3) var<storage, read_write> nY: array<f32>;

@compute @workgroup_size(WG)
fn layer_norm_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let row = rowIndex(wg, nwg);
  if (row >= p.R) { return; }
  let base = row * p.D;
  var s = 0.0;
  for (var j = lane; j < p.D; j += WG) { s += nX[base + j]; }
  let mean = workgroupSum(s, lane) / f32(p.D);
  var ss = 0.0;
  for (var j = lane; j < p.D; j += WG) {
    let c = nX[base + j] - mean;
    ss += c * c;
  }
  let r = inverseSqrt(workgroupSum(ss, lane) / f32(p.D) + p.eps);
  for (var j = lane; j < p.D; j += WG) {
    nY[base + j] = (nX[base + j] - mean) * r * nW[j] + nB[j];
  }
}

// ---- residual add + forward -------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> aA: array<f32>;
@group(0) @binding(1) var<storage, read> aB: array<f32>;
@group(0) @binding(2) var<storage, read> aW: array<f32>;
@group(0) @binding(3) var<storage, read_write> aS: array<f32>;
@group(0) @binding(4) var<storage, read_write> aY: array<f32>;
@group(0) @binding(5) var<storage, read_write> aRstd: array<f32>;

@compute @workgroup_size(WG)
fn add_rms_norm_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let row = rowIndex(wg, nwg);
  if (row >= p.R) { return; }
  let base = row * p.D;
  var ss = 0.0;
  for (var j = lane; j < p.D; j += WG) {
    let v = aA[base + j] + aB[base + j];
    aS[base + j] = v;
    ss += v * v;
  }
  let total = workgroupSum(ss, lane);
  let r = inverseSqrt(total / f32(p.D) + p.eps);
  // each invocation reads back only the elements it wrote above
  for (var j = lane; j < p.D; j += WG) {
    aY[base + j] = (aS[base + j] * r) * (OFFSET + aW[j]);
  }
  if (lane == 0u) { aRstd[row] = r; }
}

// ---- backward: input gradient ------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> bDY: array<f32>;
@group(0) @binding(1) var<storage, read> bX: array<f32>;
@group(0) @binding(2) var<storage, read> bW: array<f32>;
@group(0) @binding(3) var<storage, read> bRstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> bDX: array<f32>;

@compute @workgroup_size(WG)
fn rms_norm_backward_input(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let row = rowIndex(wg, nwg);
  if (row >= p.R) { return; }
  let base = row * p.D;
  var dot = 0.0;
  for (var j = lane; j < p.D; j += WG) {
    dot += bDY[base + j] * (OFFSET + bW[j]) * bX[base + j];
  }
  let total = workgroupSum(dot, lane);
  let r = bRstd[row];
  let c = r * r * r * total / f32(p.D);
  for (var j = lane; j < p.D; j += WG) {
    var v = r * (OFFSET + bW[j]) * bDY[base + j] - bX[base + j] * c;
    if (p.accumulate != 0u) { v += bDX[base + j]; }
    bDX[base + j] = v;
  }
}

// ---- gated: forward and input gradients -------------------------------------------------------

fn silu(x: f32) -> f32 {
  return x / (1.0 + exp(-x));
}

@group(0) @binding(0) var<storage, read> gX: array<f32>;
@group(0) @binding(1) var<storage, read> gZ: array<f32>;
@group(0) @binding(2) var<storage, read> gW: array<f32>;
@group(0) @binding(3) var<storage, read_write> gY: array<f32>;
@group(0) @binding(4) var<storage, read_write> gRstd: array<f32>;

@compute @workgroup_size(WG)
fn rms_norm_gated_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let row = rowIndex(wg, nwg);
  if (row >= p.R) { return; }
  let base = row * p.D;
  var ss = 0.0;
  for (var j = lane; j < p.D; j += WG) {
    let v = gX[base + j];
    ss += v * v;
  }
  let total = workgroupSum(ss, lane);
  let r = inverseSqrt(total / f32(p.D) + p.eps);
  for (var j = lane; j < p.D; j += WG) {
    gY[base + j] = (gX[base + j] * r) * (OFFSET + gW[j]) * silu(gZ[base + j]);
  }
  if (lane == 0u) { gRstd[row] = r; }
}

@group(0) @binding(0) var<storage, read> hDY: array<f32>;
@group(0) @binding(1) var<storage, read> hX: array<f32>;
@group(0) @binding(2) var<storage, read> hZ: array<f32>;
@group(0) @binding(3) var<storage, read> hW: array<f32>;
@group(0) @binding(4) var<storage, read> hRstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> hDX: array<f32>;
@group(0) @binding(6) var<storage, read_write> hDZ: array<f32>;
@group(0) @binding(7) var<storage, read_write> hDN: array<f32>;

@compute @workgroup_size(WG)
fn rms_norm_gated_backward_input(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let row = rowIndex(wg, nwg);
  if (row >= p.R) { return; }
  let base = row * p.D;
  let r = hRstd[row];
  var dot = 0.0;
  for (var j = lane; j < p.D; j += WG) {
    let z = hZ[base + j];
    let sig = 1.0 / (1.0 + exp(-z));
    let gw = OFFSET + hW[j];
    let x = hX[base + j];
    let dy = hDY[base + j];
    let dn = dy * z * sig;
    hDN[base + j] = dn;
    hDZ[base + j] = dy * x * r * gw * sig * (1.0 + z * (1.0 - sig));
    dot += dn * gw * x;
  }
  let total = workgroupSum(dot, lane);
  let c = r * r * r * total / f32(p.D);
  for (var j = lane; j < p.D; j += WG) {
    var v = r * (OFFSET + hW[j]) * hDN[base + j] - hX[base + j] * c;
    if (p.accumulate != 0u) { v += hDX[base + j]; }
    hDX[base + j] = v;
  }
}

// ---- L2 norm -----------------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> lX: array<f32>;
@group(0) @binding(1) var<storage, read_write> lY: array<f32>;
@group(0) @binding(2) var<storage, read_write> lR: array<f32>;

@compute @workgroup_size(WG)
fn l2_norm_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let row = rowIndex(wg, nwg);
  if (row >= p.R) { return; }
  let base = row * p.D;
  var ss = 0.0;
  for (var j = lane; j < p.D; j += WG) {
    let v = lX[base + j];
    ss += v * v;
  }
  let r = inverseSqrt(workgroupSum(ss, lane) + p.eps);
  for (var j = lane; j < p.D; j += WG) { lY[base + j] = lX[base + j] * r; }
  if (lane == 0u) { lR[row] = r; }
}

@group(0) @binding(0) var<storage, read> mDY: array<f32>;
@group(0) @binding(1) var<storage, read> mX: array<f32>;
@group(0) @binding(2) var<storage, read> mR: array<f32>;
@group(0) @binding(3) var<storage, read_write> mDX: array<f32>;

@compute @workgroup_size(WG)
fn l2_norm_backward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let row = rowIndex(wg, nwg);
  if (row >= p.R) { return; }
  let base = row * p.D;
  var dot = 0.0;
  for (var j = lane; j < p.D; j += WG) { dot += mDY[base + j] * mX[base + j]; }
  let total = workgroupSum(dot, lane);
  let r = mR[row];
  let c = r * r * r * total;
  for (var j = lane; j < p.D; j += WG) {
    var v = r * mDY[base + j] - mX[base + j] * c;
    if (p.accumulate != 0u) { v += mDX[base + j]; }
    mDX[base + j] = v;
  }
}

// ---- backward: weight gradient -----------------------------------------------------------------
// Pass 1: workgroup (64, 4) = 64 columns x 4 row lanes over one chunk of rows; the lanes' sums are
// added in a fixed order. With one chunk it writes dw directly, else partial[chunk, D].

const DW_COLS = 64u;
const DW_LANES = 4u;
var<workgroup> lanes: array<f32, 256>; // [DW_LANES][DW_COLS]

@group(0) @binding(0) var<storage, read> wDY: array<f32>;
@group(0) @binding(1) var<storage, read> wX: array<f32>;
@group(0) @binding(2) var<storage, read> wRstd: array<f32>;
@group(0) @binding(3) var<storage, read_write> wOut: array<f32>;

@compute @workgroup_size(64, 4)
fn rms_norm_backward_weight_partial(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let col = wg.x * DW_COLS + lid.x;
  let chunk = wg.y;
  let r0 = chunk * p.chunkRows;
  let r1 = min(p.R, r0 + p.chunkRows);
  var acc = 0.0;
  if (col < p.D) {
    for (var r = r0 + lid.y; r < r1; r += DW_LANES) {
      let i = r * p.D + col;
      acc += wDY[i] * wX[i] * wRstd[r];
    }
  }
  lanes[lid.y * DW_COLS + lid.x] = acc;
  workgroupBarrier();
  if (lid.y == 0u && col < p.D) {
    var s = lanes[lid.x];
    for (var l = 1u; l < DW_LANES; l++) { s += lanes[l * DW_COLS + lid.x]; }
    if (p.chunks == 1u) {
      if (p.accumulate != 0u) { s += wOut[col]; }
      wOut[col] = s;
    } else {
      wOut[chunk * p.D + col] = s;
    }
  }
}

// Pass 2: dw_j (=|+=) sum over chunks of partial[chunk, j], in chunk order.
@group(0) @binding(0) var<storage, read> sPart: array<f32>;
@group(0) @binding(1) var<storage, read_write> sDW: array<f32>;

@compute @workgroup_size(WG)
fn rms_norm_backward_weight_sum(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let col = wg.x * WG + lane;
  if (col >= p.D) { return; }
  var s = 0.0;
  for (var c = 0u; c < p.chunks; c++) { s += sPart[c * p.D + col]; }
  if (p.accumulate != 0u) { s += sDW[col]; }
  sDW[col] = s;
}
