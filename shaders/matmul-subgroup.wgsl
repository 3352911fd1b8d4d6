// The subgroup-matrix tier's matrix product (chromium-experimental-subgroup-matrix):
//   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b]
// op(A) is M x K, op(B) is K x N; TRANS_A / TRANS_B pick the storage layout, so one kernel serves
// y = x W^T (NT), dX = dY W (NN) and dW = dY^T X (TN).
// The launcher puts the directives in front (enables, the uniformity diagnostic off: offsets into
// workgroup memory depend on the subgroup, which WGSL's analysis cannot see is subgroup-uniform)
// and the element types: ST the matrix components (f16, or f32 where the device only multiplies
// f32), AT / BT / CT the storage of A, B and C (f32 or f16). It also rewrites the load/store calls
// for Dawns that spell majorness as a boolean argument (src/kernels/subgroup-matrix.ts).
// The device's matrix shape CM x CN x CK (16x16x16 NVIDIA/AMD, 8x16x16 Intel, 8x8x8 Apple) sets
// the tiles: SGM x SGN subgroups per workgroup, each holding TM x TN result matrices (variant
// constants, src/kernels/gemm-tiles.ts; by default 2 x 2 and 4 x 4, so a workgroup covers
// 8 CM x 8 CN outputs, 128 x 128 at 16x16). K advances 32 at a time through workgroup
// memory, read 4 elements at a time along each operand's contiguous dimension, converted to ST and
// kept k-contiguous (A as [m][k], B as [n][k], read column-major as the right matrix); rows are
// padded against bank conflicts. Results leave through one scratch matrix per subgroup, where
// alpha, beta and the bounds are applied.
// SG is the adapter's largest subgroup size: workgroups are whole subgroups.
// A and B are bound as vec4 arrays. With VEC the launcher guarantees that leading dimensions,
// offsets, batch strides and the contiguous extents are multiples of 4 (whole vector loads);
// without it each element is read and bounds-checked on its own.
// variant: TRANS_A, TRANS_B, VEC, CM, CN, CK, SG, SGM, SGN, TM, TN

struct Params {
  M: u32, N: u32, K: u32,
  lda: u32, ldb: u32, ldc: u32,
  offA: u32, offB: u32, offC: u32,
  strideA: u32, strideB: u32, strideC: u32,
  alpha: f32, beta: f32,
}

@group(0) @binding(0) var<storage, read> A: array<vec4<AT>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<BT>>;
@group(0) @binding(2) var<storage, read_write> C: array<CT>;
@group(1) @binding(0) var<uniform> p: Params;

const BM = SGM * TM * CM;
const BN = SGN * TN * CN;
const BK = 32u;
const LD = BK + 8u; // row stride of the staged tiles (a multiple of 16 bytes)

var<workgroup> As: array<ST, BM * LD>;
var<workgroup> Bs: array<ST, BN * LD>;
var<workgroup> Cs: array<f32, SGM * SGN * CM * CN>;

alias Left = subgroup_matrix_left<ST, CK, CM>;
alias Right = subgroup_matrix_right<ST, CN, CK>;
alias Result = subgroup_matrix_result<f32, CN, CM>;

// Elements i .. i+3 of A, `valid` of them inside (the rest read as zero). With VEC the launcher
// guarantees i % 4 == 0 and valid 0 or 4: one vector load.
fn loadA4(i: u32, valid: u32) -> vec4<ST> {
  if (VEC) {
    if (valid == 0u) { return vec4<ST>(); }
    return vec4<ST>(A[i >> 2u]);
  }
  var v = vec4<ST>();
  for (var j = 0u; j < 4u; j++) {
    if (j < valid) { v[j] = ST(A[(i + j) >> 2u][(i + j) & 3u]); }
  }
  return v;
}

fn loadB4(i: u32, valid: u32) -> vec4<ST> {
  if (VEC) {
    if (valid == 0u) { return vec4<ST>(); }
    return vec4<ST>(B[i >> 2u]);
  }
  var v = vec4<ST>();
  for (var j = 0u; j < 4u; j++) {
    if (j < valid) { v[j] = ST(B[(i + j) >> 2u][(i + j) & 3u]); }
  }
  return v;
}

