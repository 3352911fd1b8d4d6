// Preference stages inside the Trainer's loop: stage dpo (pref_loss sigmoid, hinge, ipo, orpo,
// simpo), stage kto and stage rm, with LLaMA-Factory's keys and data (PairwiseExample: chosen
// rows then rejected rows; KtoExample: target rows with their KL rows and tags).
//
// How a step works. The fused lm_head loss gives -log p per token in ws.loss; one readback of
// those [T] floats and a sum per row give each sequence's log-probability. The preference loss and
// its gradient with respect to every sequence's log-probability are plain f64 arithmetic on the
// host (pairwiseLoss / ktoLoss / rewardLoss below). The LoRA gradients then come from one
// backward of the same forward (forwardBackward's reuseForward), with that per-sequence gradient
// as a per-token weight on the sequence's labelled tokens (tokenWeights): by the chain rule
// d L / d θ = Σ_rows (d L / d logp_row) · d logp_row / d θ, and logp_row = -Σ_t loss_t.
//
// The reference model (dpo sigmoid/hinge/ipo, kto) is, with LoRA, the base with the adapter
// switched off (Adapter.withDisabled): no second copy of the weights. With full or freeze
// fine-tuning, or a separate `ref_model`, the reference log-probabilities were computed before
// training (reference.ts) and are looked up. orpo and simpo use no reference; rm uses none either.
//
// NEFTune, as HF's forward hook on the input embeddings, adds noise to every forward in training
// mode: the policy's and the adapter-off reference's (fresh noise each), never in evaluation; a
// precomputed reference was scored without noise, as LLaMA-Factory's separate reference model.
//
// The reward model (rm) reads a value head (value-head.ts) on each sequence's last token; its
// gradient enters the backward at ws.final through forwardBackward's `head` option.
//
// Formulas, with their sources (log-probs are summed over labelled tokens after the causal shift;
// ipo, orpo and simpo use the average over those tokens, as LLaMA-Factory's concatenated_forward):
//   u = (π_c - π_r) - (ref_c - ref_r)
//   sigmoid  -(1-ε) logσ(βu) - ε logσ(-βu)            TRL DPOTrainer.dpo_loss (ε = dpo_label_smoothing)
//   hinge    relu(1 - βu)                               TRL (SLiC)
//   ipo      (u - 1/(2β))²                              TRL (IPO eq. 17)
//   orpo     -π_c - β logσ(log_odds), log_odds = (π_c - π_r) - (log(1-e^π_c) - log(1-e^π_r))
//                                                      LLaMA-Factory CustomDPOTrainer.odds_ratio_loss
//   simpo    -logσ(β(π_c - π_r) - γ)                    LLaMA-Factory simpo_loss (γ = simpo_gamma)
//   + pref_ftx · (-avg log p(chosen))                   LLaMA-Factory get_batch_loss_metrics
//   rewards: β(π - ref) (orpo, simpo: β π); the loss is the mean over pairs.
//   kto      KL = max(0, mean(π_KL - ref_KL)) (no gradient),
//            desirable  w_d (1 - σ(β(Δ - KL))), undesirable w_u (1 - σ(β(KL - Δ))), Δ = π - ref,
//            mean over the batch; + pref_ftx · mean(-avg log p(chosen)) · B / n_chosen
//                                                      TRL KTOTrainer.kto_loss, LLaMA-Factory kto/trainer.py
//   rm       -logσ(r_c - r_r), r = value head at the last non-padding token
//                                                      LLaMA-Factory PairwiseTrainer.compute_loss
// Gradient accumulation as HF Trainer with model_accepts_loss_kwargs = False: each micro-batch's
// mean loss is divided by the step's number of micro-batches.

import type { CrucibleConfig } from '../config/schema';
import type { KtoExample, PairwiseExample } from '../data/processor';
import type { Tensor } from '../gpu/tensor';
import type { Adapter, TrainableTensor } from '../model/adapter';
import { forwardBackward, type LoraDropoutStep, type Workspace } from '../model/forward';
import type { Model } from '../model/model';
import { bucketLength, type TrainBatch } from './batches';
import type { ReferenceTable } from './reference';
import { rowsBatch, sequenceLogps, type SeqRow } from './sequences';
import type { RunStore } from './trainer';
import { VALUE_HEAD_FILE, ValueHead } from './value-head';

