// Attention cases, one list for both uses: tests/kernels.attention.test.ts checks the small ones
// (forward, and backward where asked) against the f64 reference, the kernel benchmark times the
// real ones (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { attentionBackward, attentionForward, type AttentionOptions, type AttentionShape } from '../../kernels/attention';
import { filler, type Scale, type Timed } from './timed';

export type AttentionCase = Omit<AttentionShape, 'segments' | 'scale'> & {
  name: string;
  /** Default 1 / sqrt(headDim). */
  scale?: number;
  /** Packed sequences: a new segment starts with this probability at each position. */
  packed?: number;
  backward?: boolean;
  /** Forward without lse (inference). */
  noLse?: boolean;
  /** Run the backward twice and require bit-identical gradients. */
  twice?: boolean;
  /** Tiles of a smaller workgroup storage, or 'device' for the device's limit (the tests' default is smaller). */
  opts?: AttentionOptions | 'device';
  bench?: boolean;
};

export const ATTENTION_CASES: readonly AttentionCase[] = [
  { name: 'GQA 4:2, device tiles', batch: 2, qLen: 17, kvLen: 17, heads: 4, kvHeads: 2, headDim: 16, backward: true, opts: 'device' },
  { name: 'GQA 6:1', batch: 1, qLen: 100, kvLen: 100, heads: 6, kvHeads: 1, headDim: 24, backward: true, twice: true },
  { name: 'MHA softcap', batch: 1, qLen: 100, kvLen: 100, heads: 3, kvHeads: 3, headDim: 40, softcap: 1.5, backward: true },
  { name: 'window', batch: 2, qLen: 37, kvLen: 37, heads: 4, kvHeads: 2, headDim: 24, window: 5, backward: true },
  { name: 'window + softcap, Gemma scale', batch: 1, qLen: 45, kvLen: 45, heads: 6, kvHeads: 2, headDim: 16, window: 9, softcap: 2, scale: 0.3, backward: true },
  { name: 'packed segments', batch: 2, qLen: 40, kvLen: 40, heads: 4, kvHeads: 2, headDim: 16, packed: 0.12, backward: true },
  { name: 'one token', batch: 1, qLen: 1, kvLen: 1, heads: 2, kvHeads: 1, headDim: 16, backward: true },
  { name: 'decode 1 of 20 in 32, no lse', batch: 2, qLen: 1, kvLen: 20, kvCapacity: 32, heads: 4, kvHeads: 2, headDim: 16, noLse: true },
  { name: 'decode 3 of 20 in 32', batch: 2, qLen: 3, kvLen: 20, kvCapacity: 32, heads: 6, kvHeads: 2, headDim: 24, backward: true },
  { name: 'decode MHA, odd head dim, window', batch: 1, qLen: 2, kvLen: 20, kvCapacity: 32, heads: 2, kvHeads: 2, headDim: 7, window: 6 },
  { name: 'head dim 128', batch: 1, qLen: 20, kvLen: 20, heads: 4, kvHeads: 1, headDim: 128, backward: true },
  { name: 'head dim 256 in 16 KiB', batch: 1, qLen: 9, kvLen: 9, heads: 2, kvHeads: 1, headDim: 256, softcap: 3, backward: true, opts: { storageBytes: 16384 } },
  {
    name: 'tiny tiles (4 KiB): packed + window + softcap', batch: 2, qLen: 100, kvLen: 100, heads: 4, kvHeads: 2, headDim: 16,
    packed: 0.03, window: 30, softcap: 1.5, backward: true, opts: { storageBytes: 4096 },
  },
  // Qwen2.5-0.5B training at 8 x 512
  { name: 'Qwen2.5-0.5B 8x512', batch: 8, qLen: 512, kvLen: 512, heads: 14, kvHeads: 2, headDim: 64, backward: true, bench: true },
];

/** The forward, and with `backward` the backward alone (its inputs from one forward). */
export function attentionTimed(gpu: Gpu, c: AttentionCase, n: Scale, backward: boolean): Timed {
  const S = n(c.qLen), { batch: B, heads: H, kvHeads: Hkv, headDim: Dh } = c;
  const q = gpu.upload(filler(B * S * H * Dh), [B, S, H, Dh]);
  const k = gpu.upload(filler(B * S * Hkv * Dh), [B, S, Hkv, Dh]), v = gpu.upload(filler(B * S * Hkv * Dh), [B, S, Hkv, Dh]);
  const o = gpu.tensor([B, S, H, Dh]), lse = gpu.tensor([B, H, S]);
  const shape: AttentionShape = { batch: B, qLen: S, kvLen: S, heads: H, kvHeads: Hkv, headDim: Dh, scale: c.scale ?? 1 / Math.sqrt(Dh) };
  const forward = 2 * 2 * B * H * S * S * Dh / 2; // causal: half the score matrix, QK and PV
  const common = { shape: `B=${B} S=${S} H=${H}/${Hkv} Dh=${Dh}` };
  if (!backward) {
    return { ...common, kernel: 'attention forward', flops: forward, run: () => attentionForward(gpu, q, k, v, o, lse, shape), release: () => gpu.release(q, k, v, o, lse) };
  }
  attentionForward(gpu, q, k, v, o, lse, shape);
  const dq = gpu.tensor([B, S, H, Dh]), dk = gpu.tensor([B, S, Hkv, Dh]), dv = gpu.tensor([B, S, Hkv, Dh]);
  return {
    ...common, kernel: 'attention backward', flops: 2.5 * forward,
    run: () => attentionBackward(gpu, o, q, k, v, o, lse, dq, dk, dv, shape),
    release: () => gpu.release(q, k, v, o, lse, dq, dk, dv),
  };
}
