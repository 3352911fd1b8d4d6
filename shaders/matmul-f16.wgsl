// The f16 tier's matrix product (needs shader-f16; the launcher puts `enable f16;` in front):
//   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b]
// with A and B stored as f16, products summed in f32, C stored as f32 (gemm_f16) or f16
// (gemm_f16_to_f16). gemm_f16_descaled is gemm_f16 for an A that to_f16_scaled (f16.wgsl) stored
// times a power of two chosen on the GPU: alpha is multiplied by the inverse it left in `descale`. op(A) is M x K, op(B) is K x N; TRANS_A / TRANS_B pick the storage layout,
// so one kernel serves y = x W^T (NT), dX = dY W (NN) and dW = dY^T X (TN).
// Tiles (variant constants, src/kernels/gemm-tiles.ts): BM x BN outputs per workgroup (BM, BN
// multiples of 64), K in steps of BK (a multiple of 4). Each of the 16 x 16 threads owns RM x RN
// blocks of 4 x 4 (4 rows, 4 adjacent columns; RM = BM / 64, RN = BN / 64) and reads 4 x 4 blocks
// of both operands from workgroup memory as four vec4s each: 8 workgroup reads per 64 FMAs.
// Operands are staged in the layout they have in memory, vec4 by vec4, so global reads run along
// the contiguous dimension; a block stored the other way round is transposed in registers.
// A and B are bound as vec4<f16> arrays. With VEC the launcher guarantees that leading dimensions,
// offsets, batch strides and the contiguous extents are multiples of 4, and each vec4 is one load;
// without it each element is read and bounds-checked on its own (odd shapes).
// variant: TRANS_A, TRANS_B, VEC, BM, BN, BK

struct Params {
  M: u32, N: u32, K: u32,
  lda: u32, ldb: u32, ldc: u32,
  offA: u32, offB: u32, offC: u32,
  strideA: u32, strideB: u32, strideC: u32,
  alpha: f32, beta: f32,
}

@group(0) @binding(0) var<storage, read> A: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<f16>>;
// entry points alias binding 2: gemm_f16 writes f32, gemm_f16_to_f16 writes f16
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(2) var<storage, read_write> Ch: array<f16>;
// gemm_f16_descaled only: the inverse of A's power-of-two scale
@group(0) @binding(3) var<storage, read> descale: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

const RM = BM / 64u; // 4 x 4 blocks per thread along M
const RN = BN / 64u; // and along N
// !TRANS_A: [BM][BK/4] (k runs inside a vec4); TRANS_A: [BK][BM/4] (m runs inside)
var<workgroup> As: array<vec4f, BM * BK / 4u>;
// !TRANS_B: [BK][BN/4] (n runs inside); TRANS_B: [BN][BK/4] (k runs inside)
var<workgroup> Bs: array<vec4f, BN * BK / 4u>;

fn a_at(i: u32) -> f32 { return f32(A[i >> 2u][i & 3u]); }
fn b_at(i: u32) -> f32 { return f32(B[i >> 2u][i & 3u]); }

// Elements i .. i+3 of A where `valid` of them exist (the rest read as zero).
fn loadA4(i: u32, valid: u32) -> vec4f {
  if (VEC) {
    if (valid == 0u) { return vec4f(0.0); }
    return vec4f(A[i >> 2u]);
  }
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) {
    if (j < valid) { v[j] = a_at(i + j); }
  }
  return v;
}

fn loadB4(i: u32, valid: u32) -> vec4f {
  if (VEC) {
    if (valid == 0u) { return vec4f(0.0); }
    return vec4f(B[i >> 2u]);
  }
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) {
    if (j < valid) { v[j] = b_at(i + j); }
  }
  return v;
}

// How many of the 4 elements from `start` lie below `end` (0 when the line itself is outside).
fn span(inside: bool, start: u32, end: u32) -> u32 {
  if (!inside || start >= end) { return 0u; }
  return min(4u, end - start);
}

// Stage the K step at k0, vec4 by vec4 of op(A) and op(B).
fn stage(batch: u32, m0: u32, n0: u32, k0: u32, t: u32) {
  let baseA = p.offA + batch * p.strideA;
  for (var q = t; q < BM * BK / 4u; q += 256u) {
    if (TRANS_A) {
      let k = q / (BM / 4u); let m = (q % (BM / 4u)) * 4u;
      As[q] = loadA4(baseA + (k0 + k) * p.lda + m0 + m, span(k0 + k < p.K, m0 + m, p.M));
    } else {
      let m = q / (BK / 4u); let k = (q % (BK / 4u)) * 4u;
      As[q] = loadA4(baseA + (m0 + m) * p.lda + k0 + k, span(m0 + m < p.M, k0 + k, p.K));
    }
  }
  let baseB = p.offB + batch * p.strideB;
  for (var q = t; q < BN * BK / 4u; q += 256u) {
    if (TRANS_B) {
      let n = q / (BK / 4u); let k = (q % (BK / 4u)) * 4u;
      Bs[q] = loadB4(baseB + (n0 + n) * p.ldb + k0 + k, span(n0 + n < p.N, k0 + k, p.K));
    } else {
      let k = q / (BN / 4u); let n = (q % (BN / 4u)) * 4u;
      Bs[q] = loadB4(baseB + (k0 + k) * p.ldb + n0 + n, span(k0 + k < p.K, n0 + n, p.N));
    }
  }
}

