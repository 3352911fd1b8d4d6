// OFT block rotations (src/kernels/oft.ts), forward and backward: the b x b orthogonal block of
// each of the nb blocks from its skew-symmetric generator Q, stored as Q's strict upper triangle
// (PEFT's oft_R.weight row, row-major), and the gradient back to that triangle.
//   oft_rotation_forward   Neumann (terms >= 1): R = Σ_k c_k Q^k, c_0 = 1, c_k = 2 below the
//                          highest power m, c_m = `last` (PEFT's truncated series of (I+Q)(I-Q)⁻¹)
//                          exact: R = (I - Q)(I + Q)⁻¹ = 2M - I, M = (I + Q)⁻¹ by Gauss-Jordan
//                          (I + Q has a positive definite symmetric part: no pivoting needed)
//   oft_rotation_backward  dq[i<j] (=|+=) GQ[i][j] - GQ[j][i] with GQ = dL/dQ:
//                          Neumann: GQ = Σ_k c_k (-1)^(k-1) S_k, S_1 = G, S_k+1 = Q S_k + G Q^k
//                          exact:   GQ = -2 Mᵀ G Mᵀ, M = (R + I) / 2
// One workgroup per block; the b x b matrices live in a storage workspace of SLOTS per block, the
// threads of the block's workgroup stride over their elements between storage barriers.

const WG = 256u;
const SLOTS = 7u;

struct Params { nb: u32, b: u32, m: u32, exact: u32, last: f32, accumulate: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> skew: array<f32>;          // [nb, b(b-1)/2]
@group(0) @binding(1) var<storage, read_write> work: array<f32>;    // [nb, SLOTS, b, b]
@group(0) @binding(2) var<storage, read_write> rf_rot: array<f32>;  // [nb, b, b] (forward: written)
@group(0) @binding(2) var<storage, read> rb_rot: array<f32>;        // [nb, b, b] (backward: read)
@group(0) @binding(3) var<storage, read> rb_grad: array<f32>;       // [nb, b, b] dL/dR
@group(0) @binding(4) var<storage, read_write> rb_dskew: array<f32>; // [nb, b(b-1)/2]
@group(1) @binding(0) var<uniform> p: Params;

/** Position of Q[i][j] (i < j) in the row-major strict upper triangle. */
fn tri(i: u32, j: u32) -> u32 {
  return i * p.b - i * (i + 1u) / 2u + (j - i - 1u);
}

fn slot(blk: u32, s: u32) -> u32 {
  return (blk * SLOTS + s) * p.b * p.b;
}

/** Q of the block into work slot `dst`. */
fn load_q(blk: u32, dst: u32, lid: u32) {
  let b = p.b;
  let base = blk * (b * (b - 1u) / 2u);
  for (var e = lid; e < b * b; e += WG) {
    let i = e / b;
    let j = e % b;
    var q = 0.0;
    if (i < j) { q = skew[base + tri(i, j)]; }
    if (i > j) { q = -skew[base + tri(j, i)]; }
    work[dst + e] = q;
  }
}

/** work[dst] (=|+=) alpha · op(work[a]) · op(work[bm]); op transposes when asked. */
fn mm(dst: u32, a: u32, ta: bool, bm: u32, tb: bool, alpha: f32, acc: bool, lid: u32) {
  let b = p.b;
  for (var e = lid; e < b * b; e += WG) {
    let i = e / b;
    let j = e % b;
    var s = 0.0;
    for (var l = 0u; l < b; l++) {
      let av = select(work[a + i * b + l], work[a + l * b + i], ta);
      let bv = select(work[bm + l * b + j], work[bm + j * b + l], tb);
      s = fma(av, bv, s);
    }
    if (acc) { work[dst + e] = work[dst + e] + alpha * s; } else { work[dst + e] = alpha * s; }
  }
}

/** work[dst] = work[src] */
fn copy(dst: u32, src: u32, lid: u32) {
  for (var e = lid; e < p.b * p.b; e += WG) { work[dst + e] = work[src + e]; }
}

/** Neumann coefficient of Q^k, 1 <= k <= m. */
fn coeff(k: u32) -> f32 {
  return select(2.0, p.last, k == p.m);
}

@compute @workgroup_size(256)
fn oft_rotation_forward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lidv: vec3u) {
  let blk = wg.x;
  if (blk >= p.nb) { return; }
  let lid = lidv.x;
  let b = p.b;
  let bb = b * b;
  let out = blk * bb;
  if (p.exact != 0u) {
    // augmented [I + Q | I], rows of 2b in slots 0 and 1
    let aug = slot(blk, 0u);
    let w = 2u * b;
    let base = blk * (b * (b - 1u) / 2u);
    for (var e = lid; e < b * w; e += WG) {
      let i = e / w;
      let j = e % w;
      var v = 0.0;
      if (j < b) {
        if (i == j) { v = 1.0; }
        if (i < j) { v = skew[base + tri(i, j)]; }
        if (i > j) { v = -skew[base + tri(j, i)]; }
      } else if (j - b == i) { v = 1.0; }
      work[aug + e] = v;
    }
    storageBarrier();
    for (var k = 0u; k < b; k++) {
      let piv = work[aug + k * w + k];
      storageBarrier();
      for (var j = lid; j < w; j += WG) { work[aug + k * w + j] = work[aug + k * w + j] / piv; }
      storageBarrier();
      // column k stays as it is during the update, so every row reads its own factor
      for (var e = lid; e < b * w; e += WG) {
        let i = e / w;
        let j = e % w;
        if (i != k && j != k) { work[aug + e] = work[aug + e] - work[aug + i * w + k] * work[aug + k * w + j]; }
      }
      storageBarrier();
      for (var i = lid; i < b; i += WG) {
        if (i != k) { work[aug + i * w + k] = 0.0; }
      }
      storageBarrier();
    }
    for (var e = lid; e < bb; e += WG) {
      let i = e / b;
      let j = e % b;
      rf_rot[out + e] = 2.0 * work[aug + i * w + b + j] - select(0.0, 1.0, i == j);
    }
    return;
  }
  let q = slot(blk, 0u);
  let pw = slot(blk, 1u);
  let pn = slot(blk, 2u);
  load_q(blk, q, lid);
  storageBarrier();
  for (var e = lid; e < bb; e += WG) {
    var v = select(0.0, 1.0, e / b == e % b);
    if (p.m >= 1u) { v += coeff(1u) * work[q + e]; }
    rf_rot[out + e] = v;
  }
  copy(pw, q, lid);
  storageBarrier();
  for (var k = 2u; k <= p.m; k++) {
    mm(pn, pw, false, q, false, 1.0, false, lid);
    storageBarrier();
    for (var e = lid; e < bb; e += WG) {
      rf_rot[out + e] = rf_rot[out + e] + coeff(k) * work[pn + e];
      work[pw + e] = work[pn + e];
    }
    storageBarrier();
  }
}

