// Fused lm_head + cross-entropy, forward and backward (src/kernels/loss.ts). The vocabulary is
// processed in chunks of columns: a gemm writes logits[T, n] of one chunk into the workspace
// (leading dimension ld), then
//   cross_entropy_forward: per row, fold the chunk into a running (max, sum exp) (online
//          logsumexp), pick the label's logit; after the last chunk write lse and
//          loss = lse - logit[label].
//   cross_entropy_backward: turn the chunk's logits into dlogits = scale * (softmax - onehot) *
//          softcap'(x) in place (zero for ignored rows), ready for the dH and dW gemms.
//   cross_entropy_backward_weighted: the same, times a per-row weight tokw[row] (preference
//          losses: the gradient of the loss with respect to each sequence's log-probability, on
//          its labelled tokens).
//   logit_softcap: soft-capping of logits in place (generation's logits).
// Per-row state lives after the logits in the workspace, rowState floats a row:
//   [running max, running sum exp, label logit, lse, running sum of logits], and for EAFT
//   [top-20 logits so far (descending), the token's weight].
//   cross_entropy_topk (EAFT only, before cross_entropy_forward on each chunk) folds the chunk
//   into the running top 20 and, on the last chunk, writes the weight.
// softcap > 0 applies Gemma-2's final logit soft-capping z = c * tanh(x / c).
// variant picks the token loss (ce = lse - z[label], p = exp(-ce)):
//   0 cross-entropy      loss = ce                             dz = softmax - onehot
//   1 DFT                loss = p ce (p held constant)         dz = p (softmax - onehot)
//   2 label smoothing e  loss = (1-e) ce + e (lse - mean z)    dz = softmax - (1-e) onehot - e/V
//   3 EAFT alpha         loss = w ce, w = (H20 / 3)^alpha        dz = w (softmax - onehot)
//                        (H20: entropy of the softmax over the 20 largest logits; w held constant)
//   4 ASFT alpha         loss = p ce + alpha KL(q || softmax)   dz = p (softmax - onehot) + alpha (softmax - q)
//                        (q: the reference model's softmax, its logits chunk in rws)
// ASFT walks the reference's logits beside the policy's: cross_entropy_forward (variant 0) on the
// reference workspace rws (same layout, 5 floats of state) gives its lse; cross_entropy_asft_kl, before
// cross_entropy_forward on each policy chunk, folds sum_v q_v (zr_v - z_v) into state slot 5 and
// subtracts lse_ref on the last chunk, so that KL = that + lse (sum_v q_v = 1);
// cross_entropy_backward_asft is cross_entropy_backward plus the KL term.

struct Params {
  T: u32,        // rows
  n: u32,        // columns in this chunk
  ld: u32,       // leading dimension of the logits chunk in the workspace
  col0: u32,     // vocabulary index of the chunk's first column
  V: u32,        // vocabulary size (labels outside [0, V) are ignored)
  first: u32,    // 1 on the first chunk: initialise the running state
  last: u32,     // 1 on the last chunk: write lse and loss
  state: u32,    // element offset of the per-row state in the workspace
  softcap: f32,  // 0 = off
  scale: f32,    // gradient scale
  variant: u32,  // 0 cross-entropy, 1 DFT, 2 label smoothing, 3 EAFT, 4 ASFT
  epsilon: f32,  // label smoothing factor; EAFT's and ASFT's alpha
  rowState: u32, // floats of per-row state
}

const TOPK = 20u;       // EAFT's entropy runs over the 20 largest logits
const TOP_AT = 5u;      // where the running top 20 starts in a row's state
const WEIGHT_AT = 25u;  // where EAFT's token weight is
const KL_AT = 5u;       // where ASFT's running sum_v q_v (zr_v - z_v) is
const REF_STATE = 5u;   // floats of per-row state in the reference workspace

@group(0) @binding(0) var<storage, read_write> ws: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;
@group(0) @binding(2) var<storage, read> tokw: array<f32>; // the weighted backward, in place of loss
@group(0) @binding(2) var<storage, read> rws: array<f32>;  // ASFT: the reference's logits chunk and state
@group(1) @binding(0) var<uniform> p: Params;

const NEG_BIG = -3.0e38; // stands in for -inf (the arithmetic below never overflows with it)

fn capped(x: f32, c: f32) -> f32 {
  if (c > 0.0) { return c * tanh(x / c); }
  return x;
}

fn isValid(label: i32, V: u32) -> bool {
  return label >= 0 && u32(label) < V;
}

var<workgroup> redM: array<f32, 256>;
var<workgroup> redS: array<f32, 256>;
var<workgroup> redZ: array<f32, 256>;

