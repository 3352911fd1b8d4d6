// Stage dpo (pref_loss sigmoid, hinge, ipo, orpo, simpo): each micro-batch is one batch of rows
// [chosen (P rows)..., rejected (P rows)...], its reference and policy log-probabilities, the
// pairwise loss (loss.ts) and one weighted backward.

import type { PairwiseExample } from '../../data/processor';
import { pairwiseLoss, type PairResult } from './loss';
import { usesReference, type PreferenceExample, type PreferenceOptions } from './options';
import type { SequencePasses } from './passes';
import { meanOfBatchMeans, type MicroResult, type StageRunner } from './stage';

export interface PairwiseOutcome extends MicroResult {
  pair: PairResult;
  /** Summed log-probabilities of rows [chosen..., rejected...]. */
  policyLogps: Float64Array;
  refLogps: Float64Array | null;
}

export class DpoStage implements StageRunner {
  readonly valueHead = null;
  readonly params = [];

  constructor(private readonly passes: SequencePasses, private readonly opts: PreferenceOptions) {}

  microBatch(rows: readonly PreferenceExample[], scale: number, backward: boolean): Promise<MicroResult> {
    return this.pairwise(rows as readonly PairwiseExample[], scale, backward);
  }

  async pairwise(pairs: readonly PairwiseExample[], scale: number, backward: boolean): Promise<PairwiseOutcome> {
    const passes = this.passes;
    const P = pairs.length;
    const seqs = [...pairs.map((p) => p.chosen), ...pairs.map((p) => p.rejected)];
    const batch = passes.batch(seqs);
    const ws = passes.workspace(batch);
    const ref = usesReference(this.opts) ? (await passes.referenceLogps(ws, [{ rows: seqs, batch }], backward))[0]! : null;
    const pol = await passes.logps(ws, batch, backward);
    const half = <T extends Float64Array | Int32Array>(a: T, k: number) => a.subarray(k * P, (k + 1) * P) as T;
    const pair = pairwiseLoss(this.opts, {
      chosen: half(pol.logps, 0), rejected: half(pol.logps, 1), chosenLen: half(pol.lens, 0), rejectedLen: half(pol.lens, 1),
      ...(ref ? { refChosen: half(ref, 0), refRejected: half(ref, 1) } : {}),
    });
    if (backward) passes.backward(ws, batch, [...pair.dChosen, ...pair.dRejected].map((d) => d * scale));
    return { loss: pair.loss, n: P, tokens: batch.realTokens, metrics: pair.metrics, pair, policyLogps: pol.logps, refLogps: ref };
  }

  summarize(results: readonly MicroResult[], prefix: '' | 'eval_'): Record<string, number> {
    return meanOfBatchMeans(results, prefix);
  }
}
