// Token sampling for generation (src/kernels/sample.ts): one workgroup of 256 threads, one
// sequence. HF order: soft-cap (model), repetition penalty, temperature, top-k, top-p, sample.
//
// Thread t owns the contiguous index range [t*L, min(V, (t+1)*L)), L = ceil(V / 256); every sum
// is taken in that fixed order (sequential per thread, then a fixed tree or a sequential scan
// over threads), so a given `random` always gives the same token.
//
// Thresholds are searched on the order-preserving u32 key of the processed logit (all values are
// finite; -0 is folded onto +0), by a radix-style search over 8 equal key bins per pass that
// shrinks to the occupied key range of the chosen bin, until one key value remains:
//   top-k: the k-th largest value tk; keep x >= tk (all ties at tk kept, as HF's `scores <
//          topk[-1]` removal).
//   top-p: with e = exp(x - max) and Z the mass kept by top-k, keep x iff the mass of strictly
//          larger kept values is < top_p * Z (HF keeps a token iff the mass ranked above it is
//          < top_p; tokens tied with the cutoff are all kept, where HF's sort order would decide).
// Sampling: the first kept index, in index order, where the running mass exceeds random * (kept
// mass).
//
// feed_token makes a sampled token the next decode step's input without a readback: the decode
// loop records sample -> feed -> forward several times per submit and reads the tokens once.

struct Params {
  V: u32,
  off: u32,         // element offset of the row in `logits`
  outIndex: u32,
  historyLen: u32,
  topK: u32,        // 0 = off
  greedy: u32,      // 1 = argmax (lowest index wins ties)
  penalize: u32,    // 1 = apply the repetition penalty to the history tokens
  pad: u32,
  temperature: f32,
  penalty: f32,
  softcap: f32,     // 0 = off
  topP: f32,        // >= 1 = off
  random: f32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> history: array<u32>;
@group(0) @binding(2) var<storage, read_write> work: array<f32>;
@group(0) @binding(3) var<storage, read_write> outTok: array<u32>;
@group(1) @binding(0) var<uniform> p: Params;

const WG = 256u;
const NB = 8u;

var<workgroup> redF: array<f32, 256>;
var<workgroup> redU: array<u32, 256>;
var<workgroup> binMass: array<f32, 2048>; // [NB][WG]
var<workgroup> binCnt: array<atomic<u32>, 8>;
var<workgroup> binMin: array<atomic<u32>, 8>;
var<workgroup> binMax: array<atomic<u32>, 8>;
var<workgroup> sLo: u32;
var<workgroup> sHi: u32;
var<workgroup> sAboveCnt: u32;
var<workgroup> sAboveMass: f32;
var<workgroup> sDone: u32;
var<workgroup> sMax: f32;
var<workgroup> sZ: f32;
var<workgroup> sSel: u32;
var<workgroup> sTarget: f32;
var<workgroup> sPre: f32;

fn processed(i: u32) -> f32 {
  var x = logits[p.off + i];
  if (p.softcap > 0.0) { x = p.softcap * tanh(x / p.softcap); }
  return x;
}

fn key(x: f32) -> u32 {
  let b = bitcast<u32>(select(x, 0.0, x == 0.0));
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn sync() {
  storageBarrier();
  workgroupBarrier();
}

@compute @workgroup_size(256)
fn sample_token(@builtin(local_invocation_index) lid: u32) {
  let V = p.V;
  let L = (V + WG - 1u) / WG;
  let i0 = min(lid * L, V);
  let i1 = min(i0 + L, V);

  // processed logits -> work: penalty, then temperature
  for (var i = i0; i < i1; i++) { work[i] = processed(i) / p.temperature; }
  sync();
  if (p.penalize != 0u) {
    for (var h = lid; h < p.historyLen; h += WG) {
      let id = history[h];
      if (id < V) {
        let x = processed(id);
        // duplicates in the history all write the same value
        work[id] = select(x / p.penalty, x * p.penalty, x < 0.0) / p.temperature;
      }
    }
    sync();
  }

  if (p.greedy != 0u) {
    var best = -3.4e38;
    var bi = V;
    for (var i = i0; i < i1; i++) {
      let x = work[i];
      if (bi == V || x > best) { best = x; bi = i; }
    }
    redF[lid] = best;
    redU[lid] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
      if (lid < s) {
        let ob = redF[lid + s];
        let oi = redU[lid + s];
        let mine = redU[lid];
        if (oi < V && (mine >= V || ob > redF[lid] || (ob == redF[lid] && oi < mine))) {
          redF[lid] = ob;
          redU[lid] = oi;
        }
      }
      workgroupBarrier();
    }
    if (lid == 0u) { outTok[p.outIndex] = redU[0]; }
    return;
  }

  // max
  var m = -3.4e38;
  for (var i = i0; i < i1; i++) { m = max(m, work[i]); }
  redF[lid] = m;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { redF[lid] = max(redF[lid], redF[lid + s]); }
    workgroupBarrier();
  }
  if (lid == 0u) { sMax = redF[0]; }
  let mx = workgroupUniformLoad(&sMax);

