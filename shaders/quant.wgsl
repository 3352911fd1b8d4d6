// Block-quantized weights (q8, q4): quantize, dequantize and fused dequantize-matmuls.
// The layout and the rounding rules are documented at the top of src/kernels/quant.ts; the CPU
// twin there (quantizeHost) must stay bit-identical to quantize() below.
//
// A quantized [R, K] tensor is one array<u32>: codeWords words of codes (value i of the row-major
// [R, Kq] stored tensor in word i / CPW at bit (i % CPW) * BITS, where Kq is K rounded up to whole
// blocks and the padding is zero), then one f16 scale per block of 32 values (block b in word
// codeWords + b / 2, low half for even b). value = f32(code) * scale, exact in f32. q8 codes are
// int8 (two's complement bytes); q4 codes are -8..7 stored as code + 8.
//
// Entry points (variables that share a binding number belong to different entry points):
//   quantize                one thread per pair of blocks (a pair shares one scale word)
//   dequantize              one thread per code word
//   qlinear_forward         C[M, N] = alpha A[M, K] deq(Q)^T + beta C   (Q is [N, K])
//   qlinear_backward_input  C[M, N] = alpha A[M, K] deq(Q)   + beta C   (Q is [K, N])
//                           both: 64 x 64 output tiles, K steps of 32 (one quant block), 4 x 4
//                           outputs per thread
//   qlinear_forward_decode  the forward for M <= 4 (decode): 4 output rows per workgroup of 256
//                           threads, 64 threads stream one weight row each, then a tree reduction.
// Q4 selects q4 codes (else q8).
// variant: Q4

fn cpw() -> u32 { return select(4u, 8u, Q4); }  // codes per u32 word
fn nbits() -> u32 { return select(8u, 4u, Q4); }

// Code i (0..CPW-1) of a word, as a signed integer value.
fn codeAt(word: u32, i: u32) -> f32 {
  if (Q4) { return f32((word >> (i * 4u)) & 15u) - 8.0; }
  return f32(bitcast<i32>(word << (24u - i * 8u)) >> 24u);
}

// f16 bits to f32, by integer ops (exact, subnormals kept; no reliance on unpack2x16float).
fn halfToF32(h: u32) -> f32 {
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  var v: f32;
  if (e == 0u) { v = f32(m) * 5.9604644775390625e-8; } // m * 2^-24
  else { v = bitcast<f32>(((e + 112u) << 23u) | (m << 13u)); }
  return select(v, -v, (h & 0x8000u) != 0u);
}

// f32 to f16 bits, round to nearest even, clamped to the finite range.
fn f32ToHalf(x: f32) -> u32 {
  let b = bitcast<u32>(clamp(x, -65504.0, 65504.0));
  let sign = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  if (a < 0x38800000u) { // below 2^-14: f16 subnormal; round() is half-to-even in WGSL
    return sign | u32(round(bitcast<f32>(a) * 16777216.0));
  }
  let r = a - 0x38000000u;
  return sign | ((r + 0xfffu + ((r >> 13u) & 1u)) >> 13u);
}

// ---- quantize ---------------------------------------------------------------------------------

struct QuantParams {
  nblk: u32,      // blocks (stored values / 32)
  codeWords: u32, // words of codes; scales follow
  mul: f32,       // q8: fround(1/127) (scale = absmax * mul); q4: -1/8 (scale = extreme * mul)
  K: u32,         // columns of W
  Kq: u32,        // stored values per row (K rounded up to whole blocks)
}

@group(0) @binding(0) var<storage, read> W: array<f32>;
@group(0) @binding(1) var<storage, read_write> Qw: array<u32>;
@group(1) @binding(0) var<uniform> qp: QuantParams;

// round(x / s) half away from zero, exact: q +- 0.5 has at most 9 significant bits and s at most
// 11, so (q +- 0.5) * |s| is exact in f32 and the comparisons decide the rounding exactly; the
// first guess (through an inexact reciprocal) is at most one off.
fn encode(x: f32, s: f32, as_: f32, inv: f32) -> i32 {
  if (as_ == 0.0) { return 0; }
  let ax = abs(x);
  var q = min(floor(ax * inv + 0.5), 200.0);
  if (ax >= (q + 0.5) * as_) { q += 1.0; }
  else if (q > 0.0 && ax < (q - 0.5) * as_) { q -= 1.0; }
  var qi = i32(q);
  if ((x < 0.0) != (s < 0.0)) { qi = -qi; }
  if (Q4) { return clamp(qi, -8, 7); }
  return clamp(qi, -127, 127);
}

