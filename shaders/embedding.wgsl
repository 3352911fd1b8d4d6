// Embedding lookup and its deterministic gradient.
// Forward, once per row part of the table (rows v0 .. v0 + rows of the vocabulary): one workgroup
// per token (folded into x/y by Gpu.grid()), WG threads over the D columns; tokens whose id lies
// in the part get out[t] = table[id - v0] * scale. The first part's dispatch also writes NaN for ids
// outside [0, V), so that a bad id that slipped past the host check poisons the loss visibly.
// The table holds f32 (read as u32 bits), or with TABLE_F16 f16 pairs packed in u32 words
// (src/kernels/f16.ts). WG threads per workgroup.
//
// Backward: the host groups token rows by distinct id (CSR, ids ascending, rows ascending); one
// workgroup per distinct id sums its rows of dOut in that order (no atomics, same result every
// run) and writes (or adds) scale * sum into dTable[id].
// variant: WG, TABLE_F16

struct Fwd {
  T: u32, D: u32,
  v0: u32, rows: u32,
  V: u32,
  first: u32,
  scale: f32,
  nanBits: u32,
}

struct Bwd {
  U: u32, D: u32,
  scale: f32,
  accumulate: u32,
}

fn groupIndex(wg: vec3u, nwg: vec3u) -> u32 {
  return wg.y * nwg.x + wg.x;
}

@group(0) @binding(0) var<storage, read> IDS: array<i32>;
@group(0) @binding(1) var<storage, read> TABLE: array<u32>;
@group(0) @binding(2) var<storage, read_write> OUT: array<f32>;
@group(1) @binding(0) var<uniform> fp: Fwd;

fn table_at(i: u32) -> f32 {
  if (TABLE_F16) { return unpack2x16float(TABLE[i >> 1u])[i & 1u]; }
  return bitcast<f32>(TABLE[i]);
}

@compute @workgroup_size(WG)
fn embedding_forward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let t = groupIndex(wg, nwg);
  if (t >= fp.T) { return; }
  let id = IDS[t];
  let base = t * fp.D;
  if (id >= 0 && u32(id) >= fp.v0 && u32(id) - fp.v0 < fp.rows) {
    let src = (u32(id) - fp.v0) * fp.D;
    for (var d = lane; d < fp.D; d += WG) {
      OUT[base + d] = table_at(src + d) * fp.scale;
    }
  } else if (fp.first != 0u && (id < 0 || u32(id) >= fp.V)) {
    let nan = bitcast<f32>(fp.nanBits);
    for (var d = lane; d < fp.D; d += WG) {
      OUT[base + d] = nan;
    }
  }
}

// CSR: [ids of the U distinct tokens][U + 1 row offsets][T token rows]
@group(0) @binding(0) var<storage, read> CSR: array<u32>;
@group(0) @binding(1) var<storage, read> DOUT: array<f32>;
@group(0) @binding(2) var<storage, read_write> DTABLE: array<f32>;
@group(1) @binding(0) var<uniform> bp: Bwd;

@compute @workgroup_size(WG)
fn embedding_backward(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let u = groupIndex(wg, nwg);
  if (u >= bp.U) { return; }
  let id = CSR[u];
  let k0 = CSR[bp.U + u];
  let k1 = CSR[bp.U + u + 1u];
  let rows = 2u * bp.U + 1u;
  let dst = id * bp.D;
  for (var d = lane; d < bp.D; d += WG) {
    var s = 0.0;
    for (var k = k0; k < k1; k++) {
      s += DOUT[CSR[rows + k] * bp.D + d];
    }
    var v = bp.scale * s;
    if (bp.accumulate != 0u) { v += DTABLE[dst + d]; }
    DTABLE[dst + d] = v;
  }
}
