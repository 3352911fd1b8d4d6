// Causal grouped-query attention, flash style, f32, forward and backward (src/kernels/attention.ts
// picks the tiles, which are the variant constants; entry points alias binding numbers, each uses
// one consistent set).
//
// Layouts: q, out, dO, dq [B, Sq, Hq, Dh]; k, v, dk, dv [B, cap, Hkv, Dh]; lse [B, Hq, Sq];
// LD [B, Hq, Sq, 2] = (lse, D = rowsum(dO * out)) written by attention_backward_prep.
// Query head h reads kv head h / G (G = Hq / Hkv). A workgroup of the forward and dQ passes owns
// BR "rows" of one (batch, kv head): row = i * G + g (query i, head kvh * G + g), so the G heads
// sharing a kv head read each K/V tile once. Key j is visible to query i iff j < kvLen,
// j <= qOffset + i, j > qOffset + i - window (window > 0; HF sliding_window_overlay) and, with
// segments, seg[b, i] == seg[b, j].
//
// Scores: u = scale * q.k; s = softcap * tanh(u / softcap) when softcap > 0, else u. Forward is
// an online softmax over key tiles of BC keys; backward recomputes P = exp(s - lse) (FA-2):
// dS = P * (dP - D) * (1 - tanh^2) * scale, one pass over key tiles for dK/dV (looping over the
// query rows of the whole group, so no atomics) and one over query tiles for dQ.
// A row that sees no key writes out = 0, lse = NEG (finite) and zero gradients.

// DH   head dim
// DP   row stride in workgroup memory (DH rounded up to odd: no bank conflicts)
// BR   query rows per tile
// BC   keys per tile
// TD   threads sharing one accumulator row (each owns columns t, t+TD, ...)
// NT   threads per workgroup
// DPT  accumulator columns per thread = ceil(DH / TD)
// variant: DH, DP, BR, BC, TD, NT, DPT
const EVEN: bool = (DH % TD) == 0u;
const NEG: f32 = -1.0e30;

struct Params {
  Sq: u32, kvLen: u32, cap: u32, Hq: u32,
  Hkv: u32, G: u32, qOffset: i32, window: u32,
  scale: f32, softcap: f32, hasSeg: u32, writeLse: u32,
  tiles: u32, total: u32, B: u32, pad: u32,
}

@group(1) @binding(0) var<uniform> p: Params;

fn visible(b: u32, i: u32, j: u32) -> bool {
  if (j >= p.kvLen) { return false; }
  let qi = p.qOffset + i32(i);
  let jj = i32(j);
  if (jj > qi) { return false; }
  if (p.window > 0u && jj <= qi - i32(p.window)) { return false; }
  if (p.hasSeg != 0u && seg[b * p.Sq + i] != seg[b * p.Sq + j]) { return false; }
  return true;
}

// tanh(x / softcap) for the capped score; |x / softcap| is clamped where tanh is already +-1 in f32.
fn capTanh(u: f32) -> f32 {
  return tanh(clamp(u / p.softcap, -15.0, 15.0));
}

// P and dS (w.r.t. the raw dot q.k) of one visible (query row, key); ld = (lse, D).
fn probGrad(qk: f32, dp: f32, ld: vec2f) -> vec2f {
  var s = qk * p.scale;
  var dcap = 1.0;
  if (p.softcap > 0.0) {
    let th = capTanh(s);
    s = p.softcap * th;
    dcap = 1.0 - th * th;
  }
  let pr = exp(s - ld.x);
  return vec2f(pr, pr * (dp - ld.y) * dcap * p.scale);
}

fn qIndex(b: u32, i: u32, h: u32) -> u32 { return ((b * p.Sq + i) * p.Hq + h) * DH; }
fn kvIndex(b: u32, j: u32, kvh: u32) -> u32 { return ((b * p.cap + j) * p.Hkv + kvh) * DH; }

