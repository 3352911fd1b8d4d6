// An independent f64 CPU reference of the whole decoder (logits and Hugging Face's causal-LM loss),
// with PEFT LoRA on any linear module. Written from transformers' modeling code (models/llama,
// mistral, qwen2, qwen3, gemma, gemma2, gemma3, phi3 modeling_*.py, modeling_rope_utils.py,
// masking_utils.py, loss/loss_utils.py ForCausalLMLoss) and PEFT's LoraLayer.forward, reading the
// HF config.json itself: nothing here comes from src/ (in particular not src/model/spec.ts or the
// GPU kernels), so the engine is checked against a second reading of the same sources.
//
// What it models, by architecture (transformers 5 names):
//   llama / mistral / qwen2 / qwen3: RMSNorm w * x / rms(x); SwiGLU MLP; rope (default, linear,
//     llama3); mistral's sliding_window on every layer; qwen2 q/k/v biases; qwen3 q_norm/k_norm.
//   gemma: RMSNorm (1 + w) * x / rms(x); embeddings times sqrt(hidden) cast to the weights' dtype
//     (f32 here); MLP act = config.hidden_act (GemmaMLP is LlamaMLP); tied lm_head by default.
//   gemma2: + post_attention / pre_feedforward / post_feedforward norms (sandwich), scaling
//     query_pre_attn_scalar^-0.5, tanh soft-cap of attention scores (before the mask) and of the
//     final logits, layer_types (sliding_attention / full_attention, default alternating starting
//     with sliding), act = hidden_activation.
//   gemma3: gemma2's layout + q_norm/k_norm (Gemma norm, per head, before rope), rope parameters per
//     layer type (rope_parameters.sliding_attention / .full_attention; transformers 4.x:
//     rope_local_base_freq for sliding layers, rope_theta (+ rope_scaling) for full ones).
//   smollm3 (SmolLM3Attention): llama with no rope on the layers where no_rope_layers[i] is 0 (the
//     list says where rope is USED; without it every no_rope_layer_interval-th layer is NoPE), and a
//     sliding window only on those when use_sliding_window.
//   granite (Granite 3.x, modeling_granite.py): llama, with embeddings times embedding_multiplier,
//     attention scores times attention_multiplier (in place of Dh^-0.5; GraniteConfig defaults it to
//     1.0), both branch outputs times residual_multiplier before their residual add, and the logits
//     divided by logits_scaling.
//   olmo2 (modeling_olmo2.py, Olmo2DecoderLayer): no input_layernorm; h += post_attention_layernorm(
//     attn(h)), then h += post_feedforward_layernorm(mlp(h)); q_norm / k_norm are RMSNorms over the
//     whole q_proj / k_proj output (num_heads * head_dim wide), applied before splitting into heads
//     and rope.
//   phi3: fused qkv_proj (rows q, k, v) and gate_up_proj (gate = first half, up = second half:
//     up * act(gate)); partial_rotary_factor (rotate_half over the first int(Dh * f) dims, the rest
//     passes through); sliding_window on every layer when set; longrope (Phi-4-mini) within
//     original_max_position_embeddings: inv_freq / short_factor, cos and sin times attention_factor
//     (sqrt(1 + ln(max_position_embeddings / original) / ln(original)) unless given).
// Sliding window (masking_utils.sliding_window_overlay): key j is visible to query i iff
// i - window < j <= i. Positions are 0..S-1 in every row (no padding mask).
//   qwen3_5_text (Qwen3_5ForCausalLM): layer_types mix full_attention and linear_attention (default
//     every 4th full); RMSNorm (1 + w) everywhere but the gated norm; full attention with q_proj of
//     twice the width (per head: query then gate), q_norm/k_norm, partial rotary (default 0.25; the
//     text positions make mrope plain rope), output * sigmoid(gate) before o_proj; linear attention
//     is Gated DeltaNet (in_proj_qkv -> causal conv1d + SiLU -> q, k, v heads; beta = sigmoid(in_proj_b),
//     g = -exp(A_log) softplus(in_proj_a + dt_bias); l2-normalised q/k, the gated delta rule,
//     RMSNormGated(core, in_proj_z), out_proj), from tests/reference/delta-rule.ts and conv1d.ts.
//   lfm2 (Lfm2ForCausalLM): layer_types mix full_attention and conv (or full_attn_idxs lists the
//     attention layers); every layer is operator_norm -> mixer -> residual, ffn_norm -> feed_forward
//     (w2(silu(w1 x) * w3 x), width intermediate_size, or block_ff_dim, auto-adjusted to 2/3 and
//     rounded up to block_multiple_of after block_ffn_dim_multiplier) -> residual; RMSNorm w * x̂
//     with norm_eps; attention has q_layernorm/k_layernorm per head before rope and out_proj;
//     the conv layer (Lfm2ShortConv.slow_forward) is in_proj -> B, C, x (thirds of the channels),
//     y = out_proj(C * conv(B * x)) with a causal depthwise conv of conv_L_cache taps, no bias, no
//     activation; the final norm is model.embedding_norm; tied embeddings by default.
// LoRA (PEFT Linear.forward, dropout 0): y = x Wᵀ + b + scaling · (x Aᵀ) Bᵀ, A [r, K], B [N, r],
// keyed by the module path ("model.layers.0.self_attn.qkv_proj"); DoRA is not modelled.