export type PreferenceStage = 'rm' | 'dpo' | 'kto';
export type PrefLoss = 'sigmoid' | 'hinge' | 'ipo' | 'orpo' | 'simpo';
export type PreferenceExample = PairwiseExample | KtoExample;

/** LLaMA-Factory's preference keys. */
export interface PreferenceOptions {
  stage: PreferenceStage;
  /** pref_beta */
  beta: number;
  /** pref_ftx: weight of an SFT term on the chosen responses (dpo, kto). */
  ftx: number;
  /** pref_loss (dpo). */
  loss: PrefLoss;
  /** dpo_label_smoothing (sigmoid). */
  labelSmoothing: number;
  /** simpo_gamma */
  simpoGamma: number;
  /** kto_chosen_weight, kto_rejected_weight */
  ktoChosenWeight: number;
  ktoRejectedWeight: number;
}

type PrefKeys = 'stage' | 'pref_beta' | 'pref_ftx' | 'pref_loss' | 'dpo_label_smoothing' | 'simpo_gamma' | 'kto_chosen_weight' | 'kto_rejected_weight';

/** The preference options of a config; null for stages pt and sft. */
export function preferenceOptions(c: Pick<CrucibleConfig, PrefKeys>): PreferenceOptions | null {
  if (c.stage !== 'rm' && c.stage !== 'dpo' && c.stage !== 'kto') return null;
  if (c.stage === 'dpo' && c.pref_loss === 'kto_pair') {
    throw new Error('pref_loss: kto_pair was removed from TRL (LLaMA-Factory cannot run it either); use stage: kto with a KTO dataset');
  }
  if (c.stage === 'dpo' && c.pref_loss !== 'sigmoid' && c.dpo_label_smoothing > 1e-6) {
    throw new Error('dpo_label_smoothing is only valid with pref_loss: sigmoid');
  }
  return {
    stage: c.stage,
    beta: c.pref_beta,
    ftx: c.pref_ftx,
    loss: c.pref_loss as PrefLoss,
    labelSmoothing: c.dpo_label_smoothing,
    simpoGamma: c.simpo_gamma,
    ktoChosenWeight: c.kto_chosen_weight,
    ktoRejectedWeight: c.kto_rejected_weight,
  };
}

/** The stage needs reference log-probabilities (LLaMA-Factory's use_ref_model, and kto). */
export const usesReference = (o: PreferenceOptions): boolean =>
  o.stage === 'kto' || (o.stage === 'dpo' && o.loss !== 'orpo' && o.loss !== 'simpo');

/** Sequence log-probabilities of ipo, orpo and simpo are averages over the labelled tokens. */
export const averagesLogps = (o: PreferenceOptions): boolean => o.stage === 'dpo' && (o.loss === 'ipo' || o.loss === 'orpo' || o.loss === 'simpo');

// ---- metrics ----------------------------------------------------------------------------------

/** Metric keys as TRL / LLaMA-Factory log them (evaluation records carry them with `eval_`). */
export const PREFERENCE_METRICS = [
  'rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins',
  'logps/chosen', 'logps/rejected', 'sft_loss', 'odds_ratio_loss', 'kl', 'accuracy',
] as const;
export type PreferenceMetric = (typeof PREFERENCE_METRICS)[number];
export type PreferenceLogFields = { [K in PreferenceMetric | `eval_${PreferenceMetric}`]?: number };

/** Curves to chart per stage, as LLaMA-Factory's workflows plot them (first) and then the rest. */
export function chartKeys(stage: 'pt' | 'sft' | PreferenceStage, loss: PrefLoss = 'sigmoid'): string[] {
  if (stage === 'dpo') {
    return ['loss', 'rewards/accuracies', 'eval_loss', 'rewards/margins', 'rewards/chosen', 'rewards/rejected', 'eval_rewards/accuracies',
      ...(loss === 'orpo' ? ['sft_loss', 'odds_ratio_loss'] : [])];
  }
  if (stage === 'kto') return ['loss', 'rewards/chosen', 'eval_loss', 'rewards/rejected', 'rewards/margins', 'kl'];
  if (stage === 'rm') return ['loss', 'eval_loss', 'eval_accuracy', 'accuracy'];
  return ['loss', 'eval_loss'];
}

// ---- losses (f64, host) -----------------------------------------------------------------------

