// f16 tensors updated from f32 values without shader-f16: halves are read and written as u32 pairs
// through unpack2x16float / pack2x16float (core WGSL). Dispatches are 1-D over pairs, folded into
// x/y by Gpu.grid(): pair = (y * nx + x) * WG + lane.

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