// First and one-past-last key a tile of query rows [row0, row0 + BR) can see.
fn keyRange(row0: u32) -> vec2i {
  let rows = p.Sq * p.G;
  let iFirst = row0 / p.G;
  let iLast = (min(row0 + BR, rows) - 1u) / p.G;
  let jEnd = min(i32(p.kvLen), p.qOffset + i32(iLast) + 1);
  var jBeg = 0;
  if (p.window > 0u) { jBeg = max(0, p.qOffset + i32(iFirst) - i32(p.window) + 1); }
  return vec2i(jBeg, jEnd);
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> seg: array<i32>;

// ---- forward ------------------------------------------------------------------------------------

@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;

const SPT: u32 = (BC + TD - 1u) / TD; // scores per thread and key tile

var<workgroup> fQ: array<f32, BR * DP>;
var<workgroup> fKV: array<f32, BC * DP>;  // K tile, then V tile
var<workgroup> fP: array<f32, BR * BC>;   // probabilities relative to the running max
var<workgroup> fM: array<f32, BR * TD>;   // per-thread partial row max, at the end partial row sums

@compute @workgroup_size(NT)
fn attention_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                     @builtin(local_invocation_index) tid: u32) {
  let w = wg.x + wg.y * nwg.x;
  if (w >= p.total) { return; }
  let tile = w % p.tiles;
  let kvh = (w / p.tiles) % p.Hkv;
  let b = w / (p.tiles * p.Hkv);
  let r = tid / TD;
  let t = tid % TD;
  let rows = p.Sq * p.G;
  let row0 = tile * BR;
  let live = row0 + r < rows;
  let i = (row0 + r) / p.G;
  let h = kvh * p.G + (row0 + r) % p.G;

  for (var e = tid; e < BR * DH; e += NT) {
    let rr = e / DH;
    let d = e % DH;
    var x = 0.0;
    if (row0 + rr < rows) {
      x = q[qIndex(b, (row0 + rr) / p.G, kvh * p.G + (row0 + rr) % p.G) + d];
    }
    fQ[rr * DP + d] = x;
  }

  let range = keyRange(row0);
  var m = NEG;
  var lpart = 0.0;
  var acc: array<f32, DPT>;
  for (var j0 = range.x; j0 < range.y; j0 += i32(BC)) {
    workgroupBarrier();
    for (var e = tid; e < BC * DH; e += NT) {
      let c = e / DH;
      let d = e % DH;
      let j = u32(j0) + c;
      var x = 0.0;
      if (j < p.kvLen) { x = k[kvIndex(b, j, kvh) + d]; }
      fKV[c * DP + d] = x;
    }
    workgroupBarrier();
    var sc: array<f32, SPT>;
    var mLoc = NEG;
    for (var n = 0u; n < SPT; n++) {
      let c = t + n * TD;
      var s = NEG;
      if (c < BC && live && visible(b, i, u32(j0) + c)) {
        var dot = 0.0;
        for (var d = 0u; d < DH; d++) { dot = fma(fQ[r * DP + d], fKV[c * DP + d], dot); }
        s = dot * p.scale;
        if (p.softcap > 0.0) { s = p.softcap * capTanh(s); }
      }
      sc[n] = s;
      mLoc = max(mLoc, s);
    }
    fM[r * TD + t] = mLoc;
    workgroupBarrier();
    for (var e = tid; e < BC * DH; e += NT) {
      let c = e / DH;
      let d = e % DH;
      let j = u32(j0) + c;
      var x = 0.0;
      if (j < p.kvLen) { x = v[kvIndex(b, j, kvh) + d]; }
      fKV[c * DP + d] = x;
    }
    var mNew = m;
    for (var u = 0u; u < TD; u++) { mNew = max(mNew, fM[r * TD + u]); }
    let alpha = exp(m - mNew);
    m = mNew;
    lpart *= alpha;
    for (var n = 0u; n < SPT; n++) {
      let c = t + n * TD;
      if (c < BC) {
        var pr = 0.0;
        if (sc[n] > 0.5 * NEG) { pr = exp(sc[n] - mNew); }
        fP[r * BC + c] = pr;
        lpart += pr;
      }
    }
    for (var n = 0u; n < DPT; n++) { acc[n] *= alpha; }
    workgroupBarrier();
    for (var c = 0u; c < BC; c++) {
      let pr = fP[r * BC + c];
      for (var n = 0u; n < DPT; n++) {
        let d = t + n * TD;
        if (EVEN || d < DH) { acc[n] = fma(pr, fKV[c * DP + d], acc[n]); }
      }
    }
  }

  fM[r * TD + t] = lpart; // every thread passed the last barrier after reading fM
  workgroupBarrier();
  if (!live) { return; }
  var l = 0.0;
  for (var u = 0u; u < TD; u++) { l += fM[r * TD + u]; }
  let inv = select(0.0, 1.0 / l, l > 0.0);
  let ob = qIndex(b, i, h);
  for (var n = 0u; n < DPT; n++) {
    let d = t + n * TD;
    if (EVEN || d < DH) { out[ob + d] = acc[n] * inv; }
  }
  if (t == 0u && p.writeLse != 0u) {
    lse[(b * p.Hq + h) * p.Sq + i] = select(NEG, m + log(l), l > 0.0);
  }
}

// ---- backward: LD = (lse, rowsum(dO * out)) per row -------------------------------------------

@group(0) @binding(0) var<storage, read> pdO: array<f32>;
@group(0) @binding(1) var<storage, read> pOut: array<f32>;
@group(0) @binding(2) var<storage, read> pLse: array<f32>;
@group(0) @binding(3) var<storage, read_write> pLD: array<f32>;