const sigmoid = (x: number): number => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));
const logSigmoid = (x: number): number => (x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x)));
/** log(1 - e^x) for x < 0, accurate at both ends. */
const log1mExp = (x: number): number => (x > -Math.LN2 ? Math.log(-Math.expm1(x)) : Math.log1p(-Math.exp(x)));
const mean = (xs: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return xs.length ? s / xs.length : NaN;
};

export interface PairInputs {
  /** Policy log-probabilities of each pair's chosen / rejected sequence, summed over labelled tokens. */
  chosen: ArrayLike<number>;
  rejected: ArrayLike<number>;
  /** Labelled tokens of each sequence. */
  chosenLen: ArrayLike<number>;
  rejectedLen: ArrayLike<number>;
  /** Reference log-probabilities (summed), when the loss uses a reference. */
  refChosen?: ArrayLike<number>;
  refRejected?: ArrayLike<number>;
}

export interface PairResult {
  /** Mean over pairs, pref_ftx term included. */
  loss: number;
  losses: number[];
  chosenRewards: number[];
  rejectedRewards: number[];
  /** d loss / d (summed policy log-probability) of each chosen / rejected sequence. */
  dChosen: number[];
  dRejected: number[];
  /** Means over the pairs, TRL's names. */
  metrics: Partial<Record<PreferenceMetric, number>>;
}

function perToken(logp: number, len: number, what: string): number {
  if (!(len > 0)) throw new Error(`${what} has no labelled tokens (is cutoff_len too small for the prompt?)`);
  return logp / len;
}

/** A dpo-stage loss of P pairs and its gradient with respect to the sequences' summed log-probabilities. */
export function pairwiseLoss(o: PreferenceOptions, x: PairInputs): PairResult {
  const P = x.chosen.length;
  const avg = averagesLogps(o);
  const ref = usesReference(o);
  if (ref && (!x.refChosen || !x.refRejected)) throw new Error(`pref_loss ${o.loss} needs reference log-probabilities`);
  const b = o.beta;
  const out: PairResult = { loss: 0, losses: [], chosenRewards: [], rejectedRewards: [], dChosen: [], dRejected: [], metrics: {} };
  const sft: number[] = [], odds: number[] = [];
  for (let i = 0; i < P; i++) {
    const lc = x.chosenLen[i]!, lr = x.rejectedLen[i]!;
    const zc = avg ? perToken(x.chosen[i]!, lc, `pair ${i}: the chosen response`) : x.chosen[i]!;
    const zr = avg ? perToken(x.rejected[i]!, lr, `pair ${i}: the rejected response`) : x.rejected[i]!;
    let loss: number, dzc: number, dzr: number, rc = 0, rr = 0;
    if (ref) {
      rc = avg ? x.refChosen![i]! / lc : x.refChosen![i]!;
      rr = avg ? x.refRejected![i]! / lr : x.refRejected![i]!;
    }
    const u = zc - zr - (rc - rr);
    switch (o.loss) {
      case 'sigmoid': {
        const e = o.labelSmoothing;
        loss = -(1 - e) * logSigmoid(b * u) - e * logSigmoid(-b * u);
        dzc = -(1 - e) * b * sigmoid(-b * u) + e * b * sigmoid(b * u);
        break;
      }
      case 'hinge':
        loss = Math.max(0, 1 - b * u);
        dzc = 1 - b * u > 0 ? -b : 0;
        break;
      case 'ipo':
        loss = (u - 1 / (2 * b)) ** 2;
        dzc = 2 * (u - 1 / (2 * b));
        break;
      case 'simpo': {
        const v = b * u - o.simpoGamma; // β(π_c - π_r - γ/β)
        loss = -logSigmoid(v);
        dzc = -b * sigmoid(-v);
        break;
      }
      case 'orpo': {
        const logOdds = zc - zr - (log1mExp(zc) - log1mExp(zr));
        const orLoss = -logSigmoid(logOdds);
        loss = -zc + b * orLoss;
        const dOdds = -b * sigmoid(-logOdds);
        // d log_odds / d z = 1 / (1 - e^z) for z = π_c, and minus that for π_r
        dzc = -1 + dOdds / -Math.expm1(zc);
        dzr = -dOdds / -Math.expm1(zr);
        sft.push(-zc);
        odds.push(orLoss);
        break;
      }
      default:
        throw new Error(`pref_loss ${String(o.loss)} is not supported (sigmoid, hinge, ipo, orpo, simpo)`);
    }
    dzr ??= -dzc;
    let dc = avg ? dzc / lc : dzc;
    const dr = avg ? dzr / lr : dzr;
    if (o.ftx > 1e-6) {
      // LLaMA-Factory: losses += pref_ftx * (-chosen_logps_avg)
      loss += o.ftx * -perToken(x.chosen[i]!, lc, `pair ${i}: the chosen response`);
      dc += -o.ftx / lc;
    }
    out.losses.push(loss);
    out.dChosen.push(dc / P);
    out.dRejected.push(dr / P);
    out.chosenRewards.push(b * (zc - rc));
    out.rejectedRewards.push(b * (zr - rr));
  }
  out.loss = mean(out.losses);
  const cr = out.chosenRewards, rr = out.rejectedRewards;
  out.metrics = {
    'rewards/chosen': mean(cr),
    'rewards/rejected': mean(rr),
    'rewards/accuracies': mean(cr.map((c, i) => (c > rr[i]! ? 1 : 0))),
    'rewards/margins': mean(cr.map((c, i) => c - rr[i]!)),
    'logps/chosen': mean(Array.from({ length: P }, (_, i) => (avg ? x.chosen[i]! / x.chosenLen[i]! : x.chosen[i]!))),
    'logps/rejected': mean(Array.from({ length: P }, (_, i) => (avg ? x.rejected[i]! / x.rejectedLen[i]! : x.rejected[i]!))),
    ...(o.loss === 'orpo' ? { sft_loss: mean(sft), odds_ratio_loss: mean(odds) } : {}),
  };
  return out;
}

