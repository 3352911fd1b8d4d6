// f64 CPU references for rotary embeddings (src/kernels/rope.ts), after transformers'
// LlamaRotaryEmbedding + apply_rotary_pos_emb: freqs = position * inv_freq in f32, cos/sin of
// that f32 angle (here in f64), times attention_scaling; q * cos + rotate_half(q) * sin.

type Arr = ArrayLike<number>;

/** y for x [T, H, Dh]; inverse rotates by -angle (the transpose). */
export function ropeRef(
  x: Arr, T: number, H: number, Dh: number, positions: Arr, invFreq: Arr, scaling = 1, inverse = false,
): Float64Array {
  const half = invFreq.length;
  const y = Float64Array.from(x as ArrayLike<number>);
  for (let t = 0; t < T; t++)
    for (let h = 0; h < H; h++) {
      const base = (t * H + h) * Dh;
      for (let i = 0; i < half; i++) {
        const angle = Math.fround(positions[t]! * invFreq[i]!); // HF: f32 matmul of inv_freq and positions
        const c = Math.cos(angle) * scaling, s = (inverse ? -1 : 1) * Math.sin(angle) * scaling;
        const x1 = x[base + i]!, x2 = x[base + i + half]!;
        y[base + i] = x1 * c - x2 * s;
        y[base + i + half] = x2 * c + x1 * s;
      }
    }
  return y;
}

/** transformers' llama3 inverse frequencies, literally, in f64 (no f32 rounding). */
export function llama3InvFreqF64(headDim: number, theta: number, factor: number, lowF: number, highF: number, oldCtx: number): Float64Array {
  const out = new Float64Array(headDim / 2);
  const lowWavelen = oldCtx / lowF, highWavelen = oldCtx / highF;
  for (let k = 0; k < headDim / 2; k++) {
    const inv = 1 / theta ** ((2 * k) / headDim);
    const wavelen = (2 * Math.PI) / inv;
    let f = wavelen > lowWavelen ? inv / factor : inv;
    const smooth = (oldCtx / wavelen - lowF) / (highF - lowF);
    const smoothed = ((1 - smooth) * f) / factor + smooth * f;
    if (!(wavelen < highWavelen) && !(wavelen > lowWavelen)) f = smoothed;
    out[k] = f;
  }
  return out;
}

/**
 * transformers' apply_multimodal_rotary_pos_emb (Qwen2-VL): cos/sin of each position component over
 * the whole head dim, split by mrope_section * 2 along the head dim, chunk i taken from component
 * i % C; then q * cos + rotate_half(q) * sin. positions are [C, T]. With C = 2 and sections
 * [Dh/4, Dh/4] over inv = cat(f, f) this is also the vision tower's rope (cat of the row and column
 * frequencies).
 */
export function multimodalRopeRef(x: Arr, T: number, H: number, Dh: number, positions: Arr, invFreq: Arr, sections: readonly number[], inverse = false): Float64Array {
  const C = sections.length;
  const component = new Int32Array(Dh);
  let d = 0;
  [...sections, ...sections].forEach((n, i) => {
    for (let k = 0; k < n; k++) component[d++] = i % C;
  });
  if (d !== Dh) throw new Error(`multimodalRopeRef: sections * 2 cover ${d} of ${Dh} dims`);
  const y = new Float64Array(T * H * Dh);
  const half = Dh / 2;
  for (let t = 0; t < T; t++) {
    const cos = new Float64Array(Dh), sin = new Float64Array(Dh);
    for (let e = 0; e < Dh; e++) {
      const angle = Math.fround(positions[component[e]! * T + t]! * invFreq[e % half]!);
      cos[e] = Math.cos(angle);
      sin[e] = (inverse ? -1 : 1) * Math.sin(angle);
    }
    for (let h = 0; h < H; h++) {
      const b = (t * H + h) * Dh;
      for (let e = 0; e < Dh; e++) {
        const rot = e < half ? -x[b + e + half]! : x[b + e - half]!;
        y[b + e] = x[b + e]! * cos[e]! + rot * sin[e]!;
      }
    }
  }
  return y;
}
