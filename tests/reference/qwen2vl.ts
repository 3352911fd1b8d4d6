// An independent f64 CPU reference of Qwen2-VL (transformers' models/qwen2_vl/modeling_qwen2_vl.py,
// Qwen2VLForConditionalGeneration with transformers 5 module names), nothing from src/:
//   vision tower: PatchEmbed (Conv3d, kernel = stride = (temporal, patch, patch), no bias) on the
//     processor's patches; rot_pos_emb (row / column ids built with the reshape-permute of
//     transformers, VisionRotaryEmbedding(head_dim / 2) with theta 10000, emb = cat(f, f));
//     blocks: x + attn(norm1(x)), x + mlp(norm2(x)) with LayerNorm eps 1e-6, qkv Linear split as
//     reshape(N, 3, heads, Dh), attention without a mask inside each cu_seqlens chunk (one per
//     frame), proj; mlp fc2(act(fc1)), act = vision_config.hidden_act (quick_gelu);
//     PatchMerger: ln_q, view(-1, embed * merge²), Linear, exact GELU, Linear.
//   text model: Qwen2's decoder (q/k/v biases) with M-RoPE, through tests/reference/transformer.ts
//     with the image embeddings put in place of the image tokens (masked_scatter) and the position
//     ids of get_rope_index.

import { erf } from './act';
import { refLogits, type RefLora, type RefWeights } from './transformer';

type Json = Record<string, unknown>;
type Grid = readonly [number, number, number];

const num = (c: Json, key: string, fallback?: number): number => {
  const v = c[key];
  if (typeof v === 'number') return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`reference: ${key} missing`);
};

function get(w: RefWeights, name: string): ArrayLike<number> {
  const t = w.get(name);
  if (!t) throw new Error(`reference: weight ${name} missing`);
  return t;
}

/** The vision config's sizes as Qwen2VisionTransformerPretrainedModel reads them. */
function visionDims(config: Json) {
  const v = config.vision_config as Json;
  const E = num(v, 'embed_dim');
  return {
    E, H: num(v, 'num_heads'), depth: num(v, 'depth'), M: Math.trunc(E * num(v, 'mlp_ratio', 4)), C: num(v, 'in_channels', 3),
    P: num(v, 'patch_size', 14), Tp: num(v, 'temporal_patch_size', 2), m: num(v, 'spatial_merge_size', 2), out: num(v, 'hidden_size'),
    act: String(v.hidden_act ?? 'quick_gelu'),
  };
}

