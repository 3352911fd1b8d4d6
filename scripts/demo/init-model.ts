// A freshly initialised Llama checkpoint for the demo model, as transformers' LlamaPreTrainedModel
// initialises one: linear and embedding weights ~ N(0, 0.02), RMSNorm weights 1.
// Writes config.json, generation_config.json and model.safetensors next to the tokenizer files.
//
//   node --import ./bin/register.js scripts/demo/init-model.ts [--out=DIR] [--tokenizer=DIR]
//     [--hidden=64] [--layers=2] [--heads=4] [--kv-heads=2] [--intermediate=176] [--tied=false] [--seed=0]

import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeSafetensors, type TensorToWrite } from '../../src/model/safetensors';
import { arg, MODEL_DIR, SPECIALS, VOCAB_SIZE, WORK_DIR } from './common';

export interface DemoShape {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  maxPositions: number;
  /** Output head shares the embedding matrix. */
  tied: boolean;
}

export const DEFAULT_SHAPE: DemoShape = { hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 176, maxPositions: 256, tied: false };

const ID = (t: (typeof SPECIALS)[number]) => VOCAB_SIZE - SPECIALS.length + SPECIALS.indexOf(t);
export const PAD_ID = ID('<|endoftext|>');
export const EOS_ID = ID('<|im_end|>');

export function configJson(s: DemoShape): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: null,
    eos_token_id: EOS_ID,
    pad_token_id: PAD_ID,
    head_dim: s.hidden / s.heads,
    hidden_act: 'silu',
    hidden_size: s.hidden,
    initializer_range: 0.02,
    intermediate_size: s.intermediate,
    max_position_embeddings: s.maxPositions,
    mlp_bias: false,
    num_attention_heads: s.heads,
    num_hidden_layers: s.layers,
    num_key_value_heads: s.kvHeads,
    pretraining_tp: 1,
    rms_norm_eps: 1e-5,
    rope_scaling: null,
    rope_theta: 10000.0,
    tie_word_embeddings: s.tied,
    torch_dtype: 'float32',
    transformers_version: '4.46.0',
    use_cache: true,
    vocab_size: VOCAB_SIZE,
  };
}

export function generationConfigJson(): Record<string, unknown> {
  return { _from_model_config: false, eos_token_id: [EOS_ID, PAD_ID], pad_token_id: PAD_ID, transformers_version: '4.46.0' };
}

/** Seeded N(0, std) (mulberry32 + Box-Muller). */
function normal(seed: number, std: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  const u = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  return () => std * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

export function initTensors(s: DemoShape, seed: number): Record<string, TensorToWrite> {
  const rand = normal(seed, 0.02);
  const t: Record<string, TensorToWrite> = {};
  const mat = (name: string, rows: number, cols: number) => (t[name] = { dtype: 'F32', shape: [rows, cols], data: Float32Array.from({ length: rows * cols }, rand) });
  const ones = (name: string, n: number) => (t[name] = { dtype: 'F32', shape: [n], data: new Float32Array(n).fill(1) });
  const { hidden: D, intermediate: I, heads, kvHeads } = s;
  const Dh = D / heads;
  mat('model.embed_tokens.weight', VOCAB_SIZE, D);
  for (let i = 0; i < s.layers; i++) {
    const p = `model.layers.${i}`;
    ones(`${p}.input_layernorm.weight`, D);
    ones(`${p}.post_attention_layernorm.weight`, D);
    mat(`${p}.self_attn.q_proj.weight`, heads * Dh, D);
    mat(`${p}.self_attn.k_proj.weight`, kvHeads * Dh, D);
    mat(`${p}.self_attn.v_proj.weight`, kvHeads * Dh, D);
    mat(`${p}.self_attn.o_proj.weight`, D, heads * Dh);
    mat(`${p}.mlp.gate_proj.weight`, I, D);
    mat(`${p}.mlp.up_proj.weight`, I, D);
    mat(`${p}.mlp.down_proj.weight`, D, I);
  }
  ones('model.norm.weight', D);
  if (!s.tied) mat('lm_head.weight', VOCAB_SIZE, D);
  return t;
}

/** Writes a complete initialised checkpoint folder (tokenizer files copied from `tokenizerDir`). */
export function writeInitialModel(out: string, tokenizerDir: string, s: DemoShape, seed: number): number {
  mkdirSync(out, { recursive: true });
  const tensors = initTensors(s, seed);
  const bytes = encodeSafetensors(tensors, { format: 'pt' });
  writeFileSync(join(out, 'model.safetensors'), bytes);
  writeFileSync(join(out, 'config.json'), JSON.stringify(configJson(s), null, 2) + '\n');
  writeFileSync(join(out, 'generation_config.json'), JSON.stringify(generationConfigJson(), null, 2) + '\n');
  if (tokenizerDir !== out) for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tokenizerDir, f), join(out, f));
  return Object.values(tensors).reduce((a, x) => a + x.data.length, 0);
}

function main() {
  const out = arg('out', join(WORK_DIR, 'init'));
  const num = (k: string, d: number) => Number(arg(k, String(d)));
  const shape: DemoShape = {
    hidden: num('hidden', DEFAULT_SHAPE.hidden),
    layers: num('layers', DEFAULT_SHAPE.layers),
    heads: num('heads', DEFAULT_SHAPE.heads),
    kvHeads: num('kv-heads', DEFAULT_SHAPE.kvHeads),
    intermediate: num('intermediate', DEFAULT_SHAPE.intermediate),
    maxPositions: num('max-positions', DEFAULT_SHAPE.maxPositions),
    tied: arg('tied', String(DEFAULT_SHAPE.tied)) === 'true',
  };
  const n = writeInitialModel(out, arg('tokenizer', MODEL_DIR), shape, num('seed', 0));
  console.log(`init: ${JSON.stringify(shape)}, ${n} parameters (${((n * 4) / 2 ** 20).toFixed(2)} MiB f32) -> ${out}`);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