import { conv1dRef } from './conv1d';
import { deltaRuleRecurrentRef, gatesRef, l2NormRef, rmsNormGatedRef } from './delta-rule';

type Json = Record<string, unknown>;
type Arr = ArrayLike<number>;

export type RefWeights = Map<string, Arr>;

export interface RefLoraModule {
  A: Arr;
  B: Arr;
  r: number;
  scaling: number;
}
/** Module path (no "base_model.model." prefix, no ".weight") -> its LoRA pair. */
export type RefLora = Map<string, RefLoraModule>;

interface RefLayer {
  /** Qwen3.5: Gated DeltaNet in place of attention. */
  linear: boolean;
  /** LFM2: the short convolution in place of attention. */
  conv: boolean;
  window: number | null;
  invFreq: Float64Array;
  /** Rotated dims per head (int(Dh * partial_rotary_factor)). */
  rotaryDim: number;
  /** cos and sin times this (longrope's attention factor). */
  ropeScale: number;
}

export interface RefArch {
  name: string;
  vocab: number;
  hidden: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  eps: number;
  gemmaNorm: boolean;
  embedScale: number;
  act: 'silu' | 'gelu_tanh';
  scaling: number;
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  sandwich: boolean;
  /** OLMo 2: norms only after the mixer and the MLP; q/k norms over the whole projection. */
  olmo2: boolean;
  /** Granite 3: residual_multiplier on each branch, logits_scaling dividing the logits (1 elsewhere). */
  residualMultiplier: number;
  logitsScaling: number;
  qkNorm: boolean;
  fused: boolean;
  /** Qwen3.5: q_proj yields a sigmoid gate per head for the attention output. */
  gatedAttention: boolean;
  /** Qwen3.5's Gated DeltaNet dimensions (linear_* config keys). */
  deltaNet: { Hk: number; Hv: number; Dk: number; Dv: number; kernel: number } | null;
  /** LFM2's conv_L_cache (taps of the short convolution); null on other architectures. */
  convTaps: number | null;
  tied: boolean;
  layers: RefLayer[];
}

const num = (c: Json, key: string, fallback?: number): number => {
  const v = c[key];
  if (typeof v === 'number') return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`reference: config.${key} missing`);
};

/** modeling_rope_utils: default / linear / llama3 inverse frequencies, in f64. */
function invFreqOf(rp: Json, headDim: number, partial: number, c: Json = {}): { inv: Float64Array; dim: number; scale?: number } {
  const dim = Math.floor(headDim * partial);
  const theta = Number(rp.rope_theta);
  const inv = new Float64Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) inv[i] = 1 / Math.pow(theta, (2 * i) / dim);
  const type = String(rp.rope_type ?? rp.type ?? 'default');
  if (type === 'default') return { inv, dim };
  if (type === 'linear') return { inv: inv.map((f) => f / Number(rp.factor)), dim };
  if (type === 'longrope') {
    const original = Number(rp.original_max_position_embeddings ?? c.original_max_position_embeddings);
    const factor = typeof rp.factor === 'number' ? rp.factor : Number(c.max_position_embeddings) / original;
    const scale = typeof rp.attention_factor === 'number' ? rp.attention_factor : factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(original));
    const short = rp.short_factor as number[];
    return { inv: inv.map((f, i) => f / short[i]!), dim, scale };
  }
  if (type === 'llama3') {
    const factor = Number(rp.factor), low = Number(rp.low_freq_factor), high = Number(rp.high_freq_factor);
    const oldCtx = Number(rp.original_max_position_embeddings);
    const lowWavelen = oldCtx / low, highWavelen = oldCtx / high;
    const out = inv.map((f) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highWavelen) return f; // high frequencies: unchanged
      if (wavelen > lowWavelen) return f / factor; // low frequencies: divided by factor
      const smooth = (oldCtx / wavelen - low) / (high - low); // in between: interpolated
      return ((1 - smooth) * f) / factor + smooth * f;
    });
    return { inv: out, dim };
  }
  throw new Error(`reference: rope_type ${type} is not modelled`);
}