// One workgroup per row (rows folded over x/y for large T).
@compute @workgroup_size(256)
fn cross_entropy_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                         @builtin(local_invocation_index) lid: u32) {
  let row = wg.y * nwg.x + wg.x;
  if (row >= p.T) { return; }
  let label = labels[row];
  let st = p.state + row * p.rowState;
  let base = row * p.ld;
  var m = NEG_BIG;
  var s = 0.0;
  var zs = 0.0;
  for (var j = lid; j < p.n; j += 256u) {
    let x = capped(ws[base + j], p.softcap);
    zs += x;
    if (x > m) {
      s = s * exp(m - x) + 1.0;
      m = x;
    } else {
      s += exp(x - m);
    }
    if (label >= 0 && u32(label) == p.col0 + j) { ws[st + 2u] = x; }
  }
  redM[lid] = m;
  redS[lid] = s;
  redZ[lid] = zs;
  storageBarrier();
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      let ma = redM[lid];
      let mb = redM[lid + stride];
      let mm = max(ma, mb);
      redS[lid] = redS[lid] * exp(ma - mm) + redS[lid + stride] * exp(mb - mm);
      redM[lid] = mm;
      redZ[lid] += redZ[lid + stride];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    var mm = redM[0];
    var ss = redS[0];
    var zz = redZ[0];
    if (p.first == 0u) {
      let m0 = ws[st];
      let s0 = ws[st + 1u];
      let mx = max(m0, mm);
      ss = s0 * exp(m0 - mx) + ss * exp(mm - mx);
      mm = mx;
      zz += ws[st + 4u];
    }
    ws[st] = mm;
    ws[st + 1u] = ss;
    ws[st + 4u] = zz;
    if (p.last != 0u) {
      let lse = mm + log(ss);
      ws[st + 3u] = lse;
      let ce = lse - ws[st + 2u];
      var l = ce;
      if (p.variant == 1u || p.variant == 4u) { l = ce * exp(-ce); }
      if (p.variant == 4u) { l += p.epsilon * (ws[st + KL_AT] + lse); }
      if (p.variant == 2u) { l = (1.0 - p.epsilon) * ce + p.epsilon * (lse - zz / f32(p.V)); }
      if (p.variant == 3u) { l = ce * ws[st + WEIGHT_AT]; }
      loss[row] = select(0.0, l, isValid(label, p.V));
    }
  }
}

// dlogits of one element (ws index a) of a valid row: scale * (softmax - onehot) * softcap', as
// the variant changes it.
fn dlogit(a: u32, row: u32, j: u32, label: i32) -> f32 {
  let z = capped(ws[a], p.softcap);
  let st = p.state + row * p.rowState;
  let lse = ws[st + 3u];
  var d = exp(z - lse);
  let hit = u32(label) == p.col0 + j;
  if (p.variant == 2u) {
    d -= p.epsilon / f32(p.V);
    if (hit) { d -= 1.0 - p.epsilon; }
  } else if (hit) { d -= 1.0; }
  if (p.variant == 1u || p.variant == 4u) { d *= exp(ws[st + 2u] - lse); }
  if (p.variant == 3u) { d *= ws[st + WEIGHT_AT]; }
  d *= p.scale;
  if (p.softcap > 0.0) {
    let t = z / p.softcap;
    d *= 1.0 - t * t;
  }
  return d;
}

// One thread per element of the [T, n] chunk.
@compute @workgroup_size(256)
fn cross_entropy_backward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                          @builtin(local_invocation_index) lid: u32) {
  let idx = (wg.y * nwg.x + wg.x) * 256u + lid;
  if (idx >= p.T * p.n) { return; }
  let row = idx / p.n;
  let j = idx % p.n;
  let a = row * p.ld + j;
  let label = labels[row];
  if (!isValid(label, p.V)) {
    ws[a] = 0.0;
    return;
  }
  ws[a] = dlogit(a, row, j, label);
}

// The backward times a per-row weight.
@compute @workgroup_size(256)
fn cross_entropy_backward_weighted(@builtin(workgroup_id) wg: vec3u,
                                   @builtin(num_workgroups) nwg: vec3u,
                                   @builtin(local_invocation_index) lid: u32) {
  let idx = (wg.y * nwg.x + wg.x) * 256u + lid;
  if (idx >= p.T * p.n) { return; }
  let row = idx / p.n;
  let j = idx % p.n;
  let a = row * p.ld + j;
  let label = labels[row];
  if (!isValid(label, p.V)) {
    ws[a] = 0.0;
    return;
  }
  ws[a] = dlogit(a, row, j, label) * tokw[row];
}

// ---- ASFT: the KL term against the reference's logits ----------------------------------------

// q_v of the reference at element a (same index in rws as in ws) of a row whose ref state is at rst.
fn refProb(a: u32, rst: u32) -> f32 {
  return exp(capped(rws[a], p.softcap) - rws[rst + 3u]);
}

