// The GPU passes every preference stage is built from. The fused lm_head loss gives -log p per
// token in ws.loss; one readback of those [T] floats and a sum per row give each sequence's
// log-probability. The stage's loss and its gradient with respect to every sequence's
// log-probability are f64 arithmetic on the host (loss.ts). The LoRA gradients then come from one
// backward of the same forward (forwardBackward's reuseForward), with that per-sequence gradient
// as a per-token weight on the sequence's labelled tokens: by the chain rule
// d L / d θ = Σ_rows (d L / d logp_row) · d logp_row / d θ, and logp_row = -Σ_t loss_t.
//
// The reference model (dpo sigmoid/hinge/ipo, kto) is, with LoRA, the base with the adapter
// switched off (Adapter.withDisabled): no second copy of the weights. With full or freeze
// fine-tuning, or a separate `ref_model`, the reference log-probabilities were computed before
// training (reference.ts) and are looked up.
//
// NEFTune, as HF's forward hook on the input embeddings, adds noise to every forward in training
// mode: the policy's and the adapter-off reference's (fresh noise each), never in evaluation; a
// precomputed reference was scored without noise, as LLaMA-Factory's separate reference model.

import type { Tensor } from '../../gpu/tensor';
import { forwardBackward, type Workspace } from '../../model/forward';
import { bucketLength, type TrainBatch } from '../batches';
import type { ObjectiveContext } from '../objective';
import type { ReferenceTable } from '../reference';
import { rowsBatch, sequenceLogps, type SeqRow } from '../sequences';

/** A batch with the rows it was made from (the keys of precomputed reference log-probabilities). */
export interface RowsBatch {
  rows: readonly SeqRow[];
  batch: TrainBatch;
}

export class SequencePasses {
  /** Per-token gradient weights, one tensor per batch size in tokens. */
  private readonly weights = new Map<number, Tensor>();
  /** Forwards with NEFTune noise in the current step (each draws its own). */
  private noisyForwards = 0;

  /** `reference`: precomputed reference log-probabilities; null: the adapter switched off is the reference. */
  constructor(readonly ctx: ObjectiveContext, readonly reference: ReferenceTable | null) {}

  /** Rows padded to their bucketed length (at most cutoff_len), one row per sequence. */
  batch(rows: readonly SeqRow[]): TrainBatch & { lengths: Int32Array } {
    return rowsBatch(rows, this.ctx.padId, bucketLength(Math.max(...rows.map((r) => r.input_ids.length)), this.ctx.cutoffLen));
  }

  workspace(batch: TrainBatch): Workspace {
    return this.ctx.workspace(batch.B, batch.S);
  }

  /** A new optimizer step: its noisy forwards are counted from 0 again. */
  startStep(): void {
    this.noisyForwards = 0;
  }

  /** Summed log-probabilities of a batch under the current weights (leaves its forward in ws); `training` adds NEFTune noise. */
  async logps(ws: Workspace, batch: TrainBatch, training: boolean): Promise<{ logps: Float64Array; lens: Int32Array }> {
    const noise = this.noise(batch, training);
    try {
      return await sequenceLogps(ws, batch, noise ?? undefined);
    } finally {
      if (noise) this.ctx.model.gpu.release(noise);
    }
  }

  /** NEFTune noise for a forward of `batch` in training (each draws its own), or null. */
  noise(batch: TrainBatch, training: boolean): Tensor | null {
    return training ? this.ctx.embedNoise?.(batch, this.noisyForwards++) ?? null : null;
  }

  /** The same under the reference model: looked up when precomputed, else the base with the adapter switched off. */
  async referenceLogps(ws: Workspace, batches: readonly RowsBatch[], training: boolean): Promise<Float64Array[]> {
    const table = this.reference;
    if (table) return batches.map((b) => Float64Array.from(b.rows, (r) => table.get(r)));
    return this.ctx.adapter!.withDisabled(async () => {
      const out = [];
      for (const b of batches) out.push((await this.logps(ws, b.batch, training)).logps);
      return out;
    });
  }

  /** Backward of the forward in ws with d loss / d logp(row) = dRow[row]: weight -dRow on the row's labelled tokens. */
  backward(ws: Workspace, batch: TrainBatch, dRow: readonly number[]): void {
    const gpu = this.ctx.model.gpu;
    const { B, S } = batch;
    const w = new Float32Array(B * S);
    for (let b = 0; b < B; b++) for (let t = 0; t < S; t++) if (batch.labels[b * S + t] !== -100) w[b * S + t] = -dRow[b]!;
    let tw = this.weights.get(B * S);
    if (!tw) this.weights.set(B * S, (tw = gpu.tensor([B * S], 'f32', 'token weights')));
    gpu.write(tw, w);
    forwardBackward(ws, { backward: true, gradScale: 1, tokenWeights: tw, reuseForward: true });
  }

  release(): void {
    this.ctx.model.gpu.release(...this.weights.values());
    this.weights.clear();
  }
}