export interface KtoInputs {
  /** Policy log-probabilities (summed) of the batch's sequences, their labelled tokens and tags (true: desirable). */
  logps: ArrayLike<number>;
  lens: ArrayLike<number>;
  tags: ArrayLike<boolean | number>;
  refLogps: ArrayLike<number>;
  /** Log-probabilities of the KL rows (prompt with a mismatched completion) under policy and reference. */
  klLogps: ArrayLike<number>;
  refKlLogps: ArrayLike<number>;
}

export interface KtoResult {
  /** Mean over the batch, pref_ftx term included. */
  loss: number;
  losses: number[];
  /** d loss / d (summed policy log-probability) of each sequence (the KL estimate has no gradient). */
  d: number[];
  kl: number;
  chosenRewards: number[];
  rejectedRewards: number[];
  /** Sums and counts, as LLaMA-Factory's KTO trainer stores them. */
  sums: { 'rewards/chosen': number; 'rewards/rejected': number; 'logps/chosen': number; 'logps/rejected': number; chosen: number; rejected: number };
}

export function ktoLoss(o: PreferenceOptions, x: KtoInputs): KtoResult {
  const B = x.logps.length;
  const b = o.beta;
  const klRows = x.klLogps.length;
  let kl = 0;
  for (let i = 0; i < klRows; i++) kl += x.klLogps[i]! - x.refKlLogps[i]!;
  kl = klRows ? Math.max(0, kl / klRows) : 0;
  const out: KtoResult = {
    loss: 0, losses: [], d: [], kl, chosenRewards: [], rejectedRewards: [],
    sums: { 'rewards/chosen': 0, 'rewards/rejected': 0, 'logps/chosen': 0, 'logps/rejected': 0, chosen: 0, rejected: 0 },
  };
  const chosen: number[] = [];
  for (let i = 0; i < B; i++) {
    const delta = x.logps[i]! - x.refLogps[i]!;
    const reward = b * delta;
    if (x.tags[i]) {
      const s = sigmoid(b * (delta - kl));
      out.losses.push(o.ktoChosenWeight * (1 - s));
      out.d.push((-o.ktoChosenWeight * b * s * (1 - s)) / B);
      out.chosenRewards.push(reward);
      out.sums['rewards/chosen'] += reward;
      out.sums['logps/chosen'] += x.logps[i]!;
      out.sums.chosen++;
      chosen.push(i);
    } else {
      const s = sigmoid(b * (kl - delta));
      out.losses.push(o.ktoRejectedWeight * (1 - s));
      out.d.push((o.ktoRejectedWeight * b * s * (1 - s)) / B);
      out.rejectedRewards.push(reward);
      out.sums['rewards/rejected'] += reward;
      out.sums['logps/rejected'] += x.logps[i]!;
      out.sums.rejected++;
    }
  }
  out.loss = mean(out.losses);
  const n = chosen.length;
  if (o.ftx > 1e-6 && n > 0) {
    // LLaMA-Factory: losses += ftx * (-chosen_logps_avg).nanmean() / n_chosen * batch_size ("remember to rescale")
    let sft = 0;
    for (const i of chosen) {
      sft -= perToken(x.logps[i]!, x.lens[i]!, `example ${i}`);
      out.d[i]! += (-o.ftx * B) / (n * n * x.lens[i]!);
    }
    out.loss += ((o.ftx * sft) / n / n) * B;
  }
  return out;
}

