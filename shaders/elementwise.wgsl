// f32 elementwise helpers (src/kernels/elementwise.ts), one element per invocation. Dispatches are
// 1-D over elements, folded into x/y by Gpu.grid(): element = (y * nx + x) * WG + lane. Entry points
// alias binding numbers; each uses one consistent set. A buffer may not be bound both read-only
// and writable in one dispatch, nor twice writable over overlapping ranges, so in-place forms
// have their own entry points with a single read_write binding.

const WG = 256u;

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

@group(1) @binding(0) var<uniform> p: Elem;
@group(1) @binding(0) var<uniform> cp: Copy2d; // the copies

fn element(wg: vec3u, nwg: vec3u, lane: u32) -> u32 {
  return (wg.y * nwg.x + wg.x) * WG + lane;
}

// out = a + b
@group(0) @binding(0) var<storage, read> eA: array<f32>;
@group(0) @binding(1) var<storage, read> eB: array<f32>;
@group(0) @binding(2) var<storage, read_write> eOut: array<f32>;

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= p.n) { return; }
  eOut[i] = eA[i] + eB[i];
}

// y = y + alpha * x (add in place with alpha 1, and axpy)
@group(0) @binding(0) var<storage, read> aX: array<f32>;
@group(0) @binding(1) var<storage, read_write> aY: array<f32>;

@compute @workgroup_size(WG)
fn axpy(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= p.n) { return; }
  aY[i] = aY[i] + p.alpha * aX[i];
}

// out = alpha * x
@group(0) @binding(0) var<storage, read> sX: array<f32>;
@group(0) @binding(1) var<storage, read_write> sOut: array<f32>;

@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= p.n) { return; }
  sOut[i] = p.alpha * sX[i];
}

// x = alpha * x
@group(0) @binding(0) var<storage, read_write> iX: array<f32>;

@compute @workgroup_size(WG)
fn scale_in_place(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= p.n) { return; }
  iX[i] = p.alpha * iX[i];
}

// 2-D strided copy (or add) of rows x cols elements
@group(0) @binding(0) var<storage, read> cSrc: array<f32>;
@group(0) @binding(1) var<storage, read_write> cDst: array<f32>;

@compute @workgroup_size(WG)
fn copy_into(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
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

@compute @workgroup_size(WG)
fn copy_into_same_buffer(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let i = element(wg, nwg, lane);
  if (i >= cp.rows * cp.cols) { return; }
  let r = i / cp.cols;
  let c = i - r * cp.cols;
  let d = cp.dstOff + r * cp.dstStride + c;
  var v = cBuf[cp.srcOff + r * cp.srcStride + c];
  if (cp.accumulate != 0u) { v += cBuf[d]; }
  cBuf[d] = v;
}