  // top-k threshold
  var tk = 0u;
  if (p.topK > 0u && p.topK < V) {
    if (lid == 0u) { sLo = 0u; sHi = key(mx); sAboveCnt = 0u; sDone = 0u; }
    for (var it = 0u; it < 64u; it++) {
      if (lid < NB) {
        atomicStore(&binCnt[lid], 0u);
        atomicStore(&binMin[lid], 0xffffffffu);
        atomicStore(&binMax[lid], 0u);
      }
      workgroupBarrier();
      let lo = sLo;
      let hi = sHi;
      let width = (hi - lo) / NB + 1u;
      // explicit initialisation: some compilers keep a loop-body var's value across iterations
      var cnt: array<u32, 8>;
      var kmin: array<u32, 8>;
      var kmax: array<u32, 8>;
      for (var b = 0u; b < NB; b++) { cnt[b] = 0u; kmin[b] = 0xffffffffu; kmax[b] = 0u; }
      for (var i = i0; i < i1; i++) {
        let k = key(work[i]);
        if (k >= lo && k <= hi) {
          let b = (k - lo) / width;
          cnt[b] += 1u;
          kmin[b] = min(kmin[b], k);
          kmax[b] = max(kmax[b], k);
        }
      }
      for (var b = 0u; b < NB; b++) {
        if (cnt[b] > 0u) {
          atomicAdd(&binCnt[b], cnt[b]);
          atomicMin(&binMin[b], kmin[b]);
          atomicMax(&binMax[b], kmax[b]);
        }
      }
      workgroupBarrier();
      if (lid == 0u) {
        var cum = sAboveCnt;
        for (var bb = 0; bb < i32(NB); bb++) {
          let b = NB - 1u - u32(bb);
          let c = atomicLoad(&binCnt[b]);
          if (cum + c >= p.topK) {
            sLo = atomicLoad(&binMin[b]);
            sHi = atomicLoad(&binMax[b]);
            sAboveCnt = cum;
            break;
          }
          cum += c;
        }
        if (sLo == sHi) { sDone = 1u; }
      }
      if (workgroupUniformLoad(&sDone) != 0u) { break; }
    }
    tk = workgroupUniformLoad(&sLo);
  }