/** The architecture as transformers builds it from config.json. */
export function refArch(config: Json): RefArch {
  const archName = ((config.architectures as string[] | undefined) ?? [])[0];
  const name = (
    {
      LlamaForCausalLM: 'llama', MistralForCausalLM: 'mistral', Qwen2ForCausalLM: 'qwen2', Qwen3ForCausalLM: 'qwen3',
      GemmaForCausalLM: 'gemma', Gemma2ForCausalLM: 'gemma2', Gemma3ForCausalLM: 'gemma3', Phi3ForCausalLM: 'phi3',
      SmolLM3ForCausalLM: 'smollm3', GraniteForCausalLM: 'granite', Olmo2ForCausalLM: 'olmo2', Qwen3_5ForCausalLM: 'qwen3_5_text', Lfm2ForCausalLM: 'lfm2',
    } as Record<string, string>
  )[archName ?? ''];
  if (!name) throw new Error(`reference: architecture ${archName} is not modelled`);
  const c = config;
  const hidden = num(c, 'hidden_size');
  const heads = num(c, 'num_attention_heads');
  const headDim = typeof c.head_dim === 'number' ? c.head_dim : hidden / heads;
  const L = num(c, 'num_hidden_layers');
  const gemmaFamily = name === 'gemma' || name === 'gemma2' || name === 'gemma3';
  const qwen35 = name === 'qwen3_5_text';
  const late = name === 'gemma2' || name === 'gemma3';
  const lfm2 = name === 'lfm2';
  const granite = name === 'granite';

  // layer types
  let types: string[];
  if (Array.isArray(c.layer_types)) types = c.layer_types as string[];
  else if (name === 'gemma2') types = Array.from({ length: L }, (_, i) => ((i + 1) % 2 ? 'sliding_attention' : 'full_attention'));
  else if (name === 'gemma3') {
    const every = num(c, 'sliding_window_pattern', 6);
    types = Array.from({ length: L }, (_, i) => ((i + 1) % every ? 'sliding_attention' : 'full_attention'));
  } else if (qwen35) types = Array.from({ length: L }, (_, i) => ((i + 1) % num(c, 'full_attention_interval', 4) ? 'linear_attention' : 'full_attention'));
  else types = Array.from({ length: L }, () => 'full_attention');
  const window = typeof c.sliding_window === 'number' ? c.sliding_window : null;

  const useRope = (i: number): boolean => {
    if (name !== 'smollm3') return true;
    if (Array.isArray(c.no_rope_layers)) return (c.no_rope_layers as number[])[i] === 1;
    return (i + 1) % num(c, 'no_rope_layer_interval', 4) !== 0;
  };
  const layers: RefLayer[] = types.map((type, i) => {
    // rope parameters: transformers 5 rope_parameters (per layer type for gemma3), else 4.x keys
    let rp: Json;
    const p = c.rope_parameters as Json | undefined;
    if (p && name === 'gemma3') rp = p[type] as Json;
    else if (p) rp = p;
    else if (name === 'gemma3' && type === 'sliding_attention') rp = { rope_type: 'default', rope_theta: num(c, 'rope_local_base_freq', 10000) };
    else rp = { ...((c.rope_scaling as Json | null) ?? {}), rope_theta: lfm2 ? num(c, 'rope_theta', num(c, 'theta', 1e6)) : num(c, 'rope_theta', 10000) };
    const partial = useRope(i) ? Number(rp.partial_rotary_factor ?? c.partial_rotary_factor ?? (qwen35 ? 0.25 : 1)) : 0;
    const { inv, dim, scale } = invFreqOf(rp, headDim, partial, c);
    let w: number | null = null;
    if (late) w = type === 'sliding_attention' ? window : null;
    else if (name === 'mistral' || name === 'phi3') w = window;
    else if (name === 'qwen2' || name === 'qwen3') w = c.use_sliding_window && type === 'sliding_attention' ? window : null;
    else if (name === 'smollm3') w = c.use_sliding_window && !useRope(i) ? window : null;
    return { linear: type === 'linear_attention', conv: type === 'conv', window: w, invFreq: inv, rotaryDim: dim, ropeScale: scale ?? 1 };
  });

  const actName = lfm2 ? 'silu' : String(late ? c.hidden_activation : c.hidden_act);
  const act = actName === 'silu' ? 'silu' : actName === 'gelu_pytorch_tanh' || actName === 'gelu_new' ? 'gelu_tanh' : null;
  if (!act) throw new Error(`reference: activation ${actName} is not modelled`);
  return {
    name,
    vocab: num(c, 'vocab_size'),
    hidden,
    intermediate: lfm2 ? lfm2Width(c) : num(c, 'intermediate_size'),
    heads,
    kvHeads: num(c, 'num_key_value_heads', heads),
    headDim,
    eps: lfm2 ? num(c, 'norm_eps', 1e-5) : num(c, 'rms_norm_eps'),
    gemmaNorm: gemmaFamily || qwen35,
    // GemmaTextScaledWordEmbedding: embed_scale (an f32 tensor of hidden**0.5) cast to the weights' dtype
    embedScale: gemmaFamily ? Math.fround(Math.sqrt(hidden)) : granite ? num(c, 'embedding_multiplier', 1) : 1,
    act,
    scaling: late ? Math.pow(num(c, 'query_pre_attn_scalar'), -0.5) : granite ? num(c, 'attention_multiplier', 1) : Math.pow(headDim, -0.5),
    attnSoftcap: late && typeof c.attn_logit_softcapping === 'number' ? c.attn_logit_softcapping : null,
    finalSoftcap: late && typeof c.final_logit_softcapping === 'number' ? c.final_logit_softcapping : null,
    sandwich: late,
    olmo2: name === 'olmo2',
    residualMultiplier: granite ? num(c, 'residual_multiplier', 1) : 1,
    logitsScaling: granite ? num(c, 'logits_scaling', 1) : 1,
    qkNorm: name === 'qwen3' || name === 'gemma3' || qwen35 || lfm2 || name === 'olmo2',
    fused: name === 'phi3',
    gatedAttention: qwen35,
    deltaNet: qwen35
      ? {
        Hk: num(c, 'linear_num_key_heads', 16), Hv: num(c, 'linear_num_value_heads', 32), Dk: num(c, 'linear_key_head_dim', 128),
        Dv: num(c, 'linear_value_head_dim', 128), kernel: num(c, 'linear_conv_kernel_dim', 4),
      }
      : null,
    convTaps: lfm2 ? num(c, 'conv_L_cache', 3) : null,
    tied: c.tie_word_embeddings === undefined ? gemmaFamily || lfm2 : c.tie_word_embeddings === true,
    layers,
  };
}

