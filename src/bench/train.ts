// Throughput benchmarks of the engine itself (host-agnostic: the CLI bench and the app's GPU panel
// both run them): LoRA training steps, prefill and decode.

import type { GpuCounters } from '../gpu/runtime';
import { activationBytes, loraSitesByMixer, type ActivationBytes } from '../model/activations';
import { Generator } from '../model/generate';
import type { Model } from '../model/model';
import type { RecomputeChoice, RecomputeSetting } from '../train/recompute';
import { Trainer, type TrainOptions } from '../train/trainer';

export interface TrainBenchOptions {
  batch: number;
  seq: number;
  rank: number;
  steps: number;
  warmup: number;
  /** As a run's (train/recompute.ts): on (the default), off, or decided from memory under `memoryBudget` (GiB). */
  recompute?: RecomputeSetting;
  memoryBudget?: number | null;
  /** Status lines of the trainer (its recomputation choice when decided from memory). */
  onStatus?: (message: string) => void;
  /** What trains (a run's method and LoRA settings); LoRA of `rank` on every linear layer when absent. */
  method?: Pick<TrainOptions, 'finetuningType' | 'lora' | 'freezeTrainableLayers'>;
  /** After each step (warm-up included), 1-based. */
  onStep?: (step: number) => void;
}

export interface TrainBenchResult {
  tokensPerSecond: number;
  stepSeconds: number;
  /** Bytes the engine had allocated at its peak (weights, adapter, optimizer, activations). */
  peakBytes: number;
  /** Whether the steps recomputed activations, and why. */
  recompute: RecomputeChoice;
  /** The activation table's share of the peak (model/activations.ts): what the batch shape itself costs. */
  activations: ActivationBytes;
  /** The host's recording work of each measured step (dispatches, passes, submits, encode time). */
  perStep: GpuCounters[];
}

/**
 * AdamW steps of the method (by default LoRA of rank `rank` on all linear layers) on random token
 * rows of the given shape, at learning rate 0: the model's weights stay as they were loaded.
 */
export async function benchTraining(model: Model, o: TrainBenchOptions): Promise<TrainBenchResult> {
  const gpu = model.gpu;
  gpu.peakAllocated = gpu.allocated; // what ran before (kernel benchmarks) is not this run's peak
  const V = model.spec.vocab;
  let s = 12345;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) % V);
  const rows = Array.from({ length: o.batch * (o.steps + o.warmup) }, () => {
    const ids = Array.from({ length: o.seq }, rand);
    return { input_ids: ids, labels: ids };
  });
  const opts: TrainOptions = {
    finetuningType: 'lora', lora: { rank: o.rank, alpha: 2 * o.rank, targets: 'all' }, ...o.method, learningRate: 0, scheduler: 'constant',
    warmupSteps: 0, warmupRatio: 0, epochs: 1, maxSteps: o.warmup + o.steps, batchSize: o.batch, gradAccum: 1, maxGradNorm: 1, weightDecay: 0,
    beta1: 0.9, beta2: 0.999, eps: 1e-8, neftuneAlpha: 0, seed: 1, loggingSteps: 1, saveSteps: 0, evalSteps: 0,
    cutoffLen: o.seq, recompute: o.recompute ?? true, memoryBudget: o.memoryBudget ?? null,
  };
  const trainer = await Trainer.create(model, rows, [], opts, 0);
  // the loss read back at each logged step marks its end; timing starts after the warm-up steps
  let t0 = performance.now();
  const perStep: GpuCounters[] = [];
  gpu.resetCounters();
  const onLog = (r: { current_steps: number }) => {
    o.onStep?.(r.current_steps);
    if (r.current_steps === o.warmup) t0 = performance.now();
    if (r.current_steps > o.warmup) perStep.push({ ...gpu.counters });
    gpu.resetCounters();
  };
  try {
    await trainer.run(null, { onLog, ...(o.onStatus ? { onStatus: o.onStatus } : {}) });
    const seconds = (performance.now() - t0) / 1000;
    // the choice the first step made (rows are not packed)
    const recompute = trainer.recompute(o.batch, false);
    const activations = activationBytes(model.spec, { B: o.batch, S: o.seq, recompute: recompute.recompute, lora: loraSitesByMixer(model.layers) });
    return { tokensPerSecond: (o.batch * o.seq * o.steps) / seconds, stepSeconds: seconds / o.steps, peakBytes: gpu.peakAllocated, recompute, activations, perStep };
  } finally {
    trainer.adapter?.release();
    trainer.release();
  }
}

export interface DecodeBenchResult {
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
}

/** Batch-1 generation: prefill of `prompt` tokens, then `tokens` greedy decode steps. */
export async function benchDecode(model: Model, prompt: number, tokens: number): Promise<DecodeBenchResult> {
  const gen = new Generator(model, prompt + tokens + 8);
  const ids = Array.from({ length: prompt }, (_, i) => (i * 7919) % model.spec.vocab);
  try {
    // warm-up compiles every pipeline
    for await (const _ of gen.generate(ids.slice(0, 8), { maxNewTokens: 2, stopIds: [] })) void _;
    gen.reset();
    const t0 = performance.now();
    let first = 0, n = 0;
    for await (const _ of gen.generate(ids, { maxNewTokens: tokens, stopIds: [] })) {
      void _;
      if (n++ === 0) first = performance.now();
    }
    const t1 = performance.now();
    return {
      prefillTokensPerSecond: prompt / ((first - t0) / 1000),
      decodeTokensPerSecond: n > 1 ? (n - 1) / ((t1 - first) / 1000) : 0,
    };
  } finally {
    gen.release();
  }
}