// One workgroup per row, before cross_entropy_forward on the same chunk.
@compute @workgroup_size(256)
fn cross_entropy_asft_kl(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(local_invocation_index) lid: u32) {
  let row = wg.y * nwg.x + wg.x;
  if (row >= p.T) { return; }
  let st = p.state + row * p.rowState;
  let rst = p.state + row * REF_STATE;
  // ignored rows skip the work (the forward writes them 0); the barriers below stay uniform
  let n = select(0u, p.n, isValid(labels[row], p.V));
  var acc = 0.0;
  for (var j = lid; j < n; j += 256u) {
    let a = row * p.ld + j;
    acc += refProb(a, rst) * (capped(rws[a], p.softcap) - capped(ws[a], p.softcap));
  }
  redZ[lid] = acc;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { redZ[lid] += redZ[lid + stride]; }
    workgroupBarrier();
  }
  if (lid != 0u) { return; }
  var kl = redZ[0];
  if (p.first == 0u) { kl += ws[st + KL_AT]; }
  if (p.last != 0u) { kl -= rws[rst + 3u]; }
  ws[st + KL_AT] = kl;
}

// cross_entropy_backward for ASFT: the DFT gradient plus scale * alpha * (softmax - q) * softcap'.
@compute @workgroup_size(256)
fn cross_entropy_backward_asft(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                               @builtin(local_invocation_index) lid: u32) {
  let idx = (wg.y * nwg.x + wg.x) * 256u + lid;
  if (idx >= p.T * p.n) { return; }
  let row = idx / p.n;
  let j = idx % p.n;
  let a = row * p.ld + j;
  let label = labels[row];
  if (!isValid(label, p.V)) {
    ws[a] = 0.0;
    return;
  }
  let z = capped(ws[a], p.softcap);
  var kl = exp(z - ws[p.state + row * p.rowState + 3u]) - refProb(a, p.state + row * REF_STATE);
  kl *= p.epsilon * p.scale;
  if (p.softcap > 0.0) {
    let t = z / p.softcap;
    kl *= 1.0 - t * t;
  }
  ws[a] = dlogit(a, row, j, label) + kl;
}

// ---- EAFT: the running top 20 of each row --------------------------------------------------------

const TK_THREADS = 128u;
var<workgroup> topw: array<f32, 2560>; // TK_THREADS lists of TOPK, each descending

// Insert x into a descending list of TOPK kept in a private array.
fn insertTop(top: ptr<function, array<f32, 20>>, x: f32) {
  if (x <= (*top)[TOPK - 1u]) { return; }
  var j = TOPK - 1u;
  while (j > 0u && (*top)[j - 1u] < x) {
    (*top)[j] = (*top)[j - 1u];
    j -= 1u;
  }
  (*top)[j] = x;
}

// One workgroup per row: each thread keeps the top 20 of its strided columns, the lists are merged
// pairwise in a tree, then with the row's running list; the last chunk turns it into the weight.
@compute @workgroup_size(128)
fn cross_entropy_topk(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                      @builtin(local_invocation_index) lid: u32) {
  let row = wg.y * nwg.x + wg.x;
  if (row >= p.T) { return; }
  let st = p.state + row * p.rowState;
  var top: array<f32, 20>;
  for (var i = 0u; i < TOPK; i++) { top[i] = NEG_BIG; }
  for (var j = lid; j < p.n; j += TK_THREADS) { insertTop(&top, capped(ws[row * p.ld + j], p.softcap)); }
  for (var i = 0u; i < TOPK; i++) { topw[lid * TOPK + i] = top[i]; }
  workgroupBarrier();
  for (var stride = TK_THREADS / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      // merge two descending lists, keep the first TOPK
      var a = 0u;
      var b = 0u;
      var merged: array<f32, 20>;
      for (var i = 0u; i < TOPK; i++) {
        let x = topw[lid * TOPK + a];
        let y = topw[(lid + stride) * TOPK + b];
        if (x >= y) { merged[i] = x; a += 1u; } else { merged[i] = y; b += 1u; }
      }
      for (var i = 0u; i < TOPK; i++) { topw[lid * TOPK + i] = merged[i]; }
    }
    workgroupBarrier();
  }
  if (lid != 0u) { return; }
  for (var i = 0u; i < TOPK; i++) { top[i] = topw[i]; }
  if (p.first == 0u) {
    for (var i = 0u; i < TOPK; i++) { insertTop(&top, ws[st + TOP_AT + i]); }
  }
  for (var i = 0u; i < TOPK; i++) { ws[st + TOP_AT + i] = top[i]; }
  if (p.last != 0u) {
    // entropy of the softmax over the top 20 (torch.topk's values; fewer when V < 20)
    var m = top[0];
    var s = 0.0;
    for (var i = 0u; i < TOPK; i++) { s += exp(top[i] - m); }
    let lse = m + log(s);
    var h = 0.0;
    for (var i = 0u; i < TOPK; i++) {
      let lp = top[i] - lse;
      if (top[i] > NEG_BIG) { h -= exp(lp) * lp; }
    }
    ws[st + WEIGHT_AT] = pow(h / 3.0, p.epsilon);
  }
}

// In-place soft-capping of n values starting at element `state` (logitsForRows).
@compute @workgroup_size(256)
fn logit_softcap(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
                 @builtin(local_invocation_index) lid: u32) {
  let idx = (wg.y * nwg.x + wg.x) * 256u + lid;
  if (idx >= p.n) { return; }
  let a = p.state + idx;
  ws[a] = capped(ws[a], p.softcap);
}
