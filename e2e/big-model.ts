// A Llama whose single model.safetensors is over 2 GiB, made on demand (never held in memory):
// an embedding and an lm_head of just under 1 GiB each (one SwiftShader binding apiece) around a
// tiny one-layer body. Their values are a cheap function of the element index, so a test can check
// any of them; lm_head is last in the file and ends past byte 2^31.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSafetensors } from '../src/model/safetensors';
import type { GeneratedContent } from '../tests/mockhub/server';
import { writeTinyModel } from './tiny-model';

export const BIG_HIDDEN = 64;
/** Rows of the embedding and lm_head: 65535 * 64 rows of 64 f32 = 1 GiB - 16 KiB each. */
export const BIG_VOCAB = 65_535 * 64;

/** The value of element `e` of the embedding (salt 0) or lm_head (salt 1): a multiple of 1/4096 in [-0.5, 0.5). */
export function bigValue(salt: number, e: number): number {
  return ((Math.imul(e ^ (salt * 0x5bd1e995), 0x9e3779b1) >>> 20) & 0xfff) / 4096 - 0.5;
}

interface Segment {
  begin: number;
  end: number;
  fill(out: Uint8Array, from: number, to: number, at: number): void;
}

function bytesSegment(begin: number, bytes: Uint8Array): Segment {
  return { begin, end: begin + bytes.length, fill: (out, from, to, at) => out.set(bytes.subarray(from, to), at) };
}

function generatedSegment(begin: number, elements: number, salt: number): Segment {
  return {
    begin,
    end: begin + elements * 4,
    fill(out, from, to, at) {
      const e0 = Math.floor(from / 4);
      const e1 = Math.ceil(to / 4);
      const values = new Float32Array(e1 - e0);
      for (let i = 0; i < values.length; i++) values[i] = bigValue(salt, e0 + i);
      out.set(new Uint8Array(values.buffer, from - e0 * 4, to - from), at);
    },
  };
}

/** The model's files: config and tokenizer as bytes, model.safetensors generated. */
export async function bigModelFiles(): Promise<{ files: Record<string, Uint8Array | GeneratedContent>; size: number; lmHeadBegin: number }> {
  const tmp = mkdtempSync(join(tmpdir(), 'crucible-big-model-'));
  const files: Record<string, Uint8Array | GeneratedContent> = {};
  let tiny: Uint8Array;
  try {
    writeTinyModel(tmp, { hidden: BIG_HIDDEN, layers: 1, intermediate: 4096 });
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) files[f] = readFileSync(join(tmp, f));
    const config = JSON.parse(readFileSync(join(tmp, 'config.json'), 'utf8'));
    files['config.json'] = new TextEncoder().encode(JSON.stringify({ ...config, vocab_size: BIG_VOCAB, tie_word_embeddings: false }));
    tiny = new Uint8Array(readFileSync(join(tmp, 'model.safetensors')));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const bytes = tiny;
  const small = await openSafetensors({ name: 'tiny', size: bytes.length, read: async (o, n) => bytes.subarray(o, o + n) });

  // data layout: embedding, the small tensors, lm_head
  const bigBytes = BIG_VOCAB * BIG_HIDDEN * 4;
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const body: Array<{ begin: number; bytes?: Uint8Array; salt?: number; length: number }> = [];
  let at = 0;
  header['model.embed_tokens.weight'] = { dtype: 'F32', shape: [BIG_VOCAB, BIG_HIDDEN], data_offsets: [at, at + bigBytes] };
  body.push({ begin: at, salt: 0, length: bigBytes });
  at += bigBytes;
  for (const [name, t] of small.tensors) {
    if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') continue;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.end - t.begin] };
    body.push({ begin: at, bytes: bytes.subarray(t.begin, t.end), length: t.end - t.begin });
    at += t.end - t.begin;
  }
  header['lm_head.weight'] = { dtype: 'F32', shape: [BIG_VOCAB, BIG_HIDDEN], data_offsets: [at, at + bigBytes] };
  body.push({ begin: at, salt: 1, length: bigBytes });
  at += bigBytes;

  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const head = new Uint8Array(8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.length), true);
  head.set(new TextEncoder().encode(json), 8);
  const segments: Segment[] = [bytesSegment(0, head)];
  for (const b of body) {
    const begin = head.length + b.begin;
    segments.push(b.bytes ? bytesSegment(begin, b.bytes) : generatedSegment(begin, b.length / 4, b.salt!));
  }
  const size = head.length + at;
  files['model.safetensors'] = {
    size,
    read(start, end) {
      const out = new Uint8Array(end - start);
      for (const s of segments) {
        const from = Math.max(start, s.begin);
        const to = Math.min(end, s.end);
        if (from < to) s.fill(out, from - s.begin, to - s.begin, from - start);
      }
      return out;
    },
  };
  return { files, size, lmHeadBegin: head.length + (header['lm_head.weight'] as { data_offsets: number[] }).data_offsets[0]! };
}