/** Lfm2MLP's width from the config (Lfm2Config maps block_ff_dim to intermediate_size). */
function lfm2Width(c: Json): number {
  let width = num(c, 'block_ff_dim', num(c, 'intermediate_size', 12288));
  if (c.block_auto_adjust_ff_dim === false) return width;
  width = Math.floor((2 * width) / 3);
  const mult = c.block_ffn_dim_multiplier === undefined ? 1 : c.block_ffn_dim_multiplier;
  if (mult === null) return width;
  width = Math.floor(Number(mult) * width);
  const of = num(c, 'block_multiple_of', 256);
  return of * Math.floor((width + of - 1) / of);
}

/** Every parameter transformers creates for this config, [name, shape], in module order. */
export function refParameters(config: Json): [string, number[]][] {
  const a = refArch(config);
  const { hidden: D, heads: Hq, kvHeads: Hkv, headDim: Dh, intermediate: I, vocab: V } = a;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [V, D]]];
  for (let i = 0; i < a.layers.length; i++) {
    const p = `model.layers.${i}`;
    if (a.name === 'lfm2') {
      if (a.layers[i]!.conv) {
        out.push([`${p}.conv.conv.weight`, [D, 1, a.convTaps!]], [`${p}.conv.in_proj.weight`, [3 * D, D]], [`${p}.conv.out_proj.weight`, [D, D]]);
      } else {
        out.push(
          [`${p}.self_attn.q_proj.weight`, [Hq * Dh, D]], [`${p}.self_attn.k_proj.weight`, [Hkv * Dh, D]], [`${p}.self_attn.v_proj.weight`, [Hkv * Dh, D]],
          [`${p}.self_attn.out_proj.weight`, [D, Hq * Dh]], [`${p}.self_attn.q_layernorm.weight`, [Dh]], [`${p}.self_attn.k_layernorm.weight`, [Dh]],
        );
      }
      out.push(
        [`${p}.feed_forward.w1.weight`, [I, D]], [`${p}.feed_forward.w3.weight`, [I, D]], [`${p}.feed_forward.w2.weight`, [D, I]],
        [`${p}.operator_norm.weight`, [D]], [`${p}.ffn_norm.weight`, [D]],
      );
      continue;
    }
    if (a.layers[i]!.linear) {
      const { Hk, Hv, Dk, Dv, kernel } = a.deltaNet!;
      const la = `${p}.linear_attn`;
      out.push(
        [`${la}.in_proj_qkv.weight`, [2 * Hk * Dk + Hv * Dv, D]], [`${la}.in_proj_z.weight`, [Hv * Dv, D]], [`${la}.in_proj_b.weight`, [Hv, D]],
        [`${la}.in_proj_a.weight`, [Hv, D]], [`${la}.conv1d.weight`, [2 * Hk * Dk + Hv * Dv, 1, kernel]], [`${la}.dt_bias`, [Hv]],
        [`${la}.A_log`, [Hv]], [`${la}.norm.weight`, [Dv]], [`${la}.out_proj.weight`, [D, Hv * Dv]],
        [`${p}.mlp.gate_proj.weight`, [I, D]], [`${p}.mlp.up_proj.weight`, [I, D]], [`${p}.mlp.down_proj.weight`, [D, I]],
        [`${p}.input_layernorm.weight`, [D]], [`${p}.post_attention_layernorm.weight`, [D]],
      );
      continue;
    }
    if (a.gatedAttention) out.push([`${p}.self_attn.q_proj.weight`, [2 * Hq * Dh, D]], [`${p}.self_attn.k_proj.weight`, [Hkv * Dh, D]], [`${p}.self_attn.v_proj.weight`, [Hkv * Dh, D]]);
    else if (a.fused) out.push([`${p}.self_attn.qkv_proj.weight`, [(Hq + 2 * Hkv) * Dh, D]]);
    else {
      out.push([`${p}.self_attn.q_proj.weight`, [Hq * Dh, D]], [`${p}.self_attn.k_proj.weight`, [Hkv * Dh, D]], [`${p}.self_attn.v_proj.weight`, [Hkv * Dh, D]]);
      if (a.name === 'qwen2') out.push([`${p}.self_attn.q_proj.bias`, [Hq * Dh]], [`${p}.self_attn.k_proj.bias`, [Hkv * Dh]], [`${p}.self_attn.v_proj.bias`, [Hkv * Dh]]);
    }
    out.push([`${p}.self_attn.o_proj.weight`, [D, Hq * Dh]]);
    if (a.olmo2) out.push([`${p}.self_attn.q_norm.weight`, [Hq * Dh]], [`${p}.self_attn.k_norm.weight`, [Hkv * Dh]]);
    else if (a.qkNorm) out.push([`${p}.self_attn.q_norm.weight`, [Dh]], [`${p}.self_attn.k_norm.weight`, [Dh]]);
    if (a.fused) out.push([`${p}.mlp.gate_up_proj.weight`, [2 * I, D]]);
    else out.push([`${p}.mlp.gate_proj.weight`, [I, D]], [`${p}.mlp.up_proj.weight`, [I, D]]);
    out.push([`${p}.mlp.down_proj.weight`, [D, I]]);
    if (a.olmo2) {
      out.push([`${p}.post_attention_layernorm.weight`, [D]], [`${p}.post_feedforward_layernorm.weight`, [D]]);
      continue;
    }
    out.push([`${p}.input_layernorm.weight`, [D]], [`${p}.post_attention_layernorm.weight`, [D]]);
    if (a.sandwich) out.push([`${p}.pre_feedforward_layernorm.weight`, [D]], [`${p}.post_feedforward_layernorm.weight`, [D]]);
  }
  out.push([a.name === 'lfm2' ? 'model.embedding_norm.weight' : 'model.norm.weight', [D]]);
  if (!a.tied) out.push(['lm_head.weight', [V, D]]);
  return out;
}

