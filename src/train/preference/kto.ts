// Stage kto: target rows with their KL rows (a prompt with a mismatched completion, same shape)
// and desirable / undesirable tags. The KL estimate takes no gradient; the backward reuses the
// targets' forward.

import type { KtoExample } from '../../data/processor';
import { bucketLength } from '../batches';
import { rowsBatch } from '../sequences';
import { ktoLoss, type KtoResult } from './loss';
import type { PreferenceExample, PreferenceOptions } from './options';
import type { RowsBatch, SequencePasses } from './passes';
import type { MicroResult, StageRunner } from './stage';

export class KtoStage implements StageRunner {
  readonly valueHead = null;
  readonly params = [];

  constructor(private readonly passes: SequencePasses, private readonly opts: PreferenceOptions) {}

  microBatch(rows: readonly PreferenceExample[], scale: number, backward: boolean): Promise<MicroResult> {
    const { padId, cutoffLen } = this.passes.ctx;
    const kto = rows as readonly KtoExample[];
    const target = kto.map((e) => ({ input_ids: e.input_ids, labels: e.labels }));
    const kl = kto.map((e) => ({ input_ids: e.kl_input_ids, labels: e.kl_labels }));
    const S = bucketLength(Math.max(...[...target, ...kl].map((r) => r.input_ids.length)), cutoffLen);
    return this.kto({ rows: target, batch: rowsBatch(target, padId, S) }, { rows: kl, batch: rowsBatch(kl, padId, S) }, kto.map((e) => e.kto_tag), scale, backward);
  }

  async kto(target: RowsBatch, kl: RowsBatch, tags: readonly boolean[], scale: number, backward: boolean): Promise<MicroResult & { kto: KtoResult }> {
    const passes = this.passes;
    const [t, k] = [target.batch, kl.batch];
    if (k.B !== t.B || k.S !== t.S) throw new Error(`KL rows ${k.B}x${k.S} must have the shape of the target rows ${t.B}x${t.S}`);
    const ws = passes.workspace(t);
    const [refTarget, refKl] = await passes.referenceLogps(ws, [target, kl], backward);
    const polKl = await passes.logps(ws, k, backward); // no gradient through the KL estimate
    const pol = await passes.logps(ws, t, backward); // last: the backward reuses this forward
    const res = ktoLoss(this.opts, {
      logps: pol.logps, lens: pol.lens, tags, refLogps: refTarget!, klLogps: polKl.logps, refKlLogps: refKl!,
    });
    if (backward) passes.backward(ws, t, res.d.map((d) => d * scale));
    return { loss: res.loss, n: t.B, tokens: t.realTokens + k.realTokens, metrics: {}, kto: res };
  }

  /** LLaMA-Factory's KTO log: sums over the stored batches divided by counts. */
  summarize(results: readonly MicroResult[], prefix: '' | 'eval_'): Record<string, number> {
    const out: Record<string, number> = {};
    const s = { 'rewards/chosen': 0, 'rewards/rejected': 0, 'logps/chosen': 0, 'logps/rejected': 0, chosen: 0, rejected: 0 };
    let kl = 0;
    for (const r of results) {
      for (const key of Object.keys(s) as (keyof typeof s)[]) s[key] += r.kto!.sums[key];
      kl += r.kto!.kl;
    }
    for (const split of ['chosen', 'rejected'] as const) {
      if (s[split] > 0) for (const key of ['rewards', 'logps'] as const) out[`${prefix}${key}/${split}`] = s[`${key}/${split}`] / s[split];
    }
    if (s.chosen > 0 && s.rejected > 0) out[`${prefix}rewards/margins`] = out[`${prefix}rewards/chosen`]! - out[`${prefix}rewards/rejected`]!;
    out[`${prefix}kl`] = kl / results.length;
    return out;
  }
}