export interface RewardResult {
  loss: number;
  /** d loss / d score of each chosen / rejected sequence. */
  dChosen: number[];
  dRejected: number[];
  /** Share of pairs whose chosen score is above the rejected one. */
  accuracy: number;
}

export function rewardLoss(chosen: ArrayLike<number>, rejected: ArrayLike<number>): RewardResult {
  const P = chosen.length;
  const out: RewardResult = { loss: 0, dChosen: [], dRejected: [], accuracy: 0 };
  for (let i = 0; i < P; i++) {
    const m = chosen[i]! - rejected[i]!;
    out.loss -= logSigmoid(m) / P;
    const g = -sigmoid(-m) / P;
    out.dChosen.push(g);
    out.dRejected.push(-g);
    out.accuracy += (chosen[i]! > rejected[i]! ? 1 : 0) / P;
  }
  return out;
}

export function checkExamples(stage: PreferenceStage, examples: readonly unknown[], where: string): void {
  const e = examples[0] as Record<string, unknown> | undefined;
  if (!e) return;
  if (stage === 'kto' && !('kto_tag' in e && 'kl_input_ids' in e)) {
    throw new Error(`${where}: stage kto needs KTO examples (a kto_tag and KL rows); use a dataset with a kto_tag column`);
  }
  if (stage !== 'kto' && !('chosen' in e && 'rejected' in e)) {
    throw new Error(`${where}: stage ${stage} needs preference pairs (chosen and rejected); use a dataset with ranking: true`);
  }
}

// ---- the objective the trainer runs -------------------------------------------------------------

export interface PreferenceContext {
  model: Model;
  /** The trained adapter; without `reference`, the reference model is the base with it switched off. */
  adapter: Adapter | null;
  /** Precomputed reference log-probabilities (full / freeze fine-tuning, ref_model). */
  reference?: ReferenceTable | null;
  /** NEFTune noise for a training forward of `batch` (the n-th of the step), or none. */
  embedNoise?: (batch: TrainBatch, n: number) => Tensor | null;
  /** lora_dropout of the step's `micro`-th micro-batch (rm only: dpo and kto train without it, as LLaMA-Factory). */
  loraDropout?: (micro: number) => LoraDropoutStep | undefined;
  padId: number;
  cutoffLen: number;
  /** A workspace for B rows of S tokens (the trainer keeps them). */
  workspace: (B: number, S: number) => Workspace;
  /** Initialises the value head (rm). */
  random: () => number;
}

/** What one micro-batch gave: its loss and what the log needs. */
export interface MicroResult {
  loss: number;
  /** Pairs (dpo, rm) or examples (kto). */
  n: number;
  tokens: number;
  /** dpo: means over the pairs; rm: accuracy. */
  metrics: Partial<Record<PreferenceMetric, number>>;
  kto?: KtoResult;
}

export interface PairwiseOutcome extends MicroResult {
  pair: PairResult;
  /** Summed log-probabilities of rows [chosen..., rejected...]. */
  policyLogps: Float64Array;
  refLogps: Float64Array | null;
}

/** A batch with the rows it was made from (the keys of precomputed reference log-probabilities). */
interface RowsBatch {
  rows: readonly SeqRow[];
  batch: TrainBatch;
}

export class PreferenceObjective {
  readonly valueHead: ValueHead | null;
  /** Trainable tensors the objective adds (the value head). */
  readonly params: TrainableTensor[];
  private readonly weights = new Map<number, Tensor>();
  private stored: Array<{ r: MicroResult; scale: number }> = [];
  /** Forwards with NEFTune noise in the current step (each draws its own). */
  private noisyForwards = 0;
  /** The micro-batch of the current step being run. */
  private micro = 0;

