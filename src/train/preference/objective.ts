// The preference stages inside the Trainer's loop: stage dpo (dpo.ts), kto (kto.ts) and rm
// (reward.ts) behind the Objective interface. This part is what they share: the micro-batch
// results kept until the next log, evaluation, the reference log-probabilities (scored before
// the first step when the reference is the initial weights, kept in every checkpoint) and the
// value head's files.
//
// Gradient accumulation as HF Trainer with model_accepts_loss_kwargs = False: each micro-batch's
// mean loss is divided by the step's number of micro-batches.

import type { PairwiseExample } from '../../data/processor';
import type { Objective, ObjectiveContext, TrainExample, Unlogged } from '../objective';
import { REFERENCE_FILE, ReferenceTable, referenceRows, scoreReference } from '../reference';
import { inDir, storedSource, type RunStore } from '../store';
import { VALUE_HEAD_FILE, type ValueHead } from '../value-head';
import { DpoStage, type PairwiseOutcome } from './dpo';
import { KtoStage } from './kto';
import { checkExamples, checkPreferenceOptions, usesReference, type PreferenceExample, type PreferenceOptions } from './options';
import { SequencePasses } from './passes';
import { RewardStage } from './reward';
import type { MicroResult, StageRunner } from './stage';

/** A training micro-batch's result and its share of the step (1 / micro-batches). */
type Stored = { r: MicroResult; scale: number };

export class PreferenceObjective implements Objective {
  readonly valueHead: ValueHead | null;
  readonly params;
  private readonly passes: SequencePasses;
  private readonly stage: StageRunner;
  private stored: Stored[] = [];

  constructor(ctx: ObjectiveContext, readonly opts: PreferenceOptions) {
    checkPreferenceOptions(opts);
    if (usesReference(opts) && !ctx.adapter && !ctx.reference) {
      throw new Error(`${opts.stage === 'kto' ? 'stage kto' : `pref_loss ${opts.loss}`} needs a reference: a LoRA adapter to switch off, or precomputed reference log-probabilities`);
    }
    this.passes = new SequencePasses(ctx, usesReference(opts) ? ctx.reference ?? null : null);
    this.stage = opts.stage === 'kto' ? new KtoStage(this.passes, opts) : opts.stage === 'rm' ? new RewardStage(this.passes) : new DpoStage(this.passes, opts);
    this.valueHead = this.stage.valueHead;
    this.params = this.stage.params;
  }

  /** Scores every training and evaluation sequence under the initial weights when they are the reference (full / freeze). */
  async prepare(examples: readonly TrainExample[], batchSize: number, onStatus?: (message: string) => void): Promise<void> {
    const table = this.passes.reference;
    if (!table || table.size > 0) return;
    const { model, padId, cutoffLen } = this.passes.ctx;
    const rows = referenceRows(examples as readonly PreferenceExample[]);
    onStatus?.(`reference model: scoring ${rows.length} sequences with the initial weights`);
    await scoreReference(model, rows, table, { padId, cutoffLen, batchSize });
  }

  async step(micro: readonly (readonly TrainExample[])[]): Promise<number> {
    for (const rows of micro) checkExamples(this.opts.stage, rows, 'training data');
    const scale = 1 / Math.max(1, micro.length);
    this.passes.startStep();
    let tokens = 0;
    for (const [i, rows] of micro.entries()) {
      const r = await this.stage.microBatch(rows as readonly PreferenceExample[], scale, true, i);
      this.stored.push({ r, scale });
      tokens += r.tokens;
    }
    return tokens;
  }

  async takeMetrics(steps: number): Promise<Record<string, number>> {
    const stored = this.stored;
    this.stored = [];
    const loss = stored.reduce((a, s) => a + s.r.loss * s.scale, 0) / Math.max(1, steps);
    return { loss, ...this.summarize(stored.map((s) => s.r), '') };
  }

  /** The micro-batch results not yet taken by takeMetrics (plain numbers: a checkpoint keeps them). */
  async unlogged(): Promise<Unlogged> {
    return { loss_sum: 0, objective: this.stored };
  }

  restoreUnlogged(saved: Unlogged | undefined): void {
    this.stored = Array.isArray(saved?.objective) ? (saved.objective as Stored[]) : [];
  }

  async evaluate(examples: readonly TrainExample[], batchSize: number): Promise<Record<string, number>> {
    checkExamples(this.opts.stage, examples, 'evaluation data');
    const results: MicroResult[] = [];
    for (let i = 0; i < examples.length; i += batchSize) results.push(await this.microBatch(examples.slice(i, i + batchSize) as PreferenceExample[], 1, false));
    const n = results.reduce((a, r) => a + r.n, 0);
    const loss = results.reduce((a, r) => a + r.loss * r.n, 0) / Math.max(1, n);
    return { eval_loss: loss, ...this.summarize(results, 'eval_') };
  }

  /** One micro-batch: losses, metrics, and with `backward` the gradients (times `scale`). */
  microBatch(rows: readonly PreferenceExample[], scale: number, backward: boolean): Promise<MicroResult> {
    return this.stage.microBatch(rows, scale, backward, 0);
  }

  /** Stage dpo on pairs, with the log-probabilities it used (what parity with TRL compares). */
  pairwise(pairs: readonly PairwiseExample[], scale: number, backward: boolean): Promise<PairwiseOutcome> {
    if (!(this.stage instanceof DpoStage)) throw new Error(`pairwise runs stage dpo; this objective is stage ${this.opts.stage}`);
    return this.stage.pairwise(pairs, scale, backward);
  }

  /** value_head.safetensors beside the adapter (rm). */
  async save(store: RunStore, dir: string): Promise<void> {
    if (this.valueHead) await store.write(inDir(dir, VALUE_HEAD_FILE), await this.valueHead.safetensors());
  }

  /** The reference log-probabilities of the run's initial weights (a resumed run's have moved on). */
  async saveState(store: RunStore, dir: string): Promise<void> {
    if (this.passes.reference) await store.write(inDir(dir, REFERENCE_FILE), this.passes.reference.toJson());
  }

  async load(store: RunStore, dir: string): Promise<void> {
    if (this.valueHead) await this.valueHead.load(await storedSource(store, inDir(dir, VALUE_HEAD_FILE)));
    const table = this.passes.reference;
    if (!table) return;
    const path = inDir(dir, REFERENCE_FILE);
    if (!(await store.exists(path))) throw new Error(`${dir}: no ${REFERENCE_FILE}; the reference log-probabilities of the run's initial weights are lost, so it cannot resume (start it over)`);
    table.assign(ReferenceTable.fromJson(new TextDecoder().decode(await store.read(path)), path));
  }

  /** Frees the objective's buffers. The value head outlives it, as the adapter outlives the trainer: release it with valueHead.release(). */
  release(): void {
    this.passes.release();
  }

  private summarize(results: readonly MicroResult[], prefix: '' | 'eval_'): Record<string, number> {
    return results.length ? this.stage.summarize(results, prefix) : {};
  }
}
