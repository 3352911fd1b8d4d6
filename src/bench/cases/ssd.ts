// Mamba-2 SSD scan cases, one list for both uses: tests/kernels.ssd.test.ts checks the small ones
// against the f64 reference, the kernel benchmark times the real one (`bench`).

import type { Gpu } from '../../gpu/runtime';
import { ssdBackward, ssdForward, ssdRecurrent, ssdSavedElements, type SsdShape } from '../../kernels/ssd';
import { filler, type Scale, type Timed } from './timed';

export interface SsdCase extends SsdShape {
  chunk: number;
  bench?: boolean;
}

export const SSD_CASES: readonly SsdCase[] = [
  { batch: 1, len: 1, heads: 1, groups: 1, stateDim: 1, headDim: 1, chunk: 1 },
  { batch: 2, len: 10, heads: 4, groups: 2, stateDim: 4, headDim: 3, chunk: 4 }, // grouped B/C, a short last chunk
  { batch: 1, len: 13, heads: 2, groups: 1, stateDim: 8, headDim: 40, chunk: 5 }, // several column blocks
  { batch: 1, len: 33, heads: 3, groups: 3, stateDim: 16, headDim: 8, chunk: 16, dtMax: 1.0 }, // the dt clamp
  { batch: 1, len: 40, heads: 2, groups: 1, stateDim: 128, headDim: 64, chunk: 32 }, // Granite 4's state and head sizes
  // Granite-4.0-H-1B-like Mamba layer: 48 heads of 64, d_state 128, one group, 512 tokens, chunks of 64
  { batch: 1, len: 512, heads: 48, groups: 1, stateDim: 128, headDim: 64, chunk: 64, bench: true },
];

function inputs(gpu: Gpu, s: SsdShape) {
  const { batch: B, len: T, heads: H, groups: G, stateDim: N, headDim: P } = s;
  const up = (a: Float32Array) => gpu.upload(a, [a.length]);
  return {
    x: { x: up(filler(B * T * H * P)), dt: up(filler(B * T * H)), Bm: up(filler(B * T * G * N)), Cm: up(filler(B * T * G * N)) },
    w: { dtBias: up(filler(H)), aLog: up(filler(H)), D: up(filler(H).map((v) => 1 + v)) },
  };
}

/** The chunked forward (with the record for the backward), or the backward from one forward. */
export function ssdTimed(gpu: Gpu, c: SsdCase, n: Scale, backward: boolean): Timed {
  const s: SsdShape = { ...c, len: n(c.len) };
  const { batch: B, len: T, heads: H, groups: G, stateDim: N, headDim: P } = s;
  const { x, w } = inputs(gpu, s);
  const y = gpu.tensor([B * T * H * P]), saved = gpu.tensor([ssdSavedElements(s, c.chunk)]);
  const grads = { dx: gpu.tensor([B * T * H * P]), ddt: gpu.tensor([B * T * H]), dBm: gpu.tensor([B * T * G * N]), dCm: gpu.tensor([B * T * G * N]) };
  const forward = () => ssdForward(gpu, s, x, w, y, { chunk: c.chunk, saved });
  forward();
  // per head: the scores, the outputs (inter and intra chunk) and the state updates, or the backward's recurrence
  const perHead = backward ? 8 * T * N * P : T * (2 * c.chunk * N + 2 * N * P + 2 * c.chunk * P + 2 * N * P);
  return {
    kernel: `ssd ${backward ? 'backward' : 'chunked forward'}`,
    shape: `${B}x${T} h${H} g${G} n${N} p${P} c${c.chunk}`,
    flops: B * H * perHead,
    run: backward ? () => ssdBackward(gpu, s, x, w, saved, c.chunk, y, grads) : forward,
    release: () => gpu.release(...Object.values(x), ...Object.values(w), y, saved, ...Object.values(grads)),
  };
}

/** One decode step (a token per batch row) with the recurrent state, at the case's heads. */
export function ssdDecodeTimed(gpu: Gpu, c: SsdCase): Timed {
  const s: SsdShape = { ...c, len: 1 };
  const { batch: B, heads: H, stateDim: N, headDim: P } = s;
  const { x, w } = inputs(gpu, s);
  const ns = B * H * N * P;
  const y = gpu.tensor([B * H * P]), state = gpu.upload(filler(ns), [ns]);
  return {
    kernel: 'ssd decode step',
    shape: `${B} h${H} n${N} p${P}`,
    flops: 4 * ns,
    bytes: 2 * 4 * ns,
    run: () => ssdRecurrent(gpu, s, x, w, y, state),
    release: () => gpu.release(...Object.values(x), ...Object.values(w), y, state),
  };
}