@compute @workgroup_size(64)
fn attention_backward_prep(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                           @builtin(local_invocation_index) tid: u32) {
  let row = (wg.x + wg.y * nwg.x) * 64u + tid; // ((b * Sq + i) * Hq + h)
  if (row >= p.B * p.Sq * p.Hq) { return; }
  let h = row % p.Hq;
  let i = (row / p.Hq) % p.Sq;
  let b = row / (p.Hq * p.Sq);
  var D = 0.0;
  for (var d = 0u; d < DH; d++) { D = fma(pdO[row * DH + d], pOut[row * DH + d], D); }
  let o = (b * p.Hq + h) * p.Sq + i;
  pLD[2u * o] = pLse[o];
  pLD[2u * o + 1u] = D;
}

// ---- backward: dK, dV over one key tile, all query rows of the group ------------------------------

@group(0) @binding(4) var<storage, read> dO: array<f32>;
@group(0) @binding(5) var<storage, read> LD: array<f32>;
@group(0) @binding(6) var<storage, read_write> dk: array<f32>;
@group(0) @binding(7) var<storage, read_write> dv: array<f32>;

var<workgroup> kK: array<f32, BC * DP>;
var<workgroup> kV: array<f32, BC * DP>;
var<workgroup> kQ: array<f32, BR * DP>;
var<workgroup> kdO: array<f32, BR * DP>;
var<workgroup> kP: array<f32, BR * BC>;
var<workgroup> kdS: array<f32, BR * BC>;
var<workgroup> kLD: array<f32, BR * 2u>;

@compute @workgroup_size(NT)
fn attention_backward_kv(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                         @builtin(local_invocation_index) tid: u32) {
  let w = wg.x + wg.y * nwg.x;
  if (w >= p.total) { return; }
  let tile = w % p.tiles;
  let kvh = (w / p.tiles) % p.Hkv;
  let b = w / (p.tiles * p.Hkv);
  let c = tid / TD;
  let t = tid % TD;
  let j0 = tile * BC;

  for (var e = tid; e < BC * DH; e += NT) {
    let cc = e / DH;
    let d = e % DH;
    let j = j0 + cc;
    var xk = 0.0;
    var xv = 0.0;
    if (j < p.kvLen) {
      xk = k[kvIndex(b, j, kvh) + d];
      xv = v[kvIndex(b, j, kvh) + d];
    }
    kK[cc * DP + d] = xk;
    kV[cc * DP + d] = xv;
  }

  // queries that can see a key of [j0, jLast]: qOffset + i >= j0 and, with a window,
  // qOffset + i < jLast + window.
  var iBeg = max(0, i32(j0) - p.qOffset);
  var iEnd = i32(p.Sq);
  if (j0 >= p.kvLen) { iEnd = 0; }
  if (p.window > 0u) {
    let jLast = i32(min(j0 + BC, p.kvLen)) - 1;
    iEnd = min(iEnd, jLast + i32(p.window) - p.qOffset);
  }
  iBeg = min(iBeg, i32(p.Sq));
  iEnd = max(iEnd, iBeg);
  let rowEnd = u32(iEnd) * p.G;

  var ak: array<f32, DPT>;
  var av: array<f32, DPT>;
  for (var row0 = u32(iBeg) * p.G; row0 < rowEnd; row0 += BR) {
    workgroupBarrier();
    for (var e = tid; e < BR * DH; e += NT) {
      let rr = e / DH;
      let d = e % DH;
      var xq = 0.0;
      var xo = 0.0;
      if (row0 + rr < rowEnd) {
        let qi = qIndex(b, (row0 + rr) / p.G, kvh * p.G + (row0 + rr) % p.G) + d;
        xq = q[qi];
        xo = dO[qi];
      }
      kQ[rr * DP + d] = xq;
      kdO[rr * DP + d] = xo;
    }
    for (var rr = tid; rr < BR; rr += NT) {
      var ld = vec2f(0.0);
      if (row0 + rr < rowEnd) {
        let li = (b * p.Hq + kvh * p.G + (row0 + rr) % p.G) * p.Sq + (row0 + rr) / p.G;
        ld = vec2f(LD[2u * li], LD[2u * li + 1u]);
      }
      kLD[2u * rr] = ld.x;
      kLD[2u * rr + 1u] = ld.y;
    }
    workgroupBarrier();
    for (var e = tid; e < BR * BC; e += NT) {
      let rr = e / BC;
      let cc = e % BC;
      var pg = vec2f(0.0);
      if (row0 + rr < rowEnd && visible(b, (row0 + rr) / p.G, j0 + cc)) {
        var qk = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < DH; d++) {
          qk = fma(kQ[rr * DP + d], kK[cc * DP + d], qk);
          dp = fma(kdO[rr * DP + d], kV[cc * DP + d], dp);
        }
        pg = probGrad(qk, dp, vec2f(kLD[2u * rr], kLD[2u * rr + 1u]));
      }
      kP[e] = pg.x;
      kdS[e] = pg.y;
    }
    workgroupBarrier();
    for (var rr = 0u; rr < BR; rr++) {
      let pr = kP[rr * BC + c];
      let ds = kdS[rr * BC + c];
      for (var n = 0u; n < DPT; n++) {
        let d = t + n * TD;
        if (EVEN || d < DH) {
          av[n] = fma(pr, kdO[rr * DP + d], av[n]);
          ak[n] = fma(ds, kQ[rr * DP + d], ak[n]);
        }
      }
    }
  }

  let j = j0 + c;
  if (j >= p.cap) { return; }
  let base = kvIndex(b, j, kvh);
  for (var n = 0u; n < DPT; n++) {
    let d = t + n * TD;
    if (EVEN || d < DH) {
      dk[base + d] = ak[n];
      dv[base + d] = av[n];
    }
  }
}