/** PEFT's default LoRA target names for this architecture (every nn.Linear but lm_head). */
export function refLinearModules(config: Json): string[] {
  const a = refArch(config);
  if (a.fused) return ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj'];
  if (a.name === 'lfm2') return ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'in_proj', 'w1', 'w3', 'w2'];
  const linear = a.deltaNet ? ['in_proj_qkv', 'in_proj_z', 'in_proj_b', 'in_proj_a', 'out_proj'] : [];
  return ['q_proj', 'k_proj', 'v_proj', 'o_proj', ...linear, 'gate_proj', 'up_proj', 'down_proj'];
}

// ---- pieces ------------------------------------------------------------------------------------

function get(w: RefWeights, name: string): Arr {
  const t = w.get(name);
  if (!t) throw new Error(`reference: weight ${name} missing`);
  return t;
}

/** nn.Linear (+ PEFT LoRA): x [T, K] -> [T, N]. */
function linear(w: RefWeights, lora: RefLora | undefined, module: string, x: Float64Array, T: number, K: number, N: number): Float64Array {
  const W = get(w, `${module}.weight`);
  if (W.length !== N * K) throw new Error(`reference: ${module}.weight has ${W.length} values, expected ${N}x${K}`);
  const b = w.get(`${module}.bias`);
  const y = new Float64Array(T * N);
  for (let t = 0; t < T; t++)
    for (let n = 0; n < N; n++) {
      let s = b ? b[n]! : 0;
      for (let k = 0; k < K; k++) s += x[t * K + k]! * W[n * K + k]!;
      y[t * N + n] = s;
    }
  const l = lora?.get(module);
  if (l) {
    const { A, B, r, scaling } = l;
    if (A.length !== r * K || B.length !== N * r) throw new Error(`reference: LoRA of ${module} does not fit [${N}, ${K}] with r=${r}`);
    const xa = new Float64Array(r);
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < r; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += x[t * K + k]! * A[j * K + k]!;
        xa[j] = s;
      }
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let j = 0; j < r; j++) s += xa[j]! * B[n * r + j]!;
        y[t * N + n]! += scaling * s;
      }
    }
  }
  return y;
}

/** RMSNorm over rows of length D: Llama-style w * x̂, Gemma-style (1 + w) * x̂. */
function rmsNorm(a: RefArch, x: Float64Array, rows: number, D: number, w: Arr): Float64Array {
  const y = new Float64Array(rows * D);
  for (let t = 0; t < rows; t++) {
    let ss = 0;
    for (let d = 0; d < D; d++) ss += x[t * D + d]! ** 2;
    const inv = 1 / Math.sqrt(ss / D + a.eps);
    for (let d = 0; d < D; d++) y[t * D + d] = x[t * D + d]! * inv * (a.gemmaNorm ? 1 + w[d]! : w[d]!);
  }
  return y;
}

/**
 * Multimodal inputs of Qwen2-VL's text model (a Qwen2 decoder otherwise): rows of inputs_embeds
 * replaced (the image embeddings at the <|image_pad|> tokens), and 3-component position ids [3, B*S]
 * with mrope_section (apply_multimodal_rotary_pos_emb).
 */
export interface RefMultimodalInputs {
  embeds?: Map<number, ArrayLike<number>>;
  mrope?: { positions: ArrayLike<number>; section: readonly number[] };
}

/** apply_multimodal_rotary_pos_emb: cos/sin over the head dim split by mrope_section * 2, chunk i from component i % 3. */
function multimodalRope(x: Float64Array, T: number, H: number, Dh: number, layer: RefLayer, m: NonNullable<RefMultimodalInputs['mrope']>): void {
  const half = Dh / 2;
  const component: number[] = [];
  [...m.section, ...m.section].forEach((n, i) => component.push(...Array.from({ length: n }, () => i % 3)));
  const y = new Float64Array(Dh);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const o = (t * H + h) * Dh;
      for (let e = 0; e < Dh; e++) {
        const ang = m.positions[component[e]! * T + t]! * layer.invFreq[e % half]!;
        const rotated = e < half ? -x[o + e + half]! : x[o + e - half]!;
        y[e] = x[o + e]! * Math.cos(ang) + rotated * Math.sin(ang);
      }
      x.set(y, o);
    }
  }
}

/** apply_rotary_pos_emb (Phi-3's partial form): rotate_half within the first rotaryDim dims of each head. */
function rope(x: Float64Array, T: number, S: number, H: number, Dh: number, layer: RefLayer): void {
  const half = layer.rotaryDim / 2;
  for (let t = 0; t < T; t++) {
    const pos = t % S;
    for (let h = 0; h < H; h++) {
      const o = (t * H + h) * Dh;
      for (let i = 0; i < half; i++) {
        const ang = pos * layer.invFreq[i]!;
        const c = Math.cos(ang) * layer.ropeScale, s = Math.sin(ang) * layer.ropeScale;
        const x1 = x[o + i]!, x2 = x[o + i + half]!;
        x[o + i] = x1 * c - x2 * s;
        x[o + i + half] = x2 * c + x1 * s;
      }
    }
  }
}

