// Gated delta rule cases, one list for both uses: tests/kernels.delta-rule.test.ts checks the small
// ones against the f64 reference, the kernel benchmark times the real one (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { deltaRuleBackward, deltaRuleForward, deltaRuleRecurrent, deltaRuleSavedElements, type DeltaRuleShape } from '../../kernels/delta-rule';
import { filler, type Scale, type Timed } from './timed';

export interface DeltaRuleCase extends Omit<DeltaRuleShape, 'scale'> {
  chunk: number;
  bench?: boolean;
}

export const DELTA_RULE_CASES: readonly DeltaRuleCase[] = [
  { batch: 1, len: 1, keyHeads: 1, valueHeads: 1, keyDim: 1, valueDim: 1, chunk: 1 },
  { batch: 2, len: 10, keyHeads: 1, valueHeads: 2, keyDim: 4, valueDim: 3, chunk: 4 }, // GQA, a short last chunk
  { batch: 1, len: 13, keyHeads: 2, valueHeads: 2, keyDim: 8, valueDim: 40, chunk: 5 }, // several column blocks
  { batch: 1, len: 33, keyHeads: 1, valueHeads: 3, keyDim: 16, valueDim: 8, chunk: 16 },
  { batch: 1, len: 70, keyHeads: 1, valueHeads: 2, keyDim: 128, valueDim: 128, chunk: 64 }, // the real head dims and chunk
  // Qwen3.5-0.8B-shaped: 16 key and 16 value heads of 128, 512 tokens, chunks of 64
  { batch: 1, len: 512, keyHeads: 16, valueHeads: 16, keyDim: 128, valueDim: 128, chunk: 64, bench: true },
];

/** The chunked forward (with the record for the backward), or the backward from one forward. */
export function deltaRuleTimed(gpu: Gpu, c: DeltaRuleCase, n: Scale, backward: boolean): Timed {
  const s: DeltaRuleShape = { ...c, len: n(c.len), scale: 1 / Math.sqrt(c.keyDim) };
  const { batch: B, len: T, keyHeads: Hk, valueHeads: Hv, keyDim: Dk, valueDim: Dv } = s;
  const nqk = B * T * Hk * Dk, nv = B * T * Hv * Dv, ng = B * T * Hv;
  const x = {
    q: gpu.upload(filler(nqk), [nqk]), k: gpu.upload(filler(nqk), [nqk]), v: gpu.upload(filler(nv), [nv]),
    g: gpu.upload(filler(ng).map((v) => -0.1 - Math.abs(v)), [ng]), beta: gpu.upload(filler(ng).map((v) => 0.5 + v / 2), [ng]),
  };
  const out = gpu.tensor([nv]), saved = gpu.tensor([deltaRuleSavedElements(s, c.chunk)]);
  const grads = { dq: gpu.tensor([nqk]), dk: gpu.tensor([nqk]), dv: gpu.tensor([nv]), dg: gpu.tensor([ng]), dbeta: gpu.tensor([ng]) };
  const forward = () => deltaRuleForward(gpu, s, x, out, { chunk: c.chunk, saved });
  forward();
  // per head: the chunk matmuls (A, QK, the UT solve, D, outputs, state updates) or the backward's recurrence
  const perHead = backward ? 12 * T * Dk * Dv : T * (4 * c.chunk * Dk + c.chunk * (Dk + Dv) + 6 * Dk * Dv + 2 * c.chunk * Dv);
  return {
    kernel: `deltaRule ${backward ? 'backward' : 'chunked forward'}`,
    shape: `${B}x${T} h${Hk}/${Hv} d${Dk}/${Dv} c${c.chunk}`,
    flops: B * Hv * perHead,
    run: backward ? () => deltaRuleBackward(gpu, s, x, saved, c.chunk, out, grads) : forward,
    release: () => gpu.release(...Object.values(x), out, saved, ...Object.values(grads)),
  };
}

/** One decode step (a token per batch row) with the recurrent state, at the case's heads. */
export function deltaRuleDecodeTimed(gpu: Gpu, c: DeltaRuleCase): Timed {
  const s: DeltaRuleShape = { ...c, len: 1, scale: 1 / Math.sqrt(c.keyDim) };
  const { batch: B, keyHeads: Hk, valueHeads: Hv, keyDim: Dk, valueDim: Dv } = s;
  const nqk = B * Hk * Dk, nv = B * Hv * Dv, ng = B * Hv, ns = B * Hv * Dk * Dv;
  const x = {
    q: gpu.upload(filler(nqk), [nqk]), k: gpu.upload(filler(nqk), [nqk]), v: gpu.upload(filler(nv), [nv]),
    g: gpu.upload(filler(ng).map((v) => -0.1 - Math.abs(v)), [ng]), beta: gpu.upload(filler(ng).map((v) => 0.5 + v / 2), [ng]),
  };
  const out = gpu.tensor([nv]), state = gpu.upload(filler(ns), [ns]);
  return {
    kernel: 'deltaRule decode step',
    shape: `${B} h${Hk}/${Hv} d${Dk}/${Dv}`,
    flops: 6 * ns,
    bytes: 2 * 4 * ns,
    run: () => deltaRuleRecurrent(gpu, s, x, out, state),
    release: () => gpu.release(...Object.values(x), out, state),
  };
}
