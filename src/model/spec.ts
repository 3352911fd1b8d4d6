// Hugging Face config.json -> ModelSpec: every architectural choice the engine branches on, made
// explicit once, so the transformer code reads as one model with a few switches.

export type Arch = 'llama' | 'mistral' | 'qwen2' | 'qwen2_vl' | 'qwen3' | 'qwen3_5' | 'gemma' | 'gemma2' | 'gemma3' | 'phi3' | 'smollm3' | 'olmo2' | 'granite' | 'granitemoehybrid' | 'lfm2';
export type Activation = 'silu' | 'gelu_tanh' | 'gelu';

export interface RopeSpec {
  theta: number;
  /** Rotated share of each head; 0 on SmolLM3's NoPE layers. */
  partialRotaryFactor: number;
  scaling: {
    rope_type: 'default' | 'linear' | 'llama3' | 'longrope';
    factor?: number;
    low_freq_factor?: number;
    high_freq_factor?: number;
    original_max_position_embeddings?: number;
    /** longrope: the frequency divisors up to original_max_position_embeddings (the only range the engine runs). */
    short_factor?: number[];
  };
  /** transformers' attention_scaling: cos and sin times this (longrope's attention_factor; 1 otherwise). */
  attentionScaling: number;
}

/**
 * The token mixer of a layer: softmax attention, Qwen3.5's Gated DeltaNet (linear attention),
 * LFM2's gated short convolution, or Granite 4's Mamba-2.
 */
export type Mixer = 'attention' | 'deltaNet' | 'shortConv' | 'mamba';

export interface LayerSpec {
  mixer: Mixer;
  /** Sliding-window size for this layer, or null for full attention. */
  window: number | null;
  rope: RopeSpec;
}

/** Gated DeltaNet dimensions (Qwen3.5's linear_* config keys). */
export interface DeltaNetSpec {
  keyHeads: number;
  valueHeads: number;
  keyDim: number;
  valueDim: number;
  /** Taps of the causal depthwise conv1d. */
  convKernel: number;
}

/** Mamba-2 dimensions (Granite 4.0 H's mamba_* config keys). */
export interface MambaSpec {
  heads: number;
  /** d_head: heads * headDim = the mixer's width (mamba_expand * hidden). */
  headDim: number;
  /** n_groups of B and C. */
  groups: number;
  /** d_state */
  stateDim: number;
  /** Taps of the causal depthwise conv1d over x, B and C. */
  convKernel: number;
  convBias: boolean;
  projBias: boolean;
  /** time_step_limit: the step size is clamped to [dtMin, dtMax]. */
  dtMin: number;
  dtMax: number;
}

/**
 * Qwen2-VL's vision tower (vision_config): a Conv3d patch embedding, `depth` ViT blocks (LayerNorm,
 * bidirectional attention within each image with 2-D rope, an ungated MLP) and the patch merger
 * (LayerNorm, then an MLP over each mergeSize x mergeSize window of patches) into the text model's
 * hidden size.
 */
export interface VisionSpec {
  depth: number;
  embedDim: number;
  heads: number;
  mlpHidden: number;
  act: 'quick_gelu' | 'gelu' | 'silu' | 'gelu_tanh';
  inChannels: number;
  patchSize: number;
  temporalPatch: number;
  mergeSize: number;
  /** The merger's output: the text model's hidden size. */
  outHidden: number;
  /** Module path of the tower ("model.visual"). */
  prefix: string;
  imageTokenId: number;
  visionStartId: number;
}

/** LFM2's short convolution (Lfm2ShortConv): in_proj to B, C, x of `hidden` channels each, out = out_proj(C * conv(B * x)). */
export interface ShortConvSpec {
  /** Taps of the causal depthwise conv1d (conv_L_cache). */
  convKernel: number;
}

