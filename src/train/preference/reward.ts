// Stage rm: a reward model reads a value head (value-head.ts) on each sequence's last token of a
// batch [chosen..., rejected...]; its gradient enters the backward at ws.final through
// forwardBackward's `head` option. Trains with lora_dropout, as LLaMA-Factory's PairwiseTrainer.

import type { PairwiseExample } from '../../data/processor';
import { forwardBackward } from '../../model/forward';
import type { TrainBatch } from '../batches';
import { ValueHead } from '../value-head';
import { rewardLoss, type RewardResult } from './loss';
import type { PreferenceExample } from './options';
import type { SequencePasses } from './passes';
import { meanOfBatchMeans, type MicroResult, type StageRunner } from './stage';

export class RewardStage implements StageRunner {
  readonly valueHead: ValueHead;
  readonly params;

  constructor(private readonly passes: SequencePasses) {
    const { model, random } = passes.ctx;
    this.valueHead = ValueHead.create(model.gpu, model.spec.hidden, random);
    this.params = this.valueHead.params();
  }

  microBatch(rows: readonly PreferenceExample[], scale: number, backward: boolean, micro: number): Promise<MicroResult> {
    const pairs = rows as readonly PairwiseExample[];
    return this.reward(this.passes.batch([...pairs.map((p) => p.chosen), ...pairs.map((p) => p.rejected)]), pairs.length, scale, backward, micro);
  }

  /** rm on a batch of rows [chosen..., rejected...]: value head on each row's last token. */
  async reward(batch: TrainBatch & { lengths: Int32Array }, P: number, scale: number, backward: boolean, micro = 0): Promise<MicroResult & { scores: Float32Array; reward: RewardResult }> {
    const { passes, valueHead: head } = this;
    const ws = passes.workspace(batch);
    ws.load(batch);
    const last = Array.from(batch.lengths, (n, b) => b * batch.S + n - 1);
    const noise = passes.noise(batch, backward);
    const dropout = backward ? passes.ctx.loraDropout?.(micro) : undefined;
    forwardBackward(ws, { backward: false, gradScale: 1, head: () => {}, ...(noise ? { embedNoise: noise } : {}), ...(dropout ? { loraDropout: dropout } : {}) });
    if (noise) passes.ctx.model.gpu.release(noise);
    const scores = await head.scores(ws, last);
    const res = rewardLoss(scores.subarray(0, P), scores.subarray(P, 2 * P));
    if (backward) {
      const d = Float32Array.from([...res.dChosen, ...res.dRejected], (g) => g * scale);
      forwardBackward(ws, { backward: true, gradScale: 1, reuseForward: true, head: (dFinal) => head.backward(ws, last, d, dFinal), ...(dropout ? { loraDropout: dropout } : {}) });
    }
    return { loss: res.loss, n: P, tokens: batch.realTokens, metrics: { accuracy: res.accuracy }, scores, reward: res };
  }

  summarize(results: readonly MicroResult[], prefix: '' | 'eval_'): Record<string, number> {
    if (prefix === '') return meanOfBatchMeans(results, prefix);
    // LLaMA-Factory's ComputeAccuracy: over every evaluated pair
    const n = results.reduce((a, r) => a + r.n, 0);
    return { eval_accuracy: results.reduce((a, r) => a + r.metrics.accuracy! * r.n, 0) / n };
  }
}