// Value i of block b: the row's padding reads as zero.
fn blockValue(b: u32, i: u32) -> f32 {
  let col = (b * 32u) % qp.Kq + i;
  if (col >= qp.K) { return 0.0; }
  return W[(b * 32u) / qp.Kq * qp.K + col];
}

// Quantizes block b (codes written), returns its f16 scale bits.
fn quantBlock(b: u32) -> u32 {
  var ext = 0.0;    // |extreme|
  var best = 0.0;   // q4: the extreme value with its sign (ties: the positive one)
  for (var i = 0u; i < 32u; i++) {
    let x = blockValue(b, i);
    let a = abs(x);
    if (a > ext || (a == ext && x > best)) { ext = a; best = x; }
  }
  var h = 0u;
  if (ext > 0.0) {
    var limit = 127.5;
    if (Q4) { h = f32ToHalf(best * qp.mul); limit = 8.0; }
    else { h = f32ToHalf(ext * qp.mul); }
    // q8: the f16 rounding of the scale may not push the extreme past the last code; q4: the
    // scale magnitude is rounded up (|m| <= 8 |scale|). The comparison is exact.
    let mag = h & 0x7fffu;
    if (ext > limit * halfToF32(mag) && mag < 0x7bffu) { h += 1u; }
  }
  let s = halfToF32(h);
  let as_ = abs(s);
  let inv = select(0.0, 1.0 / as_, as_ > 0.0);
  let per = cpw();
  let words = 32u / per;
  for (var w = 0u; w < words; w++) {
    var word = 0u;
    for (var i = 0u; i < per; i++) {
      let q = encode(blockValue(b, w * per + i), s, as_, inv);
      if (Q4) { word |= u32(q + 8) << (i * 4u); }
      else { word |= (bitcast<u32>(q) & 0xffu) << (i * 8u); }
    }
    Qw[b * words + w] = word;
  }
  return h;
}

@compute @workgroup_size(64)
fn quantize(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
            @builtin(local_invocation_index) li: u32) {
  let pair = (wg.x + wg.y * nwg.x) * 64u + li;
  let b0 = pair * 2u;
  if (b0 >= qp.nblk) { return; }
  let h0 = quantBlock(b0);
  var h1 = 0u;
  if (b0 + 1u < qp.nblk) { h1 = quantBlock(b0 + 1u); }
  Qw[qp.codeWords + pair] = h0 | (h1 << 16u);
}

// ---- dequantize -------------------------------------------------------------------------------

struct DeqParams {
  codeWords: u32,
  K: u32,  // columns of D
  Kq: u32, // stored values per row
}

@group(0) @binding(0) var<storage, read> Qd: array<u32>;
@group(0) @binding(1) var<storage, read_write> D: array<f32>;
@group(1) @binding(0) var<uniform> dp: DeqParams;

@compute @workgroup_size(256)
fn dequantize(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_index) li: u32) {
  let w = (wg.x + wg.y * nwg.x) * 256u + li;
  if (w >= dp.codeWords) { return; }
  let per = cpw();
  let v0 = w * per;
  let blk = v0 / 32u;
  let s = halfToF32((Qd[dp.codeWords + blk / 2u] >> ((blk & 1u) * 16u)) & 0xffffu);
  let word = Qd[w];
  let row = v0 / dp.Kq;
  let col = v0 % dp.Kq;
  for (var i = 0u; i < per; i++) {
    if (col + i < dp.K) { D[row * dp.K + col + i] = codeAt(word, i) * s; }
  }
}

// ---- fused dequantize-matmul ------------------------------------------------------------------

struct MatParams {
  M: u32, N: u32, K: u32, // C is M x N, reduction over K
  Kq: u32,                // stored values per row of Q (its columns rounded up to whole blocks)
  codeWords: u32,
  lda: u32, ldc: u32, offA: u32, offC: u32,
  alpha: f32, beta: f32,
}

@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> Q: array<u32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(1) @binding(0) var<uniform> p: MatParams;

fn scaleOf(blk: u32) -> f32 {
  return halfToF32((Q[p.codeWords + blk / 2u] >> ((blk & 1u) * 16u)) & 0xffffu);
}

const BM = 64u;
const BN = 64u;
const BK = 32u;
var<workgroup> As: array<f32, 2048>; // [BK][BM]
var<workgroup> Bs: array<f32, 2048>; // [BK][BN]