@compute @workgroup_size(256)
fn oft_rotation_backward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lidv: vec3u) {
  let blk = wg.x;
  if (blk >= p.nb) { return; }
  let lid = lidv.x;
  let b = p.b;
  let bb = b * b;
  let q = slot(blk, 0u);
  let pw = slot(blk, 1u);
  let pn = slot(blk, 2u);
  let s = slot(blk, 3u);
  let sn = slot(blk, 4u);
  let g = slot(blk, 5u);
  let gq = slot(blk, 6u);
  for (var e = lid; e < bb; e += WG) { work[g + e] = rb_grad[blk * bb + e]; }
  if (p.exact != 0u) {
    // M = (R + I) / 2 in slot 0; T1 = Mᵀ G in slot 1; GQ = -2 T1 Mᵀ
    for (var e = lid; e < bb; e += WG) {
      work[q + e] = 0.5 * (rb_rot[blk * bb + e] + select(0.0, 1.0, e / b == e % b));
    }
    storageBarrier();
    mm(pw, q, true, g, false, 1.0, false, lid);
    storageBarrier();
    mm(gq, pw, false, q, true, -2.0, false, lid);
  } else {
    load_q(blk, q, lid);
    storageBarrier();
    for (var e = lid; e < bb; e += WG) {
      work[gq + e] = select(0.0, coeff(1u) * work[g + e], p.m >= 1u);
      work[s + e] = work[g + e];
      work[pw + e] = work[q + e];
    }
    storageBarrier();
    var sign = -1.0;
    for (var k = 2u; k <= p.m; k++) {
      mm(sn, q, false, s, false, 1.0, false, lid);
      mm(sn, g, false, pw, false, 1.0, true, lid);
      mm(pn, pw, false, q, false, 1.0, false, lid);
      storageBarrier();
      for (var e = lid; e < bb; e += WG) {
        work[gq + e] = work[gq + e] + sign * coeff(k) * work[sn + e];
        work[s + e] = work[sn + e];
        work[pw + e] = work[pn + e];
      }
      storageBarrier();
      sign = -sign;
    }
  }
  storageBarrier();
  let base = blk * (b * (b - 1u) / 2u);
  for (var e = lid; e < bb; e += WG) {
    let i = e / b;
    let j = e % b;
    if (i < j) {
      let v = work[gq + i * b + j] - work[gq + j * b + i];
      let idx = base + tri(i, j);
      if (p.accumulate != 0u) { rb_dskew[idx] = rb_dskew[idx] + v; } else { rb_dskew[idx] = v; }
    }
  }
}