/** Eager attention: [B*S, Hq*Dh] from q [B*S, Hq*Dh], k, v [B*S, Hkv*Dh]. */
function attention(a: RefArch, layer: RefLayer, q: Float64Array, k: Float64Array, v: Float64Array, B: number, S: number): Float64Array {
  const { heads: Hq, kvHeads: Hkv, headDim: Dh } = a;
  const group = Hq / Hkv;
  const out = new Float64Array(B * S * Hq * Dh);
  const p = new Float64Array(S);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / group); // repeat_kv
      for (let i = 0; i < S; i++) {
        const qo = ((b * S + i) * Hq + h) * Dh;
        let max = -Infinity;
        for (let j = 0; j < S; j++) {
          const visible = j <= i && (layer.window === null || j > i - layer.window);
          if (!visible) {
            p[j] = -Infinity;
            continue;
          }
          const ko = ((b * S + j) * Hkv + kh) * Dh;
          let s = 0;
          for (let d = 0; d < Dh; d++) s += q[qo + d]! * k[ko + d]!;
          s *= a.scaling;
          if (a.attnSoftcap) s = a.attnSoftcap * Math.tanh(s / a.attnSoftcap);
          p[j] = s;
          max = Math.max(max, s);
        }
        let sum = 0;
        for (let j = 0; j < S; j++) {
          p[j] = p[j] === -Infinity ? 0 : Math.exp(p[j]! - max);
          sum += p[j]!;
        }
        for (let j = 0; j < S; j++) {
          if (p[j] === 0) continue;
          const vo = ((b * S + j) * Hkv + kh) * Dh;
          const pj = p[j]! / sum;
          for (let d = 0; d < Dh; d++) out[qo + d]! += pj * v[vo + d]!;
        }
      }
    }
  return out;
}

const GELU_C = Math.sqrt(2 / Math.PI);
function act(a: RefArch, x: number): number {
  if (a.act === 'silu') return x / (1 + Math.exp(-x));
  return 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x * x * x)));
}

/** The MLP of layer prefix p: down(act(gate) * up), Phi-3's fused gate_up_proj included. */
function mlp(a: RefArch, w: RefWeights, lora: RefLora | undefined, p: string, x: Float64Array, T: number): Float64Array {
  const { hidden: D, intermediate: I } = a;
  const m = new Float64Array(T * I);
  if (a.fused) {
    const gu = linear(w, lora, `${p}.mlp.gate_up_proj`, x, T, D, 2 * I);
    for (let t = 0; t < T; t++) for (let j = 0; j < I; j++) m[t * I + j] = gu[t * 2 * I + I + j]! * act(a, gu[t * 2 * I + j]!);
  } else {
    const g = linear(w, lora, `${p}.mlp.gate_proj`, x, T, D, I);
    const u = linear(w, lora, `${p}.mlp.up_proj`, x, T, D, I);
    for (let i = 0; i < T * I; i++) m[i] = act(a, g[i]!) * u[i]!;
  }
  return linear(w, lora, `${p}.mlp.down_proj`, m, T, I, D);
}

/** Qwen3_5GatedDeltaNet.forward (no cache, no padding) on x [B*S, D]: the token mixer's output. */
export function refGatedDeltaNet(a: RefArch, w: RefWeights, lora: RefLora | undefined, m: string, x: Float64Array, B: number, S: number): Float64Array {
  const { hidden: D } = a;
  const { Hk, Hv, Dk, Dv, kernel } = a.deltaNet!;
  const T = B * S, keyDim = Hk * Dk, valueDim = Hv * Dv, convDim = 2 * keyDim + valueDim;
  const mixed = conv1dRef({ B, T: S, C: convDim, K: kernel }, linear(w, lora, `${m}.in_proj_qkv`, x, T, D, convDim), get(w, `${m}.conv1d.weight`)).y;
  const cols = (from: number, n: number) => {
    const o = new Float64Array(T * n);
    for (let t = 0; t < T; t++) for (let j = 0; j < n; j++) o[t * n + j] = mixed[t * convDim + from + j]!;
    return o;
  };
  const { g, beta } = gatesRef(
    linear(w, lora, `${m}.in_proj_a`, x, T, D, Hv), linear(w, lora, `${m}.in_proj_b`, x, T, D, Hv), get(w, `${m}.A_log`), get(w, `${m}.dt_bias`), T, Hv,
  );
  const core = deltaRuleRecurrentRef(
    { B, T: S, Hk, Hv, Dk, Dv, scale: 1 / Math.sqrt(Dk) },
    { q: l2NormRef(cols(0, keyDim), T * Hk, Dk, 1e-6), k: l2NormRef(cols(keyDim, keyDim), T * Hk, Dk, 1e-6), v: cols(2 * keyDim, valueDim), g, beta },
  ).out;
  const z = linear(w, lora, `${m}.in_proj_z`, x, T, D, valueDim);
  const normed = rmsNormGatedRef(core, z, get(w, `${m}.norm.weight`), T * Hv, Dv, a.eps);
  return linear(w, lora, `${m}.out_proj`, normed, T, valueDim, D);
}

