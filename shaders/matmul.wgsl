// General strided, batched matrix product, f32 accumulate:
//   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b]
// op(A) is M x K, op(B) is K x N. TRANS_A / TRANS_B pick the storage layout, so one kernel serves
// the three products training needs: y = x W^T (NT), dX = dY W (NN), dW = dY^T X (TN).
// Tiles (variant constants, src/kernels/gemm-tiles.ts): BM x BN outputs per workgroup, K in steps
// of BK, each of the (BN/TN) x (BM/TM) threads owning TM x TN outputs strided by the thread grid.
// B holds f32 (read as u32 bits), or with B_F16 f16 pairs packed in u32 words (f16 weights, f32
// math; src/kernels/f16.ts).
// Split-K (one product, a long K and a small C, e.g. LoRA's dA / dB summed over all tokens): the
// same tiles, workgroup z summing k in [z kChunk, (z + 1) kChunk) into partial z of a dense
// [S, M, N] scratch (gemm_split_k), then gemm_split_reduce adds the S partials in order z = 0..S-1
// and applies alpha and beta: the same bits on every run, whatever the scheduling.
// variant: TRANS_A, TRANS_B, B_F16, BM, BN, BK, TM, TN

struct Params {
  M: u32, N: u32, K: u32,
  lda: u32, ldb: u32, ldc: u32,
  offA: u32, offB: u32, offC: u32,
  strideA: u32, strideB: u32, strideC: u32,
  alpha: f32, beta: f32,
  kChunk: u32, // split-K: the k range of one partial (unused by gemm)
}

@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<u32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

const WX = BN / TN; // threads along N
const WY = BM / TM; // and along M
const THREADS = WX * WY;
var<workgroup> As: array<f32, BK * BM>; // [BK][BM]
var<workgroup> Bs: array<f32, BK * BN>; // [BK][BN]

fn loadA(batch: u32, m: u32, k: u32, kEnd: u32) -> f32 {
  if (m >= p.M || k >= kEnd) { return 0.0; }
  let base = p.offA + batch * p.strideA;
  if (TRANS_A) { return A[base + k * p.lda + m]; }
  return A[base + m * p.lda + k];
}

fn b_at(i: u32) -> f32 {
  if (B_F16) { return unpack2x16float(B[i >> 1u])[i & 1u]; }
  return bitcast<f32>(B[i]);
}

fn loadB(batch: u32, k: u32, n: u32, kEnd: u32) -> f32 {
  if (k >= kEnd || n >= p.N) { return 0.0; }
  let base = p.offB + batch * p.strideB;
  if (TRANS_B) { return b_at(base + n * p.ldb + k); }
  return b_at(base + k * p.ldb + n);
}

// This thread's TM x TN outputs of the tile at (m0, n0), summed over k in [kBegin, kEnd) in steps of BK.
fn tileProduct(batch: u32, m0: u32, n0: u32, kBegin: u32, kEnd: u32, lid: vec3u) -> array<f32, TM * TN> {
  let tid = lid.y * WX + lid.x;
  var acc: array<f32, TM * TN>;
  for (var k0 = kBegin; k0 < kEnd; k0 += BK) {
    // read along the contiguous dimension of each operand
    for (var e = tid; e < BM * BK; e += THREADS) {
      var mm: u32; var ka: u32;
      if (TRANS_A) { mm = e % BM; ka = e / BM; } else { mm = e / BK; ka = e % BK; }
      As[ka * BM + mm] = loadA(batch, m0 + mm, k0 + ka, kEnd);
    }
    for (var e = tid; e < BN * BK; e += THREADS) {
      var nn: u32; var kb: u32;
      if (TRANS_B) { nn = e / BK; kb = e % BK; } else { nn = e % BN; kb = e / BN; }
      Bs[kb * BN + nn] = loadB(batch, k0 + kb, n0 + nn, kEnd);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var a: array<f32, TM>;
      var b: array<f32, TN>;
      for (var i = 0u; i < TM; i++) { a[i] = As[kk * BM + lid.y + i * WY]; }
      for (var j = 0u; j < TN; j++) { b[j] = Bs[kk * BN + lid.x + j * WX]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
          acc[i * TN + j] = fma(a[i], b[j], acc[i * TN + j]);
        }
      }
    }
    workgroupBarrier();
  }
  return acc;
}

