// A tiny random Qwen2-VL checkpoint (tests/fixtures/synthetic/qwen2_vl/config.json, weights from a
// seeded RNG) for generation and chat tests; `chat: true` adds a byte-level tokenizer whose special
// tokens (<|im_start|>, <|image_pad|>, ...) are the config's ids, Qwen2-VL's own chat template and a
// preprocessor_config.json, so the folder loads as a chat model.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeSafetensors } from '../../src/model/safetensors';
import type { Rng } from './check';
import { refQwen2VLParameters } from '../reference/qwen2vl';

type Json = Record<string, unknown>;
const base = JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/synthetic/qwen2_vl/config.json'), 'utf8')) as Json;

/** The chat model's special tokens, after the 256 byte tokens. */
export const SPECIAL = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|vision_start|>', '<|vision_end|>', '<|image_pad|>', '<|video_pad|>'] as const;
const idOf = (t: (typeof SPECIAL)[number]) => 256 + SPECIAL.indexOf(t);

/** The fixture's config; for chat, a vocabulary of 256 bytes + the special tokens. */
export function qwen2vlConfig(chat = false): Json {
  if (!chat) return base;
  const text = base.text_config as Json;
  return {
    ...base,
    image_token_id: idOf('<|image_pad|>'), video_token_id: idOf('<|video_pad|>'),
    vision_start_token_id: idOf('<|vision_start|>'), vision_end_token_id: idOf('<|vision_end|>'),
    text_config: { ...text, vocab_size: 256 + SPECIAL.length + 1, bos_token_id: idOf('<|endoftext|>'), eos_token_id: idOf('<|im_end|>') },
  };
}

/** Weights of every parameter transformers creates, around the values a trained model has. */
export function synthesizeQwen2VL(rng: Rng, config: Json): Map<string, Float32Array> {
  const w = new Map<string, Float32Array>();
  for (const [name, shape] of refQwen2VLParameters(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let v: Float32Array;
    if (/norm[12]?\.weight$|ln_q\.weight$|layernorm\.weight$/.test(name)) v = Float32Array.from(rng.randn(n, 0.1), (x) => 1 + x);
    else if (name.endsWith('.bias')) v = rng.randn(n, 0.1);
    else if (name.endsWith('embed_tokens.weight')) v = rng.randn(n, 0.3);
    else v = rng.randn(n, (/q_proj|k_proj|attn\.qkv/.test(name) ? 2 : 1) / Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1)));
    w.set(name, v);
  }
  return w;
}

/** Qwen2-VL-2B-Instruct's chat template. */
export const QWEN2VL_CHAT_TEMPLATE = "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/** GPT-2's bytes_to_unicode: the character byte-level BPE writes for each byte. */
function byteChars(): string[] {
  const keep = [...Array(256).keys()].filter((b) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255));
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCharCode(keep.includes(b) ? b : 256 + extra++);
  return out;
}

function chatFiles(dir: string): void {
  const vocab = Object.fromEntries(byteChars().map((c, b) => [c, b]));
  const added = SPECIAL.map((content) => ({ id: idOf(content), content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null, decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  }));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({
    eos_token: '<|im_end|>', pad_token: '<|endoftext|>', bos_token: null, chat_template: QWEN2VL_CHAT_TEMPLATE,
    added_tokens_decoder: Object.fromEntries(added.map(({ id, ...t }) => [String(id), t])),
  }));
  // small images: smart_resize caps them at 16 x 16 pixels (an 8 x 8 grid of 2-pixel patches, 16 tokens)
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify({
    image_processor_type: 'Qwen2VLImageProcessor', patch_size: 2, merge_size: 2, temporal_patch_size: 2,
    min_pixels: 16, max_pixels: 256, image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711], rescale_factor: 1 / 255,
  }));
}

/** A checkpoint folder of these weights (transformers 5's names); `chat` adds the tokenizer files. */
export function writeQwen2VL(weights: Map<string, Float32Array>, config: Json, chat = false): string {
  const dir = mkdtempSync(join(tmpdir(), 'qwen2vl-'));
  const shapes = new Map(refQwen2VLParameters(config));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(
    Object.fromEntries([...weights].map(([n, data]) => [n, { dtype: 'F32' as const, shape: shapes.get(n)!, data }])),
    { format: 'pt' },
  ));
  if (chat) chatFiles(dir);
  return dir;
}