/** Lfm2ShortConv.slow_forward without a cache on x [B*S, D]: out_proj(C * conv(B * x)). */
export function refShortConv(a: RefArch, w: RefWeights, lora: RefLora | undefined, m: string, x: Float64Array, B: number, S: number): Float64Array {
  const D = a.hidden, T = B * S, K = a.convTaps!;
  const bcx = linear(w, lora, `${m}.in_proj`, x, T, D, 3 * D);
  const taps = get(w, `${m}.conv.weight`);
  const y = new Float64Array(T * D);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < S; t++)
      for (let d = 0; d < D; d++) {
        // nn.Conv1d with padding K - 1, cut to the first S outputs: tap k reads position t - (K - 1) + k
        let conv = 0;
        for (let k = 0; k < K; k++) {
          const src = t - (K - 1) + k;
          if (src < 0) continue;
          const row = (b * S + src) * 3 * D;
          conv += taps[d * K + k]! * bcx[row + d]! * bcx[row + 2 * D + d]!;
        }
        y[(b * S + t) * D + d] = bcx[(b * S + t) * 3 * D + D + d]! * conv;
      }
  return linear(w, lora, `${m}.out_proj`, y, T, D, D);
}

/** Lfm2MLP: w2(silu(w1 x) * w3 x). */
function lfm2FeedForward(a: RefArch, w: RefWeights, lora: RefLora | undefined, p: string, x: Float64Array, T: number): Float64Array {
  const { hidden: D, intermediate: I } = a;
  const g = linear(w, lora, `${p}.feed_forward.w1`, x, T, D, I);
  const u = linear(w, lora, `${p}.feed_forward.w3`, x, T, D, I);
  return linear(w, lora, `${p}.feed_forward.w2`, g.map((v, i) => act(a, v) * u[i]!), T, I, D);
}

/** Lfm2DecoderLayer: operator_norm -> attention or short conv -> residual; ffn_norm -> feed_forward -> residual. */
function lfm2Layer(a: RefArch, layer: RefLayer, w: RefWeights, lora: RefLora | undefined, p: string, h: Float64Array<ArrayBuffer>, B: number, S: number): Float64Array<ArrayBuffer> {
  const { hidden: D, heads: Hq, kvHeads: Hkv, headDim: Dh } = a;
  const T = B * S;
  const x = rmsNorm(a, h, T, D, get(w, `${p}.operator_norm.weight`));
  let o: Float64Array;
  if (layer.conv) o = refShortConv(a, w, lora, `${p}.conv`, x, B, S);
  else {
    const q = rmsNorm(a, linear(w, lora, `${p}.self_attn.q_proj`, x, T, D, Hq * Dh), T * Hq, Dh, get(w, `${p}.self_attn.q_layernorm.weight`));
    const k = rmsNorm(a, linear(w, lora, `${p}.self_attn.k_proj`, x, T, D, Hkv * Dh), T * Hkv, Dh, get(w, `${p}.self_attn.k_layernorm.weight`));
    const v = linear(w, lora, `${p}.self_attn.v_proj`, x, T, D, Hkv * Dh);
    rope(q, T, S, Hq, Dh, layer);
    rope(k, T, S, Hkv, Dh, layer);
    o = linear(w, lora, `${p}.self_attn.out_proj`, attention(a, layer, q, k, v, B, S), T, Hq * Dh, D);
  }
  const mid = h.map((v, i) => v + o[i]!);
  const f = lfm2FeedForward(a, w, lora, p, rmsNorm(a, mid, T, D, get(w, `${p}.ffn_norm.weight`)), T);
  return mid.map((v, i) => v + f[i]!);
}

// ---- the model ---------------------------------------------------------------------------------

