// Whole sequences as the preference stages see them: rows padded into a batch, and each row's
// log-probability (summed over its labelled tokens) from one forward of the fused lm_head loss.

import type { Tensor } from '../gpu/tensor';
import { forwardBackward, shiftLabels, type Workspace } from '../model/forward';
import type { TrainBatch } from './batches';

export interface SeqRow {
  input_ids: readonly number[];
  labels: readonly number[];
}

/** Right-padded rows of S tokens with shifted labels (as makeBatch), plus each row's length. */
export function rowsBatch(rows: readonly SeqRow[], padId: number, S: number): TrainBatch & { lengths: Int32Array } {
  const B = rows.length;
  const ids = new Int32Array(B * S).fill(padId);
  const labels = new Int32Array(B * S).fill(-100);
  const positions = new Int32Array(B * S);
  const lengths = new Int32Array(B);
  let realTokens = 0;
  rows.forEach((r, b) => {
    const n = r.input_ids.length;
    if (r.labels.length !== n) throw new Error(`row ${b}: ${n} input_ids but ${r.labels.length} labels`);
    if (n > S) throw new Error(`row ${b}: ${n} tokens do not fit ${S}`);
    if (n === 0) throw new Error(`row ${b} is empty`);
    ids.set(r.input_ids, b * S);
    labels.set(r.labels, b * S);
    for (let t = 0; t < S; t++) positions[b * S + t] = t;
    lengths[b] = n;
    realTokens += n;
  });
  const shifted = shiftLabels(labels, B, S);
  return { B, S, ids, labels: shifted, positions, lengths, realTokens, validTokens: shifted.reduce((a, l) => a + (l !== -100 ? 1 : 0), 0) };
}

/** Summed log-probability and labelled tokens per row, from the per-token -log p of a forward. */
export function rowLogps(tokenLoss: Float32Array, labels: Int32Array, B: number, S: number, vocab: number): { logps: Float64Array; lens: Int32Array } {
  const logps = new Float64Array(B), lens = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < S; t++) {
      const l = labels[b * S + t]!;
      if (l < 0 || l >= vocab) continue;
      logps[b] -= tokenLoss[b * S + t]!;
      lens[b]++;
    }
  }
  return { logps, lens };
}

/** Each row's summed log-probability under the workspace's model as it is now (leaves the forward in ws, for a backward). */
export async function sequenceLogps(ws: Workspace, batch: TrainBatch, embedNoise?: Tensor): Promise<{ logps: Float64Array; lens: Int32Array }> {
  ws.load(batch);
  forwardBackward(ws, { backward: false, gradScale: 1, ...(embedNoise ? { embedNoise } : {}) });
  const loss = await ws.model.gpu.readF32(ws.loss);
  return rowLogps(loss, batch.labels, batch.B, batch.S, ws.model.spec.vocab);
}