/** Every parameter of the tiny model: [name, shape] (text model under model.language_model, tower under model.visual). */
export function refQwen2VLParameters(config: Json): [string, number[]][] {
  const t = config.text_config as Json;
  const D = num(t, 'hidden_size'), Hq = num(t, 'num_attention_heads'), Hkv = num(t, 'num_key_value_heads'), I = num(t, 'intermediate_size');
  const V = num(t, 'vocab_size'), Dh = D / Hq;
  const out: [string, number[]][] = [['model.language_model.embed_tokens.weight', [V, D]]];
  for (let i = 0; i < num(t, 'num_hidden_layers'); i++) {
    const p = `model.language_model.layers.${i}`;
    out.push(
      [`${p}.self_attn.q_proj.weight`, [Hq * Dh, D]], [`${p}.self_attn.q_proj.bias`, [Hq * Dh]],
      [`${p}.self_attn.k_proj.weight`, [Hkv * Dh, D]], [`${p}.self_attn.k_proj.bias`, [Hkv * Dh]],
      [`${p}.self_attn.v_proj.weight`, [Hkv * Dh, D]], [`${p}.self_attn.v_proj.bias`, [Hkv * Dh]],
      [`${p}.self_attn.o_proj.weight`, [D, Hq * Dh]],
      [`${p}.mlp.gate_proj.weight`, [I, D]], [`${p}.mlp.up_proj.weight`, [I, D]], [`${p}.mlp.down_proj.weight`, [D, I]],
      [`${p}.input_layernorm.weight`, [D]], [`${p}.post_attention_layernorm.weight`, [D]],
    );
  }
  out.push(['model.language_model.norm.weight', [D]]);
  const { E, depth, M, C, P, Tp, m, out: O } = visionDims(config);
  out.push(['model.visual.patch_embed.proj.weight', [E, C, Tp, P, P]]);
  for (let i = 0; i < depth; i++) {
    const b = `model.visual.blocks.${i}`;
    out.push(
      [`${b}.norm1.weight`, [E]], [`${b}.norm1.bias`, [E]], [`${b}.norm2.weight`, [E]], [`${b}.norm2.bias`, [E]],
      [`${b}.attn.qkv.weight`, [3 * E, E]], [`${b}.attn.qkv.bias`, [3 * E]], [`${b}.attn.proj.weight`, [E, E]], [`${b}.attn.proj.bias`, [E]],
      [`${b}.mlp.fc1.weight`, [M, E]], [`${b}.mlp.fc1.bias`, [M]], [`${b}.mlp.fc2.weight`, [E, M]], [`${b}.mlp.fc2.bias`, [E]],
    );
  }
  const W = E * m * m;
  out.push(
    ['model.visual.merger.ln_q.weight', [E]], ['model.visual.merger.ln_q.bias', [E]],
    ['model.visual.merger.mlp.0.weight', [W, W]], ['model.visual.merger.mlp.0.bias', [W]],
    ['model.visual.merger.mlp.2.weight', [O, W]], ['model.visual.merger.mlp.2.bias', [O]],
  );
  if (config.tie_word_embeddings !== true && t.tie_word_embeddings !== true) out.push(['lm_head.weight', [V, D]]);
  return out;
}

function dense(w: RefWeights, module: string, x: Float64Array, T: number, K: number, N: number): Float64Array {
  const W = get(w, `${module}.weight`), b = w.get(`${module}.bias`);
  const y = new Float64Array(T * N);
  for (let t = 0; t < T; t++)
    for (let n = 0; n < N; n++) {
      let s = b ? b[n]! : 0;
      for (let k = 0; k < K; k++) s += x[t * K + k]! * W[n * K + k]!;
      y[t * N + n] = s;
    }
  return y;
}

function layerNorm(w: RefWeights, module: string, x: Float64Array, T: number, D: number): Float64Array {
  const g = get(w, `${module}.weight`), b = get(w, `${module}.bias`);
  const y = new Float64Array(T * D);
  for (let t = 0; t < T; t++) {
    let mean = 0;
    for (let d = 0; d < D; d++) mean += x[t * D + d]!;
    mean /= D;
    let v = 0;
    for (let d = 0; d < D; d++) v += (x[t * D + d]! - mean) ** 2;
    const r = 1 / Math.sqrt(v / D + 1e-6);
    for (let d = 0; d < D; d++) y[t * D + d] = (x[t * D + d]! - mean) * r * g[d]! + b[d]!;
  }
  return y;
}

function activation(name: string, x: number): number {
  if (name === 'quick_gelu') return x / (1 + Math.exp(-1.702 * x));
  if (name === 'gelu') return 0.5 * x * (1 + erf(x / Math.SQRT2));
  if (name === 'silu') return x / (1 + Math.exp(-x));
  throw new Error(`reference: vision activation ${name} is not modelled`);
}

/** rot_pos_emb's (row, column) ids: arange(h) expanded over w, reshaped (h/m, m, w/m, m), permuted (0, 2, 1, 3), flattened; repeated over t. */
function visionPositionIds(grids: readonly Grid[], m: number): [number, number][] {
  const ids: [number, number][] = [];
  for (const [t, h, w] of grids) {
    const one: [number, number][] = [];
    for (let a = 0; a < h / m; a++)
      for (let b = 0; b < w / m; b++)
        for (let c = 0; c < m; c++) for (let d = 0; d < m; d++) one.push([a * m + c, b * m + d]);
    for (let f = 0; f < t; f++) ids.push(...one);
  }
  return ids;
}

