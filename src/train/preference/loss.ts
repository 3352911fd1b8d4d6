// The preference losses as plain f64 arithmetic on the host, each with its gradient with respect
// to every sequence's summed log-probability (or reward): the GPU side (objective.ts) turns that
// gradient into per-token weights of one backward.
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

import type { PreferenceMetric } from './metrics';
import { averagesLogps, usesReference, type PreferenceOptions } from './options';

const sigmoid = (x: number): number => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));
const logSigmoid = (x: number): number => (x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x)));
/** log(1 - e^x) for x < 0, accurate at both ends. */
const log1mExp = (x: number): number => (x > -Math.LN2 ? Math.log(-Math.expm1(x)) : Math.log1p(-Math.exp(x)));
export const mean = (xs: ArrayLike<number>): number => {
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