/** Logits [B*S, V] (soft-capped where the architecture caps them) for B rows of S token ids. */
export function refLogits(config: Json, w: RefWeights, ids: readonly (readonly number[])[], lora?: RefLora, mm: RefMultimodalInputs = {}): Float64Array {
  const a = refArch(config);
  const { hidden: D, heads: Hq, kvHeads: Hkv, headDim: Dh, intermediate: I, vocab: V } = a;
  const B = ids.length, S = ids[0]!.length, T = B * S;
  const E = get(w, 'model.embed_tokens.weight');
  let h = new Float64Array(T * D);
  ids.flat().forEach((id, t) => {
    if (id < 0 || id >= V) throw new Error(`reference: token id ${id} outside the vocabulary`);
    for (let d = 0; d < D; d++) h[t * D + d] = E[id * D + d]! * a.embedScale;
  });
  for (const [t, row] of mm.embeds ?? []) for (let d = 0; d < D; d++) h[t * D + d] = row[d]!;
  const add = (x: Float64Array, y: Float64Array) => x.map((v, i) => v + y[i]!);

  a.layers.forEach((layer, l) => {
    const p = `model.layers.${l}`;
    if (a.name === 'lfm2') {
      h = lfm2Layer(a, layer, w, lora, p, h, B, S);
      return;
    }
    const x = a.olmo2 ? h : rmsNorm(a, h, T, D, get(w, `${p}.input_layernorm.weight`));
    let q: Float64Array, k: Float64Array, v: Float64Array;
    let gate: Float64Array | null = null;
    const Nq = Hq * Dh, Nkv = Hkv * Dh;
    if (layer.linear) {
      h = add(h, refGatedDeltaNet(a, w, lora, `${p}.linear_attn`, x, B, S));
      h = add(h, mlp(a, w, lora, p, rmsNorm(a, h, T, D, get(w, `${p}.post_attention_layernorm.weight`)), T));
      return;
    }
    if (a.gatedAttention) {
      // per head: Dh query values, then Dh gate values
      const qg = linear(w, lora, `${p}.self_attn.q_proj`, x, T, D, 2 * Nq);
      q = new Float64Array(T * Nq);
      gate = new Float64Array(T * Nq);
      for (let r = 0; r < T * Hq; r++)
        for (let d = 0; d < Dh; d++) {
          q[r * Dh + d] = qg[r * 2 * Dh + d]!;
          gate[r * Dh + d] = qg[r * 2 * Dh + Dh + d]!;
        }
      k = linear(w, lora, `${p}.self_attn.k_proj`, x, T, D, Nkv);
      v = linear(w, lora, `${p}.self_attn.v_proj`, x, T, D, Nkv);
    } else if (a.fused) {
      const qkv = linear(w, lora, `${p}.self_attn.qkv_proj`, x, T, D, Nq + 2 * Nkv);
      const cols = (from: number, n: number) => {
        const o = new Float64Array(T * n);
        for (let t = 0; t < T; t++) for (let j = 0; j < n; j++) o[t * n + j] = qkv[t * (Nq + 2 * Nkv) + from + j]!;
        return o;
      };
      q = cols(0, Nq);
      k = cols(Nq, Nkv);
      v = cols(Nq + Nkv, Nkv);
    } else {
      q = linear(w, lora, `${p}.self_attn.q_proj`, x, T, D, Nq);
      k = linear(w, lora, `${p}.self_attn.k_proj`, x, T, D, Nkv);
      v = linear(w, lora, `${p}.self_attn.v_proj`, x, T, D, Nkv);
    }
    if (a.olmo2) {
      q = rmsNorm(a, q, T, Nq, get(w, `${p}.self_attn.q_norm.weight`));
      k = rmsNorm(a, k, T, Nkv, get(w, `${p}.self_attn.k_norm.weight`));
    } else if (a.qkNorm) {
      q = rmsNorm(a, q, T * Hq, Dh, get(w, `${p}.self_attn.q_norm.weight`));
      k = rmsNorm(a, k, T * Hkv, Dh, get(w, `${p}.self_attn.k_norm.weight`));
    }
    if (mm.mrope) {
      multimodalRope(q, T, Hq, Dh, layer, mm.mrope);
      multimodalRope(k, T, Hkv, Dh, layer, mm.mrope);
    } else {
      rope(q, T, S, Hq, Dh, layer);
      rope(k, T, S, Hkv, Dh, layer);
    }
    const attn = attention(a, layer, q, k, v, B, S);
    if (gate) for (let i = 0; i < attn.length; i++) attn[i]! *= 1 / (1 + Math.exp(-gate[i]!));
    let o = linear(w, lora, `${p}.self_attn.o_proj`, attn, T, Nq, D);
    if (a.sandwich || a.olmo2) o = rmsNorm(a, o, T, D, get(w, `${p}.post_attention_layernorm.weight`));
    h = add(h, o.map((v) => v * a.residualMultiplier));

    const x2 = a.olmo2 ? h : rmsNorm(a, h, T, D, get(w, `${p}.${a.sandwich ? 'pre_feedforward_layernorm' : 'post_attention_layernorm'}.weight`));
    let d = mlp(a, w, lora, p, x2, T);
    if (a.sandwich || a.olmo2) d = rmsNorm(a, d, T, D, get(w, `${p}.post_feedforward_layernorm.weight`));
    h = add(h, d.map((v) => v * a.residualMultiplier));
  });

  const hf = rmsNorm(a, h, T, D, get(w, a.name === 'lfm2' ? 'model.embedding_norm.weight' : 'model.norm.weight'));
  const head = a.tied ? E : w.get('lm_head.weight') ?? E;
  const logits = new Float64Array(T * V);
  for (let t = 0; t < T; t++)
    for (let n = 0; n < V; n++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += hf[t * D + d]! * head[n * D + d]!;
      s /= a.logitsScaling;
      logits[t * V + n] = a.finalSoftcap ? a.finalSoftcap * Math.tanh(s / a.finalSoftcap) : s;
    }
  return logits;
}

/**
 * ForCausalLMLoss: labels shifted left by one within each row (the last position predicts
 * nothing), -100 ignored, mean over the remaining tokens.
 */
export function refCausalLoss(logits: Arr, labels: readonly (readonly number[])[], V: number): number {
  const B = labels.length, S = labels[0]!.length;
  let sum = 0, n = 0;
  for (let b = 0; b < B; b++)
    for (let t = 0; t + 1 < S; t++) {
      const y = labels[b]![t + 1]!;
      if (y === -100) continue;
      const o = (b * S + t) * V;
      let max = -Infinity;
      for (let j = 0; j < V; j++) max = Math.max(max, logits[o + j]!);
      let s = 0;
      for (let j = 0; j < V; j++) s += Math.exp(logits[o + j]! - max);
      sum += max + Math.log(s) - logits[o + y]!;
      n++;
    }
  return sum / n;
}