  constructor(readonly ctx: PreferenceContext, readonly opts: PreferenceOptions) {
    if (!(opts.beta > 0)) throw new Error(`pref_beta must be > 0, got ${opts.beta}`);
    if (opts.stage === 'dpo' && !['sigmoid', 'hinge', 'ipo', 'orpo', 'simpo'].includes(opts.loss)) {
      throw new Error(`pref_loss ${opts.loss} is not supported; use sigmoid, hinge, ipo, orpo or simpo`);
    }
    if (usesReference(opts) && !ctx.adapter && !ctx.reference) {
      throw new Error(`${opts.stage === 'kto' ? 'stage kto' : `pref_loss ${opts.loss}`} needs a reference: a LoRA adapter to switch off, or precomputed reference log-probabilities`);
    }
    this.valueHead = opts.stage === 'rm' ? ValueHead.create(ctx.model.gpu, ctx.model.spec.hidden, ctx.random) : null;
    this.params = this.valueHead?.params() ?? [];
  }

  /** Forward and backward of one optimizer step's micro-batches; gradients accumulate. Returns the tokens processed. */
  async step(micro: readonly (readonly PreferenceExample[])[]): Promise<number> {
    for (const rows of micro) checkExamples(this.opts.stage, rows, 'training data');
    const scale = 1 / Math.max(1, micro.length);
    this.noisyForwards = 0;
    let tokens = 0;
    for (const [i, rows] of micro.entries()) {
      this.micro = i;
      const r = await this.microBatch(rows, scale, true);
      this.stored.push({ r, scale });
      tokens += r.tokens;
    }
    return tokens;
  }

  /** Training metrics since the last call: loss per optimizer step (over `steps` steps) and the stage's metrics. */
  takeMetrics(steps: number): Record<string, number> {
    const stored = this.stored;
    this.stored = [];
    const loss = stored.reduce((a, s) => a + s.r.loss * s.scale, 0) / Math.max(1, steps);
    return { loss, ...this.summarize(stored.map((s) => s.r), '') };
  }

  /** The micro-batch results not yet taken by takeMetrics (plain numbers: a checkpoint keeps them). */
  unlogged(): unknown {
    return this.stored;
  }

  /** Restores unlogged results from a checkpoint (see unlogged()). */
  restoreUnlogged(saved: unknown): void {
    this.stored = Array.isArray(saved) ? (saved as typeof this.stored) : [];
  }

  /** Loss and metrics over an evaluation set (keys prefixed eval_). */
  async evaluate(examples: readonly PreferenceExample[], batchSize: number): Promise<Record<string, number>> {
    checkExamples(this.opts.stage, examples, 'evaluation data');
    const results: MicroResult[] = [];
    for (let i = 0; i < examples.length; i += batchSize) results.push(await this.microBatch(examples.slice(i, i + batchSize), 1, false));
    const n = results.reduce((a, r) => a + r.n, 0);
    const loss = results.reduce((a, r) => a + r.loss * r.n, 0) / Math.max(1, n);
    return { eval_loss: loss, ...this.summarize(results, 'eval_') };
  }

  /** One micro-batch: losses, metrics, and with `backward` the gradients (times `scale`). */
  async microBatch(rows: readonly PreferenceExample[], scale: number, backward: boolean): Promise<MicroResult> {
    const { padId, cutoffLen } = this.ctx;
    if (this.opts.stage === 'kto') {
      const kto = rows as readonly KtoExample[];
      const target = kto.map((e) => ({ input_ids: e.input_ids, labels: e.labels }));
      const kl = kto.map((e) => ({ input_ids: e.kl_input_ids, labels: e.kl_labels }));
      const S = bucketLength(Math.max(...[...target, ...kl].map((r) => r.input_ids.length)), cutoffLen);
      return this.kto({ rows: target, batch: rowsBatch(target, padId, S) }, { rows: kl, batch: rowsBatch(kl, padId, S) }, kto.map((e) => e.kto_tag), scale, backward);
    }
    const pairs = rows as readonly PairwiseExample[];
    if (this.opts.stage === 'rm') {
      const seqs = [...pairs.map((p) => p.chosen), ...pairs.map((p) => p.rejected)];
      return this.reward(rowsBatch(seqs, padId, bucketLength(Math.max(...seqs.map((r) => r.input_ids.length)), cutoffLen)), pairs.length, scale, backward);
    }
    return this.pairwise(pairs, scale, backward);
  }

