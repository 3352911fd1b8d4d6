// Stages pt and sft: next-token cross-entropy over the labelled tokens. A step's loss is
// normalised by the learned tokens of the whole optimizer step (as HF transformers does), and the
// running sum of per-step mean losses stays on the GPU until the next log (no per-step readback).
// ASFT (use_asft_loss) first runs each micro-batch through the reference model (LLaMA-Factory's
// ref_model forward, without dropout): the base with the adapter switched off, or with full /
// freeze training the initial weights swapped in; the loss gets its final hidden states, and the
// initial lm_head where the run trains it.

import type { Tensor } from '../gpu/tensor';
import { gemm, weightParts } from '../kernels/matmul';
import { forwardBackward, referenceFinal, type Workspace } from '../model/forward';
import { makeBatch, rowPixels, type TokenExample, type TrainBatch } from './batches';
import type { Objective, ObjectiveContext, TrainExample, Unlogged } from './objective';

export class SftObjective implements Objective {
  readonly params = [];
  /** Sum of the per-step mean losses since the last log. */
  private readonly lossSum: Tensor;

  constructor(private readonly ctx: ObjectiveContext) {
    const gpu = ctx.model.gpu;
    if (ctx.tokenLoss?.kind === 'asft' && !ctx.adapter && !ctx.withInitialWeights) {
      throw new Error('use_asft_loss needs a reference model: the base with the adapter switched off, or the initial weights of a full / freeze run');
    }
    this.lossSum = gpu.tensor([1, 1], 'f32', 'loss_sum');
    gpu.zero(this.lossSum);
  }

  async prepare(): Promise<void> {}

  async step(micro: readonly (readonly TrainExample[])[]): Promise<number> {
    const { model, padId, cutoffLen } = this.ctx;
    const gpu = model.gpu;
    const batches: TrainBatch[] = [];
    for (const r of micro as TokenExample[][]) batches.push(makeBatch(r, padId, cutoffLen, model.spec.vision, await rowPixels(r)));
    const valid = batches.reduce((a, b) => a + b.validTokens, 0);
    let tokens = 0;
    for (const [i, batch] of batches.entries()) {
      const ws = this.workspace(batch);
      ws.load(batch);
      const noise = this.ctx.embedNoise?.(batch, i) ?? null;
      const reference = await this.reference(ws);
      const dropout = this.ctx.loraDropout?.(i);
      forwardBackward(ws, {
        backward: true, gradScale: 1 / Math.max(1, valid), loraDropout: dropout, tokenLoss: this.ctx.tokenLoss,
        ...(noise ? { embedNoise: noise } : {}), ...this.referenceOptions(reference),
      });
      if (noise) gpu.release(noise);
      if (reference) gpu.release(reference);
      gemm(gpu, { a: ws.ones, b: ws.loss, c: this.lossSum, M: 1, N: 1, K: ws.T, alpha: 1 / Math.max(1, valid), beta: 1, transA: true, lda: 1 });
      tokens += batch.realTokens;
    }
    return tokens;
  }

  async takeMetrics(steps: number): Promise<Record<string, number>> {
    const gpu = this.ctx.model.gpu;
    const loss = (await gpu.readF32(this.lossSum))[0]! / Math.max(1, steps);
    gpu.zero(this.lossSum);
    return { loss };
  }

  /** Mean token loss over the evaluation set. */
  async evaluate(examples: readonly TrainExample[], batchSize: number): Promise<Record<string, number>> {
    const { model, padId, cutoffLen } = this.ctx;
    let sum = 0, tokens = 0;
    for (let i = 0; i < examples.length; i += batchSize) {
      const rows = examples.slice(i, i + batchSize) as TokenExample[];
      const batch = makeBatch(rows, padId, cutoffLen, model.spec.vision, await rowPixels(rows));
      const ws = this.workspace(batch);
      ws.load(batch);
      const reference = await this.reference(ws);
      forwardBackward(ws, { backward: false, gradScale: 1, tokenLoss: this.ctx.tokenLoss, ...this.referenceOptions(reference) });
      sum += (await model.gpu.readF32(ws.loss)).reduce((a, b) => a + b, 0);
      if (reference) model.gpu.release(reference);
      tokens += batch.validTokens;
    }
    return { eval_loss: sum / Math.max(1, tokens) };
  }

  async unlogged(): Promise<Unlogged> {
    return { loss_sum: (await this.ctx.model.gpu.readF32(this.lossSum))[0]! };
  }

  restoreUnlogged(saved: Unlogged | undefined): void {
    this.ctx.model.gpu.write(this.lossSum, Float32Array.of(saved?.loss_sum ?? 0));
  }

  async save(): Promise<void> {}

  async saveState(): Promise<void> {}

  async load(): Promise<void> {}

  release(): void {
    this.ctx.model.gpu.release(this.lossSum);
  }

  /** ASFT: the reference's final hidden states for the loaded batch; null for other losses. */
  private async reference(ws: Workspace): Promise<Tensor | null> {
    if (this.ctx.tokenLoss?.kind !== 'asft') return null;
    const run = async () => referenceFinal(ws);
    return this.ctx.adapter ? this.ctx.adapter.withDisabled(run) : this.ctx.withInitialWeights!(run);
  }

  /** The step options ASFT's reference adds: its hidden states, and its lm_head where the run trains the head. */
  private referenceOptions(final: Tensor | null): { referenceFinal?: Tensor; referenceHead?: Tensor } {
    if (!final) return {};
    const head = this.ctx.initialValue?.(weightParts(this.ctx.model.lmHead.weight)[0]!);
    return { referenceFinal: final, ...(head ? { referenceHead: head } : {}) };
  }

  private workspace(batch: TrainBatch) {
    return this.ctx.workspace(batch.B, batch.S, !!batch.segments);
  }
}