// The thread's RM x RN blocks of op(A) op(B) over all of K: acc[(r * RN + c) * 4 + i] holds row
// (ty + 16 r) * 4 + i, columns (tx + 16 c) * 4 .. + 3 of the workgroup's tile.
fn product(batch: u32, m0: u32, n0: u32, tx: u32, ty: u32) -> array<vec4f, 4u * RM * RN> {
  let t = ty * 16u + tx;
  var acc: array<vec4f, 4u * RM * RN>;
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    stage(batch, m0, n0, k0, t);
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk += 4u) {
      // b[c]: k = kk .. kk+3 (columns of the matrix) over block c's 4 columns
      var b: array<mat4x4f, RN>;
      for (var c = 0u; c < RN; c++) {
        let cx = tx + 16u * c;
        if (TRANS_B) {
          let q = cx * 4u * (BK / 4u) + kk / 4u;
          b[c] = transpose(mat4x4f(Bs[q], Bs[q + BK / 4u], Bs[q + 2u * BK / 4u], Bs[q + 3u * BK / 4u]));
        } else {
          let q = kk * (BN / 4u) + cx;
          b[c] = mat4x4f(Bs[q], Bs[q + BN / 4u], Bs[q + 2u * BN / 4u], Bs[q + 3u * BN / 4u]);
        }
      }
      for (var r = 0u; r < RM; r++) {
        // a[i]: row (ty + 16 r) * 4 + i over k = kk .. kk+3
        let ry = ty + 16u * r;
        var a: mat4x4f;
        if (TRANS_A) {
          let q = kk * (BM / 4u) + ry;
          a = transpose(mat4x4f(As[q], As[q + BM / 4u], As[q + 2u * BM / 4u], As[q + 3u * BM / 4u]));
        } else {
          let q = ry * 4u * (BK / 4u) + kk / 4u;
          a = mat4x4f(As[q], As[q + BK / 4u], As[q + 2u * BK / 4u], As[q + 3u * BK / 4u]);
        }
        for (var c = 0u; c < RN; c++) {
          for (var i = 0u; i < 4u; i++) {
            acc[(r * RN + c) * 4u + i] += b[c] * a[i];
          }
        }
      }
    }
    workgroupBarrier();
  }
  return acc;
}

// C = alpha · op(A) op(B) + beta · C for the workgroup's tile, C f32.
fn gemm_f32_out(wg: vec3u, lid: vec3u, alpha: f32) {
  let m0 = wg.y * BM;
  let n0 = wg.x * BN;
  let acc = product(wg.z, m0, n0, lid.x, lid.y);
  for (var e = 0u; e < 16u * RM * RN; e++) {
    let r = e / (16u * RN); let c = (e / 16u) % RN; let i = (e / 4u) % 4u; let j = e % 4u;
    let m = m0 + (lid.y + 16u * r) * 4u + i;
    let n = n0 + (lid.x + 16u * c) * 4u + j;
    if (m >= p.M || n >= p.N) { continue; }
    let idx = p.offC + wg.z * p.strideC + m * p.ldc + n;
    var v = alpha * acc[(r * RN + c) * 4u + i][j];
    if (p.beta != 0.0) { v += p.beta * C[idx]; }
    C[idx] = v;
  }
}

@compute @workgroup_size(16, 16)
fn gemm_f16(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  gemm_f32_out(wg, lid, p.alpha);
}

@compute @workgroup_size(16, 16)
fn gemm_f16_descaled(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  gemm_f32_out(wg, lid, p.alpha * descale[0]);
}

@compute @workgroup_size(16, 16)
fn gemm_f16_to_f16(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let m0 = wg.y * BM;
  let n0 = wg.x * BN;
  let acc = product(wg.z, m0, n0, lid.x, lid.y);
  for (var e = 0u; e < 16u * RM * RN; e++) {
    let r = e / (16u * RN); let c = (e / 16u) % RN; let i = (e / 4u) % 4u; let j = e % 4u;
    let m = m0 + (lid.y + 16u * r) * 4u + i;
    let n = n0 + (lid.x + 16u * c) * 4u + j;
    if (m >= p.M || n >= p.N) { continue; }
    let idx = p.offC + wg.z * p.strideC + m * p.ldc + n;
    var v = p.alpha * acc[(r * RN + c) * 4u + i][j];
    if (p.beta != 0.0) { v += p.beta * f32(Ch[idx]); }
    Ch[idx] = f16(v);
  }
}