  /** dpo on pairs, as one batch of rows [chosen (P rows)..., rejected (P rows)...]. */
  async pairwise(pairs: readonly PairwiseExample[], scale: number, backward: boolean): Promise<PairwiseOutcome> {
    const P = pairs.length;
    const seqs = [...pairs.map((p) => p.chosen), ...pairs.map((p) => p.rejected)];
    const batch = rowsBatch(seqs, this.ctx.padId, bucketLength(Math.max(...seqs.map((r) => r.input_ids.length)), this.ctx.cutoffLen));
    const ws = this.ctx.workspace(batch.B, batch.S);
    const ref = usesReference(this.opts) ? (await this.reference(ws, [{ rows: seqs, batch }], backward))[0]! : null;
    const pol = await this.logps(ws, batch, backward);
    const half = <T extends Float64Array | Int32Array>(a: T, k: number) => a.subarray(k * P, (k + 1) * P) as T;
    const pair = pairwiseLoss(this.opts, {
      chosen: half(pol.logps, 0), rejected: half(pol.logps, 1), chosenLen: half(pol.lens, 0), rejectedLen: half(pol.lens, 1),
      ...(ref ? { refChosen: half(ref, 0), refRejected: half(ref, 1) } : {}),
    });
    if (backward) this.backward(ws, batch, [...pair.dChosen, ...pair.dRejected].map((d) => d * scale));
    return { loss: pair.loss, n: P, tokens: batch.realTokens, metrics: pair.metrics, pair, policyLogps: pol.logps, refLogps: ref };
  }

  /** kto on target rows with their KL rows (same shape) and tags. */
  async kto(target: RowsBatch, kl: RowsBatch, tags: readonly boolean[], scale: number, backward: boolean): Promise<MicroResult & { kto: KtoResult }> {
    const [t, k] = [target.batch, kl.batch];
    if (k.B !== t.B || k.S !== t.S) throw new Error(`KL rows ${k.B}x${k.S} must have the shape of the target rows ${t.B}x${t.S}`);
    const ws = this.ctx.workspace(t.B, t.S);
    const [refTarget, refKl] = await this.reference(ws, [target, kl], backward);
    const polKl = await this.logps(ws, k, backward); // no gradient through the KL estimate
    const pol = await this.logps(ws, t, backward); // last: the backward reuses this forward
    const res = ktoLoss(this.opts, {
      logps: pol.logps, lens: pol.lens, tags, refLogps: refTarget!, klLogps: polKl.logps, refKlLogps: refKl!,
    });
    if (backward) this.backward(ws, t, res.d.map((d) => d * scale));
    return { loss: res.loss, n: t.B, tokens: t.realTokens + k.realTokens, metrics: {}, kto: res };
  }

  /** rm on a batch of rows [chosen..., rejected...]: value head on each row's last token. */
  async reward(batch: TrainBatch & { lengths: Int32Array }, P: number, scale: number, backward: boolean): Promise<MicroResult & { scores: Float32Array; reward: RewardResult }> {
    const head = this.valueHead!;
    const ws = this.ctx.workspace(batch.B, batch.S);
    ws.load(batch);
    const last = Array.from(batch.lengths, (n, b) => b * batch.S + n - 1);
    const noise = this.noise(batch, backward);
    const dropout = backward ? this.ctx.loraDropout?.(this.micro) : undefined;
    forwardBackward(ws, { backward: false, gradScale: 1, head: () => {}, ...(noise ? { embedNoise: noise } : {}), ...(dropout ? { loraDropout: dropout } : {}) });
    if (noise) this.ctx.model.gpu.release(noise);
    const scores = await head.scores(ws, last);
    const res = rewardLoss(scores.subarray(0, P), scores.subarray(P, 2 * P));
    if (backward) {
      const d = Float32Array.from([...res.dChosen, ...res.dRejected], (g) => g * scale);
      forwardBackward(ws, { backward: true, gradScale: 1, reuseForward: true, head: (dFinal) => head.backward(ws, last, d, dFinal), ...(dropout ? { loraDropout: dropout } : {}) });
    }
    return { loss: res.loss, n: P, tokens: batch.realTokens, metrics: { accuracy: res.accuracy }, scores, reward: res };
  }

  /** value_head.safetensors beside the adapter (rm). */
  async save(store: RunStore, dir: string): Promise<void> {
    if (this.valueHead) await store.write(`${dir ? `${dir}/` : ''}${VALUE_HEAD_FILE}`, await this.valueHead.safetensors());
  }