export interface ModelSpec {
  arch: Arch;
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: LayerSpec[];
  heads: number;
  kvHeads: number;
  headDim: number;
  rmsEps: number;
  /** Gemma's RMSNorm multiplies by (1 + w). */
  normOffset: 0 | 1;
  act: Activation;
  /** Gemma scales embeddings by sqrt(hidden) (rounded to the weights' dtype). */
  embedScale: number;
  attnScale: number;
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  qkvBias: boolean;
  qkNorm: boolean;
  /** Gemma 2/3: norms after attention and after the MLP as well as before. */
  sandwichNorms: boolean;
  /** OLMo 2: no norm before attention and the MLP, only after each (post_attention / post_feedforward_layernorm). */
  postNormsOnly?: boolean;
  /** OLMo 2: q_norm / k_norm over the whole q / k projection (all heads at once) instead of per head. */
  qkNormWhole?: boolean;
  /** Phi-3 stores q,k,v as one qkv_proj and gate,up as one gate_up_proj. */
  fusedProjections: boolean;
  /** Qwen3.5: q_proj also yields a per-head gate; the attention output is multiplied by sigmoid(gate). */
  attnOutputGate: boolean;
  /** Qwen3.5's linear-attention layers; null when every layer is attention. */
  deltaNet: DeltaNetSpec | null;
  /** Granite 4.0 H's Mamba-2 layers; null when the model has none. */
  mamba: MambaSpec | null;
  /** Granite's residual_multiplier: each block adds mixer and MLP outputs times this (1 elsewhere). */
  residualScale: number;
  /** Granite's logits_scaling: the logits are divided by it (1 elsewhere). */
  logitsScale: number;
  /** Granite 4: the MLP is shared_mlp.input_linear (gate rows, then up rows) and shared_mlp.output_linear. */
  sharedMlp: boolean;
  /** LFM2's short-convolution layers; null when the model has none. */
  shortConv: ShortConvSpec | null;
  /** Module path of the text model in the checkpoint: "model", or "model.language_model" in Qwen3.5's multimodal checkpoints. */
  textPrefix: string;
  tiedEmbeddings: boolean;
  /** Qwen2-VL's mrope_section: rope pairs per (temporal, height, width) position; null for 1-D positions. */
  mrope: number[] | null;
  /** The vision tower of a vision-language checkpoint; null for text-only models. */
  vision: VisionSpec | null;
  maxPositions: number;
  /**
   * Positions the engine computes rope for as transformers does: longrope's short range
   * (original_max_position_embeddings); beyond it transformers switches to long_factor. Unset: no limit.
   */
  positionLimit?: number;
  bosId: number | null;
  eosIds: number[];
  padId: number | null;
}

const ARCHS: Record<string, Arch> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
  Qwen2VLForConditionalGeneration: 'qwen2_vl',
  Qwen3ForCausalLM: 'qwen3',
  Qwen3_5ForCausalLM: 'qwen3_5',
  Qwen3_5ForConditionalGeneration: 'qwen3_5',
  GemmaForCausalLM: 'gemma',
  Gemma2ForCausalLM: 'gemma2',
  Gemma3ForCausalLM: 'gemma3',
  Gemma3ForConditionalGeneration: 'gemma3',
  Phi3ForCausalLM: 'phi3',
  SmolLM3ForCausalLM: 'smollm3',
  Olmo2ForCausalLM: 'olmo2',
  // Granite 3.x: a Llama with Granite's multipliers
  GraniteForCausalLM: 'granite',
  GraniteMoeHybridForCausalLM: 'granitemoehybrid',
  Lfm2ForCausalLM: 'lfm2',
};
export const SUPPORTED_ARCHITECTURES = Object.keys(ARCHS);

/** Architectures checked and refused, each with what it lacks (docs/MODELS.md lists them). */
const REFUSED: Record<string, string> = {
  CohereForCausalLM: 'Cohere / Command R (parallel attention + MLP blocks, LayerNorm, interleaved rope) is not supported',
  Cohere2ForCausalLM: 'Cohere 2 / Command R7B (parallel attention + MLP blocks, LayerNorm, interleaved rope) is not supported',
  FalconMambaForCausalLM: 'Falcon Mamba / Falcon3-Mamba (Mamba-1 layers only) is not supported; Falcon 3 (LlamaForCausalLM) is',
  Qwen3NextForCausalLM: 'Qwen3-Next is a mixture-of-experts model (Qwen3-Next-80B-A3B, fused in_proj_qkvz/in_proj_ba); its experts are not supported. Qwen3.5 (Qwen3_5ForCausalLM) has the same Gated DeltaNet layers in dense models',
};

