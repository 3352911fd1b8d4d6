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
// the tiles: 2 x 2 subgroups per workgroup, each holding 4 x 4 result matrices, so a workgroup
// covers 8 CM x 8 CN outputs (128 x 128 at 16x16). K advances 32 at a time through workgroup
// memory, where both operands are converted to ST and kept k-contiguous (A as [m][k], B as
// [n][k], read column-major as the right matrix); rows are padded against bank conflicts. Results
// leave through one scratch matrix per subgroup, where alpha, beta and the bounds are applied.
// SG is the adapter's largest subgroup size: workgroups are whole subgroups.
// variant: TRANS_A, TRANS_B, CM, CN, CK, SG

struct Params {
  M: u32, N: u32, K: u32,
  lda: u32, ldb: u32, ldc: u32,
  offA: u32, offB: u32, offC: u32,
  strideA: u32, strideB: u32, strideC: u32,
  alpha: f32, beta: f32,
}

@group(0) @binding(0) var<storage, read> A: array<AT>;
@group(0) @binding(1) var<storage, read> B: array<BT>;
@group(0) @binding(2) var<storage, read_write> C: array<CT>;
@group(1) @binding(0) var<uniform> p: Params;

const SGM = 2u; // subgroups along M
const SGN = 2u; // subgroups along N
const TM = 4u; // result matrices per subgroup along M
const TN = 4u; // and along N
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

// Stage op(A)[m0.., k0..] and op(B)[k0.., n0..] (zeros outside), reading along each operand's
// contiguous dimension.
fn stage(batch: u32, m0: u32, n0: u32, k0: u32, lid: u32, threads: u32) {
  let baseA = p.offA + batch * p.strideA;
  for (var e = lid; e < BM * BK; e += threads) {
    var m: u32; var k: u32;
    if (TRANS_A) { m = e % BM; k = e / BM; } else { k = e % BK; m = e / BK; }
    var v = ST(0);
    if (m0 + m < p.M && k0 + k < p.K) {
      if (TRANS_A) { v = ST(A[baseA + (k0 + k) * p.lda + m0 + m]); } else { v = ST(A[baseA + (m0 + m) * p.lda + k0 + k]); }
    }
    As[m * LD + k] = v;
  }
  let baseB = p.offB + batch * p.strideB;
  for (var e = lid; e < BN * BK; e += threads) {
    var n: u32; var k: u32;
    if (TRANS_B) { k = e % BK; n = e / BK; } else { n = e % BN; k = e / BN; }
    var v = ST(0);
    if (n0 + n < p.N && k0 + k < p.K) {
      if (TRANS_B) { v = ST(B[baseB + (n0 + n) * p.ldb + k0 + k]); } else { v = ST(B[baseB + (k0 + k) * p.ldb + n0 + n]); }
    }
    Bs[n * LD + k] = v;
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