/** Qwen2VisionTransformerPretrainedModel.forward: image embeddings [N / m², hidden_size]. */
export function refQwen2VLVision(config: Json, w: RefWeights, pixels: ArrayLike<number>, grids: readonly Grid[]): Float64Array {
  const { E, H, depth, M, C, P, Tp, m, out: O, act } = visionDims(config);
  const Dh = E / H, F = C * Tp * P * P;
  const N = grids.reduce((s, [t, h, ww]) => s + t * h * ww, 0);
  // PatchEmbed: the Conv3d over one (C, Tp, P, P) block is the sum over all its taps
  const conv = get(w, 'model.visual.patch_embed.proj.weight');
  let x = new Float64Array(N * E);
  for (let n = 0; n < N; n++)
    for (let e = 0; e < E; e++) {
      let s = 0;
      for (let c = 0; c < C; c++)
        for (let tt = 0; tt < Tp; tt++)
          for (let i = 0; i < P; i++)
            for (let j = 0; j < P; j++) {
              const tap = ((c * Tp + tt) * P + i) * P + j;
              s += pixels[n * F + tap]! * conv[e * F + tap]!;
            }
      x[n * E + e] = s;
    }
  // rotary: half = Dh / 2 angles per patch, the first Dh / 4 from the row id, the rest from the column id
  const inv = Array.from({ length: Dh / 4 }, (_, i) => 1 / 10000 ** ((2 * i) / (Dh / 2)));
  const ids = visionPositionIds(grids, m);
  const angle = (n: number, e: number) => {
    const k = e % (Dh / 2);
    return k < Dh / 4 ? ids[n]![0] * inv[k]! : ids[n]![1] * inv[k - Dh / 4]!;
  };
  const rotate = (v: Float64Array) => {
    const y = new Float64Array(v.length);
    for (let n = 0; n < N; n++)
      for (let h = 0; h < H; h++)
        for (let e = 0; e < Dh; e++) {
          const o = n * E + h * Dh;
          const rh = e < Dh / 2 ? -v[o + e + Dh / 2]! : v[o + e - Dh / 2]!;
          y[o + e] = v[o + e]! * Math.cos(angle(n, e)) + rh * Math.sin(angle(n, e));
        }
    return y;
  };
  const cu = [0];
  for (const [t, h, ww] of grids) for (let f = 0; f < t; f++) cu.push(cu[cu.length - 1]! + h * ww);
  for (let l = 0; l < depth; l++) {
    const b = `model.visual.blocks.${l}`;
    const qkv = dense(w, `${b}.attn.qkv`, layerNorm(w, `${b}.norm1`, x, N, E), N, E, 3 * E);
    const part = (which: number) => Float64Array.from({ length: N * E }, (_, i) => qkv[Math.floor(i / E) * 3 * E + which * E + (i % E)]!);
    const q = rotate(part(0)), k = rotate(part(1)), v = part(2);
    const attn = new Float64Array(N * E);
    for (let s = 0; s + 1 < cu.length; s++)
      for (let h = 0; h < H; h++)
        for (let i = cu[s]!; i < cu[s + 1]!; i++) {
          const scores: number[] = [];
          for (let j = cu[s]!; j < cu[s + 1]!; j++) {
            let d = 0;
            for (let e = 0; e < Dh; e++) d += q[i * E + h * Dh + e]! * k[j * E + h * Dh + e]!;
            scores.push(d / Math.sqrt(Dh));
          }
          const mx = Math.max(...scores);
          const p = scores.map((z) => Math.exp(z - mx));
          const sum = p.reduce((a, c) => a + c, 0);
          for (let j = cu[s]!; j < cu[s + 1]!; j++)
            for (let e = 0; e < Dh; e++) attn[i * E + h * Dh + e]! += (p[j - cu[s]!]! / sum) * v[j * E + h * Dh + e]!;
        }
    const o = dense(w, `${b}.attn.proj`, attn, N, E, E);
    x = x.map((val, i) => val + o[i]!);
    const f1 = dense(w, `${b}.mlp.fc1`, layerNorm(w, `${b}.norm2`, x, N, E), N, E, M).map((z) => activation(act, z));
    const f2 = dense(w, `${b}.mlp.fc2`, f1, N, M, E);
    x = x.map((val, i) => val + f2[i]!);
  }
  const Wd = E * m * m, Nm = N / (m * m);
  const merged = layerNorm(w, 'model.visual.merger.ln_q', x, N, E); // .view(-1, E * m²): the same numbers
  const hid = dense(w, 'model.visual.merger.mlp.0', merged, Nm, Wd, Wd).map((z) => activation('gelu', z));
  return dense(w, 'model.visual.merger.mlp.2', hid, Nm, Wd, O);
}