type Json = Record<string, unknown>;

export function specFromConfig(raw: Json, where = 'config.json'): ModelSpec {
  const archName = ((raw.architectures as string[] | undefined) ?? [])[0] ?? '';
  const arch = ARCHS[archName];
  if (!arch) {
    if (REFUSED[archName]) throw new Error(`${where}: ${archName}: ${REFUSED[archName]}`);
    throw new Error(`${where}: unsupported architecture "${archName || '(none)'}". Supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`);
  }
  // Gemma 3, Qwen2-VL (transformers 5) and Qwen3.5 multimodal checkpoints nest the text model's config.
  const nested = (arch === 'gemma3' || arch === 'qwen3_5' || arch === 'qwen2_vl') && typeof raw.text_config === 'object' && raw.text_config !== null;
  // (Qwen3.5's and Qwen2-VL's may keep tie_word_embeddings and token ids at the top level: the text config's win)
  const outer = arch === 'qwen3_5' || arch === 'qwen2_vl' ? raw : {};
  const c: Json = nested ? { ...outer, ...(raw.text_config as Json), architectures: raw.architectures } : raw;
  const qwen35 = arch === 'qwen3_5';
  const granite = arch === 'granitemoehybrid';
  // Granite 3 and 4's multipliers (muP)
  const multipliers = granite || arch === 'granite';
  // GraniteMoeHybridConfig defaults to 8 experts
  const experts = c.num_local_experts ?? 8;
  if (granite && experts !== 0) {
    throw new Error(`${where}: Granite 4 with experts (num_local_experts ${JSON.stringify(experts)}: granite-4.0-h-tiny, h-small) is not supported; the dense ones (num_local_experts 0: granite-4.0-h-350m, h-1b) are`);
  }
  const lfm2 = arch === 'lfm2';
  if (lfm2 && c.conv_bias === true) throw new Error(`${where}: LFM2 with conv_bias is not supported (released LFM2 checkpoints have none)`);
  const num = (key: string, fallback?: number): number => {
    const v = c[key];
    if (typeof v === 'number') return v;
    if (fallback !== undefined) return fallback;
    throw new Error(`${where}: "${key}" is missing or not a number`);
  };
  const hidden = num('hidden_size');
  const heads = num('num_attention_heads');
  const headDim = typeof c.head_dim === 'number' ? c.head_dim : hidden / heads;
  const nLayers = num('num_hidden_layers');
  const gemma = arch.startsWith('gemma');
  const act = activation(String(c.hidden_activation ?? c.hidden_act ?? 'silu'), where);

  const layerTypes = layerTypesOf(c, arch, nLayers);
  const slidingWindow = typeof c.sliding_window === 'number' && c.use_sliding_window !== false ? c.sliding_window : null;
  const noRope = noRopeLayersOf(c, arch, nLayers, where);
  const layers: LayerSpec[] = layerTypes.map((type, i) => {
    const rope = ropeOf(lfm2 ? lfm2Rope(c) : c, type, where, qwen35 ? 0.25 : 1, headDim);
    const known = granite
      ? type === 'attention' || type === 'mamba'
      : type === 'full_attention' || type === 'sliding_attention' || (qwen35 && type === 'linear_attention') || (lfm2 && type === 'conv');
    if (!known) throw new Error(`${where}: layer_types[${i}] "${type}" is not a layer type of ${archName}`);
    return {
      mixer: type === 'linear_attention' ? 'deltaNet' : type === 'mamba' ? 'mamba' : type === 'conv' ? 'shortConv' : 'attention',
      window: type === 'sliding_attention' ? slidingWindow : arch === 'mistral' || arch === 'phi3' ? slidingWindow : null,
      rope: noRope[i] ? { ...rope, partialRotaryFactor: 0 } : rope,
    };
  });

  const longrope = layers.find((l) => l.rope.scaling.rope_type === 'longrope');
  const shortRange = longrope?.rope.scaling.original_max_position_embeddings;
  const eos = c.eos_token_id;
  const pre = typeof c.query_pre_attn_scalar === 'number' ? c.query_pre_attn_scalar : null;
  return {
    arch,
    vocab: num('vocab_size'),
    hidden,
    intermediate: granite ? num('shared_intermediate_size') : lfm2 ? lfm2FeedForward(c, where) : num('intermediate_size'),
    layers,
    heads,
    kvHeads: num('num_key_value_heads', heads),
    headDim,
    rmsEps: lfm2 ? num('norm_eps', 1e-5) : num('rms_norm_eps', 1e-6),
    // Qwen3.5's RMSNorm is zero-centred like Gemma's: (1 + w)
    normOffset: gemma || qwen35 ? 1 : 0,
    act,
    embedScale: gemma ? Math.sqrt(hidden) : multipliers ? num('embedding_multiplier', 1) : 1,
    // Granite(MoeHybrid)Config's default attention_multiplier is 1.0, not 1/sqrt(head_dim)
    attnScale: multipliers ? num('attention_multiplier', 1) : 1 / Math.sqrt(pre ?? headDim),
    attnSoftcap: typeof c.attn_logit_softcapping === 'number' ? c.attn_logit_softcapping : null,
    finalSoftcap: typeof c.final_logit_softcapping === 'number' ? c.final_logit_softcapping : null,
    qkvBias: arch === 'qwen2' || arch === 'qwen2_vl' || c.attention_bias === true,
    qkNorm: arch === 'qwen3' || arch === 'gemma3' || qwen35 || lfm2 || arch === 'olmo2',
    sandwichNorms: arch === 'gemma2' || arch === 'gemma3',
    postNormsOnly: arch === 'olmo2',
    qkNormWhole: arch === 'olmo2',
    fusedProjections: arch === 'phi3',
    attnOutputGate: qwen35,
    deltaNet: layers.some((l) => l.mixer === 'deltaNet')
      ? {
        keyHeads: num('linear_num_key_heads', 16), valueHeads: num('linear_num_value_heads', 32), keyDim: num('linear_key_head_dim', 128),
        valueDim: num('linear_value_head_dim', 128), convKernel: num('linear_conv_kernel_dim', 4),
      }
      : null,
    mamba: layers.some((l) => l.mixer === 'mamba') ? mambaOf(c, hidden, where) : null,
    residualScale: multipliers ? num('residual_multiplier', 1) : 1,
    logitsScale: multipliers ? num('logits_scaling', 1) : 1,
    sharedMlp: granite,
    shortConv: layers.some((l) => l.mixer === 'shortConv') ? { convKernel: num('conv_L_cache', 3) } : null,
    // Qwen2-VL: transformers 5's module path (older checkpoints' model.* / visual.* are renamed at load)
    textPrefix: (nested && qwen35) || arch === 'qwen2_vl' ? 'model.language_model' : 'model',
    // LFM2's original keys: tie_embedding (tied by default)
    tiedEmbeddings: c.tie_word_embeddings === undefined ? (lfm2 ? c.tie_embedding !== false : gemma) : c.tie_word_embeddings === true,
    mrope: arch === 'qwen2_vl' ? mropeSectionOf(c, headDim, where) : null,
    vision: arch === 'qwen2_vl' ? visionOf(raw, hidden, where) : null,
    // longrope (Phi-4-mini, Phi-3.5): its short range, as far as generation and training go
    maxPositions: shortRange ?? num('max_position_embeddings', 4096),
    ...(shortRange ? { positionLimit: shortRange } : {}),
    bosId: typeof c.bos_token_id === 'number' ? c.bos_token_id : null,
    eosIds: Array.isArray(eos) ? (eos as number[]) : typeof eos === 'number' ? [eos] : [],
    padId: typeof c.pad_token_id === 'number' ? c.pad_token_id : null,
  };
}