// How many of the 4 elements from `start` lie below `end` (0 when the line itself is outside).
fn span(inside: bool, start: u32, end: u32) -> u32 {
  if (!inside || start >= end) { return 0u; }
  return min(4u, end - start);
}

// Stage op(A)[m0.., k0..] and op(B)[k0.., n0..] (zeros outside), 4 elements at a time along each
// operand's contiguous dimension.
fn stage(batch: u32, m0: u32, n0: u32, k0: u32, lid: u32, threads: u32) {
  let baseA = p.offA + batch * p.strideA;
  for (var q = lid; q < BM * BK / 4u; q += threads) {
    if (TRANS_A) {
      let m = (q % (BM / 4u)) * 4u; let k = q / (BM / 4u);
      let v = loadA4(baseA + (k0 + k) * p.lda + m0 + m, span(k0 + k < p.K, m0 + m, p.M));
      for (var j = 0u; j < 4u; j++) { As[(m + j) * LD + k] = v[j]; }
    } else {
      let k = (q % (BK / 4u)) * 4u; let m = q / (BK / 4u);
      let v = loadA4(baseA + (m0 + m) * p.lda + k0 + k, span(m0 + m < p.M, k0 + k, p.K));
      for (var j = 0u; j < 4u; j++) { As[m * LD + k + j] = v[j]; }
    }
  }
  let baseB = p.offB + batch * p.strideB;
  for (var q = lid; q < BN * BK / 4u; q += threads) {
    if (TRANS_B) {
      let k = (q % (BK / 4u)) * 4u; let n = q / (BK / 4u);
      let v = loadB4(baseB + (n0 + n) * p.ldb + k0 + k, span(n0 + n < p.N, k0 + k, p.K));
      for (var j = 0u; j < 4u; j++) { Bs[n * LD + k + j] = v[j]; }
    } else {
      let n = (q % (BN / 4u)) * 4u; let k = q / (BN / 4u);
      let v = loadB4(baseB + (k0 + k) * p.ldb + n0 + n, span(k0 + k < p.K, n0 + n, p.N));
      for (var j = 0u; j < 4u; j++) { Bs[(n + j) * LD + k] = v[j]; }
    }
  }
}

@compute @workgroup_size(SGM * SGN * SG)
fn gemm_subgroup_matrix(
  @builtin(workgroup_id) wg: vec3u,
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_id) sg: u32,
  @builtin(subgroup_invocation_id) lane: u32,
  @builtin(subgroup_size) sgSize: u32,
) {
  let batch = wg.z;
  let m0 = wg.y * BM;
  let n0 = wg.x * BN;
  let sgm = sg % SGM;
  let sgn = sg / SGM;
  var acc: array<Result, TM * TN>;
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    stage(batch, m0, n0, k0, lid, SGM * SGN * SG);
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk += CK) {
      var lhs: array<Left, TM>;
      for (var i = 0u; i < TM; i++) {
        let o = (sgm * TM + i) * CM * LD + kk;
        lhs[i] = subgroupMatrixLoad<Left, row_major>(&As, o, LD);
      }
      for (var j = 0u; j < TN; j++) {
        let o = (sgn * TN + j) * CN * LD + kk;
        let rhs = subgroupMatrixLoad<Right, col_major>(&Bs, o, LD);
        for (var i = 0u; i < TM; i++) {
          acc[i * TN + j] = subgroupMatrixMultiplyAccumulate(lhs[i], rhs, acc[i * TN + j]);
        }
      }
    }
    workgroupBarrier();
  }

  let scratch = sg * CM * CN;
  let baseC = p.offC + batch * p.strideC;
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      subgroupMatrixStore<row_major>(&Cs, scratch, acc[i * TN + j], CN);
      workgroupBarrier();
      let mBase = m0 + (sgm * TM + i) * CM;
      let nBase = n0 + (sgn * TN + j) * CN;
      for (var e = lane; e < CM * CN; e += sgSize) {
        let m = mBase + e / CN;
        let n = nBase + e % CN;
        if (m < p.M && n < p.N) {
          let idx = baseC + m * p.ldc + n;
          var v = p.alpha * Cs[scratch + e];
          if (p.beta != 0.0) { v += p.beta * f32(C[idx]); }
          C[idx] = CT(v);
        }
      }
      workgroupBarrier();
    }
  }
}