  // top-p threshold
  var tp = tk;
  if (p.topP < 1.0) {
    var z = 0.0;
    for (var i = i0; i < i1; i++) {
      let x = work[i];
      if (key(x) >= tk) { z += exp(x - mx); }
    }
    redF[lid] = z;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
      if (lid < s) { redF[lid] += redF[lid + s]; }
      workgroupBarrier();
    }
    if (lid == 0u) {
      sZ = redF[0] * p.topP;
      sLo = tk; sHi = key(mx); sAboveMass = 0.0; sDone = 0u;
    }
    for (var it = 0u; it < 64u; it++) {
      if (lid < NB) {
        atomicStore(&binMin[lid], 0xffffffffu);
        atomicStore(&binMax[lid], 0u);
      }
      workgroupBarrier();
      let lo = sLo;
      let hi = sHi;
      let width = (hi - lo) / NB + 1u;
      var mass: array<f32, 8>;
      var kmin: array<u32, 8>;
      var kmax: array<u32, 8>;
      for (var b = 0u; b < NB; b++) { mass[b] = 0.0; kmin[b] = 0xffffffffu; kmax[b] = 0u; }
      for (var i = i0; i < i1; i++) {
        let x = work[i];
        let k = key(x);
        if (k >= lo && k <= hi) {
          let b = (k - lo) / width;
          mass[b] += exp(x - mx);
          kmin[b] = min(kmin[b], k);
          kmax[b] = max(kmax[b], k);
        }
      }
      for (var b = 0u; b < NB; b++) {
        binMass[b * WG + lid] = mass[b];
        if (kmin[b] <= kmax[b]) {
          atomicMin(&binMin[b], kmin[b]);
          atomicMax(&binMax[b], kmax[b]);
        }
      }
      workgroupBarrier();
      for (var s = WG / 2u; s > 0u; s >>= 1u) {
        for (var j = lid; j < NB * s; j += WG) {
          let b = j / s;
          let t = j % s;
          binMass[b * WG + t] += binMass[b * WG + t + s];
        }
        workgroupBarrier();
      }
      if (lid == 0u) {
        let goal = sZ;
        var cum = sAboveMass;
        var chosen = false;
        var lowest = 0xffffffffu;
        for (var bb = 0; bb < i32(NB); bb++) {
          let b = NB - 1u - u32(bb);
          let bmin = atomicLoad(&binMin[b]);
          let bmax = atomicLoad(&binMax[b]);
          if (bmin > bmax) { continue; } // empty bin
          lowest = bmin;
          let c = binMass[b * WG];
          if (cum + c >= goal) {
            sLo = bmin;
            sHi = bmax;
            sAboveMass = cum;
            chosen = true;
            break;
          }
          cum += c;
        }
        if (!chosen) {
          // every remaining value is inside the nucleus (rounding): keep down to the lowest
          sLo = lowest;
          sDone = 1u;
        }
        if (sLo == sHi) { sDone = 1u; }
      }
      if (workgroupUniformLoad(&sDone) != 0u) { break; }
    }
    tp = workgroupUniformLoad(&sLo);
  }

  // inverse-CDF sampling over kept values (key >= tp) in index order
  var sum = 0.0;
  for (var i = i0; i < i1; i++) {
    let x = work[i];
    if (key(x) >= tp) { sum += exp(x - mx); }
  }
  redF[lid] = sum;
  workgroupBarrier();
  if (lid == 0u) {
    var total = 0.0;
    for (var t = 0u; t < WG; t++) { total += redF[t]; }
    let goal = p.random * total;
    var acc = 0.0;
    var sel = WG;
    var selPre = 0.0;
    var lastT = 0u;
    var lastPre = 0.0;
    for (var t = 0u; t < WG; t++) {
      let s = redF[t];
      if (s > 0.0) {
        lastT = t;
        lastPre = acc;
        if (sel == WG && acc + s > goal) { sel = t; selPre = acc; }
      }
      acc += s;
    }
    if (sel == WG) { sel = lastT; selPre = lastPre; }
    sSel = sel;
    sTarget = goal;
    sPre = selPre;
  }
  workgroupBarrier();
  if (lid == sSel) {
    let need = sTarget - sPre;
    var acc = 0.0;
    var pick = V;
    var last = V;
    for (var i = i0; i < i1; i++) {
      let x = work[i];
      if (key(x) >= tp) {
        last = i;
        acc += exp(x - mx);
        if (acc > need) { pick = i; break; }
      }
    }
    if (pick == V) { pick = last; }
    outTok[p.outIndex] = pick;
  }
}

struct FeedParams {
  index: u32,       // slot of feedTokens holding the sampled token
  position: u32,    // its position in the sequence
  historyLen: u32,  // it is appended to feedHistory there
  components: u32,  // position components written (3: M-RoPE's temporal, height, width, all equal for text)
}

@group(0) @binding(0) var<storage, read> feedTokens: array<u32>;
@group(0) @binding(1) var<storage, read_write> feedIds: array<i32>;
@group(0) @binding(2) var<storage, read_write> feedPositions: array<i32>;
@group(0) @binding(3) var<storage, read_write> feedHistory: array<u32>;
@group(1) @binding(0) var<uniform> fp: FeedParams;

@compute @workgroup_size(1)
fn feed_token() {
  let token = feedTokens[fp.index];
  feedIds[0] = i32(token);
  for (var c = 0u; c < fp.components; c++) { feedPositions[c] = i32(fp.position); }
  feedHistory[fp.historyLen] = token;
}