function activation(name: string, where: string): Activation {
  if (name === 'silu' || name === 'swish') return 'silu';
  if (name === 'gelu_pytorch_tanh' || name === 'gelu_new' || name === 'gelu_fast') return 'gelu_tanh';
  if (name === 'gelu') return 'gelu';
  throw new Error(`${where}: unsupported activation "${name}"`);
}

/**
 * Lfm2MLP's width: intermediate_size (block_ff_dim in LFM2's original keys); with
 * block_auto_adjust_ff_dim, 2/3 of it, and with a block_ffn_dim_multiplier, that times the
 * multiplier rounded up to block_multiple_of.
 */
function lfm2FeedForward(c: Json, where: string): number {
  const base = typeof c.block_ff_dim === 'number' ? c.block_ff_dim : c.intermediate_size;
  if (typeof base !== 'number') throw new Error(`${where}: "intermediate_size" (or "block_ff_dim") is missing or not a number`);
  if (c.block_auto_adjust_ff_dim === false) return base;
  let size = Math.trunc((2 * base) / 3);
  const multiplier = c.block_ffn_dim_multiplier === undefined ? 1 : c.block_ffn_dim_multiplier;
  if (typeof multiplier === 'number') {
    const multiple = typeof c.block_multiple_of === 'number' ? c.block_multiple_of : 256;
    size = Math.trunc(multiplier * size);
    size = multiple * Math.ceil(size / multiple);
  }
  return size;
}