@compute @workgroup_size(16, 16)
fn qlinear_forward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  qmatmul(wg, lid, false);
}

@compute @workgroup_size(16, 16)
fn qlinear_backward_input(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  qmatmul(wg, lid, true);
}

fn qmatmul(wg: vec3u, lid: vec3u, backward: bool) {
  let m0 = wg.y * BM;
  let n0 = wg.x * BN;
  let tid = lid.y * 16u + lid.x;
  let per = cpw();
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    for (var i = 0u; i < 8u; i++) {
      let e = tid + i * 256u;
      let mm = e / BK;
      let ka = e % BK;
      var v = 0.0;
      if (m0 + mm < p.M && k0 + ka < p.K) { v = A[p.offA + (m0 + mm) * p.lda + k0 + ka]; }
      As[ka * BM + mm] = v;
    }
    if (!backward) {
      // rows n0.. of Q, columns k0..k0+31: exactly one block per row
      let wpb = 32u / per;
      for (var e = tid; e < BN * wpb; e += 256u) {
        let nn = e / wpb;
        let wi = e % wpb;
        let n = n0 + nn;
        if (n < p.N) {
          let blk = n * (p.Kq / 32u) + k0 / 32u;
          let word = Q[blk * wpb + wi];
          let s = scaleOf(blk);
          for (var i = 0u; i < per; i++) { Bs[(wi * per + i) * BN + nn] = codeAt(word, i) * s; }
        } else {
          for (var i = 0u; i < per; i++) { Bs[(wi * per + i) * BN + nn] = 0.0; }
        }
      }
    } else {
      // rows k0..k0+31 of Q (the reduction), columns n0..n0+63 (two blocks per row)
      let wpr = BN / per;
      for (var e = tid; e < BK * wpr; e += 256u) {
        let kk = e / wpr;
        let wi = e % wpr;
        let r = k0 + kk;
        let c = n0 + wi * per;
        if (r < p.K && c < p.N) {
          let v = r * p.Kq + c;
          let word = Q[v / per];
          let s = scaleOf(v / 32u);
          for (var i = 0u; i < per; i++) { Bs[kk * BN + wi * per + i] = codeAt(word, i) * s; }
        } else {
          for (var i = 0u; i < per; i++) { Bs[kk * BN + wi * per + i] = 0.0; }
        }
      }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        a[i] = As[kk * BM + lid.y + i * 16u];
        b[i] = Bs[kk * BN + lid.x + i * 16u];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
          acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]);
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y + i * 16u;
    if (m >= p.M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + lid.x + j * 16u;
      if (n >= p.N) { continue; }
      let idx = p.offC + m * p.ldc + n;
      var v = p.alpha * acc[i * 4u + j];
      if (p.beta != 0.0) { v += p.beta * C[idx]; }
      C[idx] = v;
    }
  }
}

// ---- decode path: y[M <= 4, N] = x deq(Q)^T, memory bound -----------------------------------

const GV_ROWS = 4u;  // output rows (weight rows) per workgroup
const GV_TPR = 64u;  // threads per row
var<workgroup> red: array<vec4f, 256>;

@compute @workgroup_size(256)
fn qlinear_forward_decode(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
         @builtin(local_invocation_index) li: u32) {
  let n = (wg.x + wg.y * nwg.x) * GV_ROWS + li / GV_TPR;
  let j = li % GV_TPR;
  let per = cpw();
  var acc = vec4f(0.0);
  if (n < p.N) {
    let wpr = p.Kq / per;
    // rows of A for tokens 0..3, clamped to M - 1 (their sums are then ignored)
    let a0 = p.offA;
    let a1 = p.offA + min(1u, p.M - 1u) * p.lda;
    let a2 = p.offA + min(2u, p.M - 1u) * p.lda;
    let a3 = p.offA + min(3u, p.M - 1u) * p.lda;
    for (var w = j; w < wpr; w += GV_TPR) {
      let word = Q[n * wpr + w];
      let k = w * per;
      let s = scaleOf((n * p.Kq + k) / 32u);
      for (var i = 0u; i < per; i++) {
        let v = codeAt(word, i) * s;
        // padding columns hold code 0: read any finite column of A there
        let c = min(k + i, p.K - 1u);
        let x = vec4f(A[a0 + c], A[a1 + c], A[a2 + c], A[a3 + c]);
        acc = fma(x, vec4f(v), acc);
      }
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
