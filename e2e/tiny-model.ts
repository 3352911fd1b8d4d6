// A tiny random Llama with a byte-level tokenizer and a ChatML template, for developing the app and
// its end-to-end test when the embedded demo model (public/demo/model) is not there.
//
//   node --import ./bin/register.js e2e/tiny-model.ts <out-dir>

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeSafetensors, type TensorToWrite } from '../src/model/safetensors';
import { SPECIALS } from '../scripts/demo/common';
import { byteChars, CHAT_TEMPLATE } from '../scripts/demo/train-tokenizer';

export function writeTinyModel(dir: string, opts: { hidden?: number; layers?: number; intermediate?: number; vocab?: number; seed?: number } = {}): void {
  mkdirSync(dir, { recursive: true });
  const chars = byteChars();
  const vocab: Record<string, number> = {};
  chars.forEach((c, i) => (vocab[c] = i));
  SPECIALS.forEach((s, i) => (vocab[s] = 256 + i));
  const V = Math.max(opts.vocab ?? 0, 256 + SPECIALS.length);
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, i) => ({ id: 256 + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
  };
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({ bos_token: null, eos_token: '<|im_end|>', pad_token: '<|endoftext|>', chat_template: CHAT_TEMPLATE, model_max_length: 512, add_bos_token: false }, null, 2),
  );
  const D = opts.hidden ?? 32, L = opts.layers ?? 2, H = 4, KV = 2, Dh = D / H, I = opts.intermediate ?? 2 * D;
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: D,
    intermediate_size: I,
    num_attention_heads: H,
    num_key_value_heads: KV,
    head_dim: Dh,
    num_hidden_layers: L,
    vocab_size: V,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    hidden_act: 'silu',
    tie_word_embeddings: false,
    bos_token_id: null,
    eos_token_id: 258,
    pad_token_id: 256,
    torch_dtype: 'float32',
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [258, 256], pad_token_id: 256, temperature: 0.7, top_p: 0.9 }, null, 2));
  let s = (opts.seed ?? 7) >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = (n: number, std: number) => Float32Array.from({ length: n }, () => (rand() + rand() + rand() - 1.5) * 2 * std);
  const t: Record<string, TensorToWrite> = {};
  const mat = (name: string, rows: number, cols: number) => (t[name] = { dtype: 'F32', shape: [rows, cols], data: normal(rows * cols, 0.05) });
  const ones = (name: string, n: number) => (t[name] = { dtype: 'F32', shape: [n], data: new Float32Array(n).fill(1) });
  mat('model.embed_tokens.weight', V, D);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    mat(`${p}.self_attn.q_proj.weight`, H * Dh, D);
    mat(`${p}.self_attn.k_proj.weight`, KV * Dh, D);
    mat(`${p}.self_attn.v_proj.weight`, KV * Dh, D);
    mat(`${p}.self_attn.o_proj.weight`, D, H * Dh);
    mat(`${p}.mlp.gate_proj.weight`, I, D);
    mat(`${p}.mlp.up_proj.weight`, I, D);
    mat(`${p}.mlp.down_proj.weight`, D, I);
    ones(`${p}.input_layernorm.weight`, D);
    ones(`${p}.post_attention_layernorm.weight`, D);
  }
  ones('model.norm.weight', D);
  mat('lm_head.weight', V, D);
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(t, { format: 'pt' }));
}

if (process.argv[1]?.endsWith('tiny-model.ts') && process.argv[2]) writeTinyModel(process.argv[2]);