// ---- backward: dQ over one tile of query rows (dO and LD as above) ---------------------------------

@group(0) @binding(6) var<storage, read_write> dq: array<f32>;

var<workgroup> qQ: array<f32, BR * DP>;
var<workgroup> qdO: array<f32, BR * DP>;
var<workgroup> qK: array<f32, BC * DP>;
var<workgroup> qV: array<f32, BC * DP>;
var<workgroup> qdS: array<f32, BR * BC>;

@compute @workgroup_size(NT)
fn attention_backward_q(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                        @builtin(local_invocation_index) tid: u32) {
  let w = wg.x + wg.y * nwg.x;
  if (w >= p.total) { return; }
  let tile = w % p.tiles;
  let kvh = (w / p.tiles) % p.Hkv;
  let b = w / (p.tiles * p.Hkv);
  let r = tid / TD;
  let t = tid % TD;
  let rows = p.Sq * p.G;
  let row0 = tile * BR;
  let live = row0 + r < rows;
  let i = (row0 + r) / p.G;
  let h = kvh * p.G + (row0 + r) % p.G;

  for (var e = tid; e < BR * DH; e += NT) {
    let rr = e / DH;
    let d = e % DH;
    var xq = 0.0;
    var xo = 0.0;
    if (row0 + rr < rows) {
      let qi = qIndex(b, (row0 + rr) / p.G, kvh * p.G + (row0 + rr) % p.G) + d;
      xq = q[qi];
      xo = dO[qi];
    }
    qQ[rr * DP + d] = xq;
    qdO[rr * DP + d] = xo;
  }
  var ld = vec2f(0.0);
  if (live) {
    let li = (b * p.Hq + h) * p.Sq + i;
    ld = vec2f(LD[2u * li], LD[2u * li + 1u]);
  }

  let range = keyRange(row0);
  var acc: array<f32, DPT>;
  for (var j0 = range.x; j0 < range.y; j0 += i32(BC)) {
    workgroupBarrier();
    for (var e = tid; e < BC * DH; e += NT) {
      let c = e / DH;
      let d = e % DH;
      let j = u32(j0) + c;
      var xk = 0.0;
      var xv = 0.0;
      if (j < p.kvLen) {
        xk = k[kvIndex(b, j, kvh) + d];
        xv = v[kvIndex(b, j, kvh) + d];
      }
      qK[c * DP + d] = xk;
      qV[c * DP + d] = xv;
    }
    workgroupBarrier();
    for (var c = t; c < BC; c += TD) {
      var ds = 0.0;
      if (live && visible(b, i, u32(j0) + c)) {
        var qk = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < DH; d++) {
          qk = fma(qQ[r * DP + d], qK[c * DP + d], qk);
          dp = fma(qdO[r * DP + d], qV[c * DP + d], dp);
        }
        ds = probGrad(qk, dp, ld).y;
      }
      qdS[r * BC + c] = ds;
    }
    workgroupBarrier();
    for (var c = 0u; c < BC; c++) {
      let ds = qdS[r * BC + c];
      for (var n = 0u; n < DPT; n++) {
        let d = t + n * TD;
        if (EVEN || d < DH) { acc[n] = fma(ds, qK[c * DP + d], acc[n]); }
      }
    }
  }

  if (!live) { return; }
  let base = qIndex(b, i, h);
  for (var n = 0u; n < DPT; n++) {
    let d = t + n * TD;
    if (EVEN || d < DH) { dq[base + d] = acc[n]; }
  }
}
