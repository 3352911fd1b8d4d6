// The preference stages' settings (LLaMA-Factory's keys) and the data each stage trains on:
// stage dpo (pref_loss sigmoid, hinge, ipo, orpo, simpo) and stage rm on pairs (PairwiseExample:
// chosen and rejected), stage kto on KtoExample (target rows with their KL rows and tags).

import type { CrucibleConfig } from '../../config/schema';
import type { KtoExample, PairwiseExample } from '../../data/processor';

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

/** Refuses settings no stage can run, before anything is allocated. */
export function checkPreferenceOptions(o: PreferenceOptions): void {
  if (!(o.beta > 0)) throw new Error(`pref_beta must be > 0, got ${o.beta}`);
  if (o.stage === 'dpo' && !['sigmoid', 'hinge', 'ipo', 'orpo', 'simpo'].includes(o.loss)) {
    throw new Error(`pref_loss ${o.loss} is not supported; use sigmoid, hinge, ipo, orpo or simpo`);
  }
}

/** Refuses data the stage cannot train on (judged by the first example), naming where it came from. */
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