/** LFM2's original keys name the rope base `theta`; transformers defaults it to 1e6. */
function lfm2Rope(c: Json): Json {
  if (c.rope_parameters || typeof c.rope_theta === 'number') return c;
  return { ...c, rope_theta: typeof c.theta === 'number' ? c.theta : 1e6 };
}

function layerTypesOf(c: Json, arch: Arch, n: number): string[] {
  if (Array.isArray(c.layer_types) && c.layer_types.length === n) return c.layer_types as string[];
  if (arch === 'granitemoehybrid') return Array.from({ length: n }, () => 'mamba');
  if (arch === 'lfm2') {
    // LFM2's original keys: the attention layers by index (all of them when absent)
    const attn = Array.isArray(c.full_attn_idxs) ? new Set(c.full_attn_idxs as number[]) : null;
    return Array.from({ length: n }, (_, i) => (!attn || attn.has(i) ? 'full_attention' : 'conv'));
  }
  if (arch === 'qwen3_5') {
    const every = typeof c.full_attention_interval === 'number' ? c.full_attention_interval : 4;
    return Array.from({ length: n }, (_, i) => ((i + 1) % every === 0 ? 'full_attention' : 'linear_attention'));
  }
  if (arch === 'gemma2') return Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 'sliding_attention' : 'full_attention'));
  if (arch === 'gemma3') {
    const every = typeof c.sliding_window_pattern === 'number' ? c.sliding_window_pattern : 6;
    return Array.from({ length: n }, (_, i) => ((i + 1) % every === 0 ? 'full_attention' : 'sliding_attention'));
  }
  return Array.from({ length: n }, () => 'full_attention');
}

/**
 * SmolLM3's NoPE layers: `no_rope_layers[i]` is 1 where layer i uses rope and 0 where it does not
 * (the name says the opposite); without the list, every `no_rope_layer_interval`-th layer (4).
 */
function noRopeLayersOf(c: Json, arch: Arch, n: number, where: string): boolean[] {
  // Granite 4: position_embedding_type "rope", or none (NoPE: the Mamba layers carry the order)
  if (arch === 'granitemoehybrid') return Array.from({ length: n }, () => c.position_embedding_type !== 'rope');
  if (arch !== 'smollm3') return Array.from({ length: n }, () => false);
  const list = c.no_rope_layers;
  if (list === undefined || list === null) {
    const every = typeof c.no_rope_layer_interval === 'number' ? c.no_rope_layer_interval : 4;
    return Array.from({ length: n }, (_, i) => (i + 1) % every === 0);
  }
  if (!Array.isArray(list) || list.length < n || list.some((v) => v !== 0 && v !== 1)) {
    throw new Error(`${where}: "no_rope_layers" must list 0 or 1 for each of the ${n} layers`);
  }
  return list.slice(0, n).map((v) => v === 0);
}