/** get_rope_index for one row without padding: position ids [3, S]. */
export function refRopeIndex(config: Json, ids: readonly number[], grids: readonly Grid[]): number[][] {
  const imageToken = num(config, 'image_token_id'), start = num(config, 'vision_start_token_id');
  const m = num(config.vision_config as Json, 'spatial_merge_size', 2);
  const pos: number[][] = [[], [], []];
  const next = () => (pos[0]!.length ? Math.max(...pos.flat()) + 1 : 0);
  let st = 0, image = 0;
  const count = ids.filter((id, i) => id === start && ids[i + 1] === imageToken).length;
  for (let n = 0; n < count; n++) {
    const ed = ids.indexOf(imageToken, st);
    const [t, h, w] = grids[image++]!;
    const gh = h / m, gw = w / m;
    const base = next();
    for (let i = 0; i < ed - st; i++) for (const c of pos) c.push(base + i);
    const vbase = base + ed - st;
    for (let a = 0; a < t; a++)
      for (let b = 0; b < gh; b++)
        for (let c = 0; c < gw; c++) {
          pos[0]!.push(vbase + a);
          pos[1]!.push(vbase + b);
          pos[2]!.push(vbase + c);
        }
    st = ed + t * gh * gw;
  }
  const base = next();
  for (let i = 0; i < ids.length - st; i++) for (const c of pos) c.push(base + i);
  return pos;
}

/**
 * Logits [S, V] of one image + text row: the tower's embeddings (refQwen2VLVision of the row's
 * images, computed once by the caller: the tower is frozen) at the image tokens, M-RoPE positions,
 * then the Qwen2 decoder.
 */
export function refQwen2VLLogits(
  config: Json, w: RefWeights, ids: readonly number[], image: Float64Array, grids: readonly Grid[], lora?: RefLora,
): Float64Array {
  const text = config.text_config as Json;
  const D = num(text, 'hidden_size');
  const imageToken = num(config, 'image_token_id');
  const embeds = new Map<number, Float64Array>();
  let row = 0;
  ids.forEach((id, t) => {
    if (id === imageToken) embeds.set(t, image.subarray(row * D, ++row * D));
  });
  if (row * D !== image.length) throw new Error(`reference: ${row} image tokens for ${image.length / D} image embeddings`);
  const section = ((text.rope_parameters ?? text.rope_scaling) as Json).mrope_section as number[];
  const positions = refRopeIndex(config, ids, grids).flat();
  // the text model is Qwen2's decoder under model.language_model
  const decoder = new Map([...w].filter(([n]) => !n.startsWith('model.visual.')).map(([n, v]) => [n.replace(/^model\.language_model\./, 'model.'), v]));
  const textLora = lora && new Map([...lora].map(([n, v]) => [n.replace(/^model\.language_model\./, 'model.'), v]));
  const qwen2 = { ...text, architectures: ['Qwen2ForCausalLM'], tie_word_embeddings: config.tie_word_embeddings ?? text.tie_word_embeddings };
  return refLogits(qwen2, decoder, [ids], textLora, { embeds, mrope: { positions, section } });
}
