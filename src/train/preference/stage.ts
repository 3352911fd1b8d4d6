// One preference stage as PreferenceObjective runs it: a micro-batch's forward, loss and backward
// (dpo.ts, kto.ts, reward.ts), and how the stage summarises stored micro-batch results for the log.

import type { TrainableTensor } from '../../model/adapter';
import type { ValueHead } from '../value-head';
import type { KtoResult } from './loss';
import { mean } from './loss';
import type { PreferenceMetric } from './metrics';
import type { PreferenceExample } from './options';

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

export interface StageRunner {
  /** rm's value head, else null. */
  readonly valueHead: ValueHead | null;
  /** Trainable tensors the stage adds (the value head's). */
  readonly params: readonly TrainableTensor[];
  /** One micro-batch (the step's `micro`-th): losses, metrics, and with `backward` the gradients (times `scale`). */
  microBatch(rows: readonly PreferenceExample[], scale: number, backward: boolean, micro: number): Promise<MicroResult>;
  /** The stage's log metrics of stored results (keys prefixed `prefix`). */
  summarize(results: readonly MicroResult[], prefix: '' | 'eval_'): Record<string, number>;
}

/** The mean of the stored per-batch means, as LLaMA-Factory's log() takes them (dpo, rm in training). */
export function meanOfBatchMeans(results: readonly MicroResult[], prefix: '' | 'eval_'): Record<string, number> {
  const out: Record<string, number> = {};
  const keys = new Set(results.flatMap((r) => Object.keys(r.metrics)));
  for (const k of keys) out[`${prefix}${k}`] = mean(results.map((r) => r.metrics[k as PreferenceMetric]!));
  return out;
}