/** Rope parameters: transformers 5 `rope_parameters` (possibly per layer type) or 4.x `rope_theta`/`rope_scaling`. */
function ropeOf(c: Json, layerType: string, where: string, defaultPartial: number, headDim: number): RopeSpec {
  let p = c.rope_parameters as Json | undefined;
  if (p && typeof p[layerType] === 'object') p = p[layerType] as Json;
  const scaling = (p ?? (c.rope_scaling as Json | null) ?? {}) as Json;
  let theta = Number(p?.rope_theta ?? c.rope_theta ?? 10000);
  // transformers 4.x Gemma 3: local (sliding) layers use rope_local_base_freq without scaling
  if (!p && layerType === 'sliding_attention' && typeof c.rope_local_base_freq === 'number') {
    return { theta: c.rope_local_base_freq, partialRotaryFactor: 1, scaling: { rope_type: 'default' }, attentionScaling: 1 };
  }
  // Qwen2-VL's "mrope" has the default frequencies; its sections are read by mropeSectionOf
  const named = String(scaling.rope_type ?? scaling.type ?? 'default');
  const type = named === 'mrope' ? 'default' : named;
  if (type !== 'default' && type !== 'linear' && type !== 'llama3' && type !== 'longrope') {
    throw new Error(`${where}: rope scaling "${type}" is not supported (supported: default, linear, llama3, longrope)`);
  }
  if (!Number.isFinite(theta)) theta = 10000;
  const partialRotaryFactor = Number(c.partial_rotary_factor ?? p?.partial_rotary_factor ?? defaultPartial);
  if (type === 'longrope') return { theta, partialRotaryFactor, ...longropeOf(c, scaling, Math.trunc(headDim * partialRotaryFactor) / 2, where) };
  return {
    theta,
    partialRotaryFactor,
    attentionScaling: 1,
    scaling: {
      rope_type: type,
      factor: scaling.factor as number | undefined,
      low_freq_factor: scaling.low_freq_factor as number | undefined,
      high_freq_factor: scaling.high_freq_factor as number | undefined,
      original_max_position_embeddings: scaling.original_max_position_embeddings as number | undefined,
    },
  };
}

/**
 * longrope (Phi-4-mini, Phi-3.5, Phi-3's 128k models) as transformers' _compute_longrope_parameters
 * reads it: up to original_max_position_embeddings the frequencies are divided by short_factor and
 * cos/sin scaled by attention_factor (default sqrt(1 + ln(factor) / ln(original)), factor =
 * max_position_embeddings / original unless given). Longer sequences switch to long_factor, which
 * the engine does not run: positionLimit stops them.
 */
function longropeOf(c: Json, scaling: Json, pairs: number, where: string): Pick<RopeSpec, 'scaling' | 'attentionScaling'> {
  const original = scaling.original_max_position_embeddings ?? c.original_max_position_embeddings;
  if (typeof original !== 'number' || !(original > 1)) throw new Error(`${where}: longrope needs "original_max_position_embeddings" (a number > 1)`);
  const short = scaling.short_factor;
  if (!Array.isArray(short) || short.length !== pairs || short.some((v) => typeof v !== 'number' || !(v > 0))) {
    throw new Error(`${where}: longrope "short_factor" must list ${pairs} positive numbers (one per rotated pair)`);
  }
  const factor = typeof scaling.factor === 'number' ? scaling.factor : Number(c.max_position_embeddings ?? original) / original;
  const given = scaling.attention_factor;
  const attentionScaling = typeof given === 'number' ? given : factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(original));
  return { scaling: { rope_type: 'longrope', original_max_position_embeddings: original, short_factor: short as number[] }, attentionScaling };
}