@compute @workgroup_size(WX, WY)
fn gemm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let batch = wg.z;
  let m0 = wg.y * BM;
  let n0 = wg.x * BN;
  let acc = tileProduct(batch, m0, n0, 0u, p.K, lid);
  for (var i = 0u; i < TM; i++) {
    let m = m0 + lid.y + i * WY;
    if (m >= p.M) { continue; }
    for (var j = 0u; j < TN; j++) {
      let n = n0 + lid.x + j * WX;
      if (n >= p.N) { continue; }
      let idx = p.offC + batch * p.strideC + m * p.ldc + n;
      var v = p.alpha * acc[i * TN + j];
      if (p.beta != 0.0) { v += p.beta * C[idx]; }
      C[idx] = v;
    }
  }
}

// ---- split-K: partial products over k ranges, then their ordered sum -----------------------------
// gemm_split_k: workgroup z writes its raw tile sum into C = the [S, M, N] partials (batch 0 of A
// and B; offC, ldc, alpha and beta are for the reduction).

@compute @workgroup_size(WX, WY)
fn gemm_split_k(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let m0 = wg.y * BM;
  let n0 = wg.x * BN;
  let kBegin = wg.z * p.kChunk;
  let acc = tileProduct(0u, m0, n0, kBegin, min(p.K, kBegin + p.kChunk), lid);
  for (var i = 0u; i < TM; i++) {
    let m = m0 + lid.y + i * WY;
    if (m >= p.M) { continue; }
    for (var j = 0u; j < TN; j++) {
      let n = n0 + lid.x + j * WX;
      if (n >= p.N) { continue; }
      C[(wg.z * p.M + m) * p.N + n] = acc[i * TN + j];
    }
  }
}

@group(0) @binding(0) var<storage, read> sk_parts: array<f32>;       // [S, M, N]
@group(0) @binding(1) var<storage, read_write> sk_c: array<f32>;     // C (ldc, offC)

// One thread per element of C (a 1-D index folded into a 2-D grid, see Gpu.grid); S = ceil(K / kChunk).
@compute @workgroup_size(256)
fn gemm_split_reduce(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wg.y * nwg.x + wg.x) * 256u + li;
  let size = p.M * p.N;
  if (i >= size) { return; }
  let splits = (p.K + p.kChunk - 1u) / p.kChunk;
  var sum = 0.0;
  for (var z = 0u; z < splits; z++) { sum += sk_parts[z * size + i]; }
  let idx = p.offC + (i / p.N) * p.ldc + i % p.N;
  var v = p.alpha * sum;
  if (p.beta != 0.0) { v += p.beta * sk_c[idx]; }
  sk_c[idx] = v;
}

// ---- decode: y[M <= 4, N] = alpha x W^T + beta y, memory bound -----------------------------------
// linear_forward_decode: 4 weight rows per workgroup of 256 threads; 64 threads stream one row
// (adjacent threads read adjacent columns), each summing up to 4 tokens, then a tree reduction.
// A = x (lda = K), B = W rows from offB (ldb = K), C = y (ldc, offC); TRANS_* are unused.

const GV_ROWS = 4u;
const GV_TPR = 64u;
var<workgroup> red: array<vec4f, 256>;

@compute @workgroup_size(256)
fn linear_forward_decode(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                         @builtin(local_invocation_index) li: u32) {
  let n = (wg.x + wg.y * nwg.x) * GV_ROWS + li / GV_TPR;
  let j = li % GV_TPR;
  var acc = vec4f(0.0);
  if (n < p.N) {
    // rows of x for tokens 0..3, clamped to M - 1 (their sums are then ignored)
    let a1 = min(1u, p.M - 1u) * p.lda;
    let a2 = min(2u, p.M - 1u) * p.lda;
    let a3 = min(3u, p.M - 1u) * p.lda;
    let row = p.offB + n * p.ldb;
    for (var k = j; k < p.K; k += GV_TPR) {
      let w = b_at(row + k);
      let x = vec4f(A[p.offA + k], A[p.offA + a1 + k], A[p.offA + a2 + k], A[p.offA + a3 + k]);
      acc = fma(x, vec4f(w), acc);
    }
  }
  red[li] = acc;
  workgroupBarrier();
  for (var stride = GV_TPR / 2u; stride > 0u; stride >>= 1u) {
    if (j < stride) { red[li] += red[li + stride]; }
    workgroupBarrier();
  }
  if (j == 0u && n < p.N) {
    let sum = red[li];
    for (var t = 0u; t < min(p.M, 4u); t++) {
      let idx = p.offC + t * p.ldc + n;
      var v = p.alpha * sum[t];
      if (p.beta != 0.0) { v += p.beta * C[idx]; }
      C[idx] = v;
    }
  }
}
