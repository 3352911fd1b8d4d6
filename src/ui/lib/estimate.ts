// GPU memory a training run needs, estimated from config.json and the method, before anything is
// downloaded. It follows what the engine allocates: base linear weights in their stored format
// (f32, or 4/8-bit blocks of 32 with an f16 scale), embedding and head in f32, trainable tensors
// with their gradient and two AdamW moments, and the training buffers of one micro-batch as the
// model's activation table lists them (model/activations.ts), with or without recomputation as the
// trainer would choose it (train/recompute.ts) under memory_budget or the default budget.

import { oftBlocks } from '../../model/oft-adapter';
import { activationBytes, decodeStateBytes, type LoraSiteSize } from '../../model/activations';
import { chooseRecompute, memoryBudget } from '../../train/recompute';
import { specFromConfig, type Mixer, type ModelSpec } from '../../model/spec';

export interface MemoryEstimate {
  /** Base model parameters. */
  params: number;
  weights: number;
  trainable: number;
  /** Bytes of trainable tensors, gradients and AdamW state. */
  optimizer: number;
  activations: number;
  total: number;
  /**
   * Generation's per-sequence state for cutoff_len positions (chat, evaluation; not held while
   * training, so not in total): attention layers' keys and values, and the fixed-size conv and
   * delta-rule / SSD state of Gated DeltaNet, Mamba-2 and short-convolution layers.
   */
  decode: { kv: number; recurrent: number };
  spec: ModelSpec;
}

export interface EstimateSettings {
  finetuning_type?: unknown;
  quantization_bit?: unknown;
  lora_rank?: unknown;
  lora_target?: unknown;
  use_dora?: unknown;
  freeze_trainable_layers?: unknown;
  oft_rank?: unknown;
  oft_block_size?: unknown;
  oft_target?: unknown;
  per_device_train_batch_size?: unknown;
  cutoff_len?: unknown;
  disable_gradient_checkpointing?: unknown;
  memory_budget?: unknown;
  /** The base's linear weights are held in f16 (bf16 / fp16 on a GPU with shader-f16: halfPrecision in settings.ts). */
  f16?: boolean;
}

/**
 * The linear modules of one layer, [out, in] by PEFT name: attention, Gated DeltaNet (Qwen3.5),
 * Mamba-2 (Granite 4) or short convolution (LFM2), then the MLP.
 */
function layerSites(s: ModelSpec, mixer: Mixer): Record<string, [number, number]> {
  const { hidden: D, heads: H, kvHeads: KV, headDim: Dh, intermediate: I, deltaNet: d, mamba: m } = s;
  const lfm2 = s.arch === 'lfm2';
  const mlp: Record<string, [number, number]> = s.sharedMlp
    ? { input_linear: [2 * I, D], output_linear: [D, I] }
    : lfm2 ? { w1: [I, D], w3: [I, D], w2: [D, I] } : { gate_proj: [I, D], up_proj: [I, D], down_proj: [D, I] };
  if (mixer === 'mamba' && m) {
    const W = m.heads * m.headDim;
    return { in_proj: [2 * W + 2 * m.groups * m.stateDim + m.heads, D], out_proj: [D, W], ...mlp };
  }
  if (mixer === 'shortConv') return { in_proj: [3 * D, D], out_proj: [D, D], ...mlp };
  if (mixer === 'deltaNet' && d) {
    const K = d.keyHeads * d.keyDim, V = d.valueHeads * d.valueDim;
    return { in_proj_qkv: [2 * K + V, D], in_proj_z: [V, D], in_proj_b: [d.valueHeads, D], in_proj_a: [d.valueHeads, D], out_proj: [D, V], ...mlp };
  }
  return { q_proj: [(s.attnOutputGate ? 2 : 1) * H * Dh, D], k_proj: [KV * Dh, D], v_proj: [KV * Dh, D], [lfm2 ? 'out_proj' : 'o_proj']: [D, H * Dh], ...mlp };
}