/** Granite 4.0 H's Mamba-2 layer shape (GraniteMoeHybridConfig's mamba_* keys and their defaults). */
function mambaOf(c: Json, hidden: number, where: string): MambaSpec {
  const int = (key: string, fallback: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`${where}: "${key}" must be a positive integer, not ${JSON.stringify(v)}`);
    return v;
  };
  const expand = typeof c.mamba_expand === 'number' ? c.mamba_expand : 2;
  const width = expand * hidden;
  const heads = int('mamba_n_heads', 128);
  const headDim = c.mamba_d_head === undefined || c.mamba_d_head === 'auto' ? width / heads : c.mamba_d_head;
  if (typeof headDim !== 'number' || !Number.isInteger(headDim) || headDim * heads !== width) {
    throw new Error(`${where}: mamba_n_heads ${heads} x mamba_d_head ${JSON.stringify(c.mamba_d_head)} must equal mamba_expand x hidden_size = ${width}`);
  }
  const groups = int('mamba_n_groups', 1);
  if (heads % groups !== 0) throw new Error(`${where}: mamba_n_heads ${heads} is not a multiple of mamba_n_groups ${groups}`);
  const limit = Array.isArray(c.time_step_limit) ? (c.time_step_limit as unknown[]) : [0, Infinity];
  // (config.json writes float('inf') as Infinity: hf-config.ts reads it as the string)
  const bound = (v: unknown, fallback: number) => (typeof v === 'number' ? v : v === 'Infinity' ? Infinity : fallback);
  return {
    heads, headDim, groups, stateDim: int('mamba_d_state', 256), convKernel: int('mamba_d_conv', 4),
    convBias: c.mamba_conv_bias !== false, projBias: c.mamba_proj_bias === true,
    dtMin: bound(limit[0], 0), dtMax: bound(limit[1], Infinity),
  };
}

/** mrope_section (rope_parameters in transformers 5, rope_scaling before): pairs per position component, summing to head_dim / 2. */
function mropeSectionOf(c: Json, headDim: number, where: string): number[] {
  const p = (c.rope_parameters ?? c.rope_scaling) as Json | undefined;
  const section = p?.mrope_section;
  if (!Array.isArray(section) || section.length !== 3 || section.some((n) => !Number.isInteger(n) || n < 0)
    || section.reduce((a: number, b: number) => a + b, 0) !== headDim / 2) {
    throw new Error(`${where}: Qwen2-VL needs rope "mrope_section": three counts summing to head_dim / 2 = ${headDim / 2} (got ${JSON.stringify(section)})`);
  }
  return section as number[];
}

function visionOf(raw: Json, textHidden: number, where: string): VisionSpec {
  const v = raw.vision_config as Json | undefined;
  if (!v || typeof v !== 'object') throw new Error(`${where}: "vision_config" is missing`);
  const num = (o: Json, key: string, fallback?: number): number => {
    const x = o[key];
    if (typeof x === 'number') return x;
    if (fallback !== undefined) return fallback;
    throw new Error(`${where}: "${o === v ? 'vision_config.' : ''}${key}" is missing or not a number`);
  };
  const embedDim = num(v, 'embed_dim');
  const heads = num(v, 'num_heads');
  const act = String(v.hidden_act ?? 'quick_gelu');
  if (act !== 'quick_gelu' && act !== 'gelu' && act !== 'silu' && act !== 'gelu_pytorch_tanh') {
    throw new Error(`${where}: vision_config.hidden_act "${act}" is not supported (quick_gelu, gelu, silu, gelu_pytorch_tanh)`);
  }
  if (embedDim % heads !== 0 || (embedDim / heads) % 4 !== 0) {
    throw new Error(`${where}: vision_config.embed_dim ${embedDim} must split into num_heads ${heads} heads of a multiple of 4 dims (2-D rope)`);
  }
  const outHidden = num(v, 'hidden_size', textHidden);
  if (outHidden !== textHidden) throw new Error(`${where}: vision_config.hidden_size ${outHidden} must equal the text model's hidden_size ${textHidden}`);
  return {
    depth: num(v, 'depth'),
    embedDim,
    heads,
    mlpHidden: Math.trunc(embedDim * num(v, 'mlp_ratio', 4)),
    act: act === 'gelu_pytorch_tanh' ? 'gelu_tanh' : act,
    inChannels: num(v, 'in_channels', num(v, 'in_chans', 3)),
    patchSize: num(v, 'patch_size', num(v, 'spatial_patch_size', 14)),
    temporalPatch: num(v, 'temporal_patch_size', 2),
    mergeSize: num(v, 'spatial_merge_size', 2),
    outHidden,
    prefix: 'model.visual',
    imageTokenId: num(raw, 'image_token_id'),
    visionStartId: num(raw, 'vision_start_token_id'),
  };
}