  async load(store: RunStore, dir: string): Promise<void> {
    if (!this.valueHead) return;
    const path = `${dir ? `${dir}/` : ''}${VALUE_HEAD_FILE}`;
    const bytes = await store.read(path);
    await this.valueHead.load({ name: path, size: bytes.length, read: async (o, n) => bytes.subarray(o, o + n) });
  }

  /** Frees the objective's buffers. The value head outlives it, as the adapter outlives the trainer: release it with valueHead.release(). */
  release(): void {
    this.ctx.model.gpu.release(...this.weights.values());
    this.weights.clear();
  }

  // ---- internals ----

  /** Summed log-probabilities of a batch under the current weights (leaves its forward in ws); `training` adds NEFTune noise. */
  private async logps(ws: Workspace, batch: TrainBatch, training: boolean): Promise<{ logps: Float64Array; lens: Int32Array }> {
    const noise = this.noise(batch, training);
    try {
      return await sequenceLogps(ws, batch, noise ?? undefined);
    } finally {
      if (noise) this.ctx.model.gpu.release(noise);
    }
  }

  /** NEFTune noise for a forward of `batch` in training (each draws its own), or null. */
  private noise(batch: TrainBatch, training: boolean): Tensor | null {
    return training ? this.ctx.embedNoise?.(batch, this.noisyForwards++) ?? null : null;
  }

  /** The same under the reference model: looked up when precomputed, else the base with the adapter switched off. */
  private async reference(ws: Workspace, batches: readonly RowsBatch[], training: boolean): Promise<Float64Array[]> {
    const table = this.ctx.reference;
    if (table) return batches.map((b) => Float64Array.from(b.rows, (r) => table.get(r)));
    return this.ctx.adapter!.withDisabled(async () => {
      const out = [];
      for (const b of batches) out.push((await this.logps(ws, b.batch, training)).logps);
      return out;
    });
  }

  /** Backward of the forward in ws with d loss / d logp(row) = dRow[row]: weight -dRow on the row's labelled tokens. */
  private backward(ws: Workspace, batch: TrainBatch, dRow: readonly number[]): void {
    const gpu = this.ctx.model.gpu;
    const { B, S } = batch;
    const w = new Float32Array(B * S);
    for (let b = 0; b < B; b++) for (let t = 0; t < S; t++) if (batch.labels[b * S + t] !== -100) w[b * S + t] = -dRow[b]!;
    let tw = this.weights.get(B * S);
    if (!tw) this.weights.set(B * S, (tw = gpu.tensor([B * S], 'f32', 'token weights')));
    gpu.write(tw, w);
    forwardBackward(ws, { backward: true, gradScale: 1, tokenWeights: tw, reuseForward: true });
  }

  private summarize(results: readonly MicroResult[], prefix: '' | 'eval_'): Record<string, number> {
    const out: Record<string, number> = {};
    if (!results.length) return out;
    if (this.opts.stage === 'kto') {
      // LLaMA-Factory's KTO log: sums over the stored batches divided by counts
      const s = { 'rewards/chosen': 0, 'rewards/rejected': 0, 'logps/chosen': 0, 'logps/rejected': 0, chosen: 0, rejected: 0 };
      let kl = 0;
      for (const r of results) {
        for (const k of Object.keys(s) as (keyof typeof s)[]) s[k] += r.kto!.sums[k];
        kl += r.kto!.kl;
      }
      for (const split of ['chosen', 'rejected'] as const) {
        if (s[split] > 0) for (const key of ['rewards', 'logps'] as const) out[`${prefix}${key}/${split}`] = s[`${key}/${split}`] / s[split];
      }
      if (s.chosen > 0 && s.rejected > 0) out[`${prefix}rewards/margins`] = out[`${prefix}rewards/chosen`]! - out[`${prefix}rewards/rejected`]!;
      out[`${prefix}kl`] = kl / results.length;
      return out;
    }
    if (this.opts.stage === 'rm' && prefix === 'eval_') {
      // LLaMA-Factory's ComputeAccuracy: over every evaluated pair
      const n = results.reduce((a, r) => a + r.n, 0);
      out.eval_accuracy = results.reduce((a, r) => a + r.metrics.accuracy! * r.n, 0) / n;
      return out;
    }
    // dpo (and rm training accuracy): the mean of the stored per-batch means, as LLaMA-Factory's log()
    const keys = new Set(results.flatMap((r) => Object.keys(r.metrics)));
    for (const k of keys) out[`${prefix}${k}`] = mean(results.map((r) => r.metrics[k as PreferenceMetric]!));
    return out;
  }
}