export function countParams(spec: ModelSpec): { linear: number; embed: number; head: number; norms: number } {
  const linear = spec.layers.reduce((a, l) => a + Object.values(layerSites(spec, l.mixer)).reduce((b, [n, k]) => b + n * k, 0), 0);
  const embed = spec.vocab * spec.hidden;
  // Gated DeltaNet's conv taps, A_log, dt_bias and gated norm count with the norms
  const d = spec.deltaNet;
  const perDeltaNet = d ? (2 * d.keyHeads * d.keyDim + d.valueHeads * d.valueDim) * d.convKernel + 2 * d.valueHeads + d.valueDim : 0;
  const deltaNets = spec.layers.filter((l) => l.mixer === 'deltaNet').length;
  // Mamba-2's conv taps and bias, A_log, dt_bias, D and gated norm
  const m = spec.mamba;
  const mConv = m ? m.heads * m.headDim + 2 * m.groups * m.stateDim : 0;
  const perMamba = m ? mConv * (m.convKernel + (m.convBias ? 1 : 0)) + 3 * m.heads + m.heads * m.headDim : 0;
  const mambas = spec.layers.filter((l) => l.mixer === 'mamba').length;
  // and LFM2's short-convolution taps
  const convTaps = spec.layers.filter((l) => l.mixer === 'shortConv').length * spec.hidden * (spec.shortConv?.convKernel ?? 0);
  const norms = (2 * spec.layers.length + 1) * spec.hidden + deltaNets * perDeltaNet + mambas * perMamba + convTaps;
  return { linear, embed, head: spec.tiedEmbeddings ? 0 : embed, norms };
}

const num = (v: unknown, d: number) => (typeof v === 'number' && Number.isFinite(v) ? v : d);

export function estimateMemory(config: Record<string, unknown>, s: EstimateSettings): MemoryEstimate {
  const spec = specFromConfig(config);
  const p = countParams(spec);
  const L = spec.layers.length;
  const q = s.quantization_bit === 4 ? 4 : s.quantization_bit === 8 ? 8 : null;
  const bytesPerLinear = q === 4 ? 0.5 + 2 / 32 : q === 8 ? 1 + 2 / 32 : s.f16 ? 2 : 4;
  const weights = p.linear * bytesPerLinear + (p.embed + p.head + p.norms) * 4;
  const method = String(s.finetuning_type ?? 'lora');
  let trainable = 0;
  const loraSites: Partial<Record<Mixer, LoraSiteSize[]>> = {};
  if (method === 'lora') {
    const r = num(s.lora_rank, 8);
    const t = s.lora_target;
    const list = Array.isArray(t) ? t.map(String) : typeof t === 'string' ? t.split(',').map((x) => x.trim()) : ['all'];
    for (const l of spec.layers) {
      const chosen = Object.entries(layerSites(spec, l.mixer)).filter(([k]) => list.includes('all') || list.includes(k));
      for (const [, [n, k]] of chosen) trainable += r * (n + k) + (s.use_dora ? n : 0);
      loraSites[l.mixer] ??= chosen.map(([, [n]]) => ({ outFeatures: n, rank: r, dora: !!s.use_dora }));
    }
  } else if (method === 'oft') {
    // PEFT's oft_R: per adapted input of width k, k / b blocks of b(b-1)/2 skew-symmetric entries
    const t = s.oft_target;
    const list = typeof t === 'string' ? t.split(',').map((x) => x.trim()) : ['all'];
    for (const l of spec.layers) {
      for (const [site, [, k]] of Object.entries(layerSites(spec, l.mixer))) {
        if (!list.includes('all') && !list.includes(site)) continue;
        const rank = num(s.oft_rank, 0), blockSize = num(s.oft_block_size, 0);
        // both or neither set: the form shows that problem; nothing to count
        if ((rank !== 0) === (blockSize !== 0)) continue;
        trainable += (k * (oftBlocks(k, { rank, blockSize }).b - 1)) / 2;
      }
    }
  } else if (method === 'full') {
    trainable = p.linear + p.embed + p.head + p.norms;
  } else {
    const n = Math.min(L, Math.abs(num(s.freeze_trainable_layers, 2)));
    trainable = (p.linear / L + 2 * spec.hidden) * n;
  }
  // value (already in the weights for full/freeze) + gradient + two moments
  const optimizer = trainable * (method === 'lora' || method === 'oft' ? 16 : 12);
  const B = num(s.per_device_train_batch_size, 8), S = num(s.cutoff_len, 2048);
  const setting = typeof s.disable_gradient_checkpointing === 'boolean' ? !s.disable_gradient_checkpointing : 'auto';
  const { recompute } = chooseRecompute({
    setting, spec, B, S, lora: loraSites, residentBytes: weights + optimizer,
    limits: { maxBufferSize: Infinity, maxStorageBufferBindingSize: Infinity },
    budget: memoryBudget(typeof s.memory_budget === 'number' && s.memory_budget > 0 ? s.memory_budget : null, null),
  });
  const activations = activationBytes(spec, { B, S, recompute, lora: loraSites }).total;
  const total = weights + optimizer + activations;
  return { params: p.linear + p.embed + p.head + p.norms, weights, trainable, optimizer, activations, total, decode: decodeStateBytes(spec, S), spec };
}
