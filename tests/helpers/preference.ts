// Preference-stage test data and options shared by the preference and reference-model tests.
import type { PairwiseExample } from '../../src/data/processor';
import type { PreferenceOptions } from '../../src/train/preference';
import type { TrainOptions } from '../../src/train/trainer';
import type { Rng } from './check';

/** dpo sigmoid with TRL's defaults, overridable. */
export function prefOptions(over: Partial<PreferenceOptions> = {}): PreferenceOptions {
  return { stage: 'dpo', beta: 0.1, ftx: 0, loss: 'sigmoid', labelSmoothing: 0, simpoGamma: 0.5, ktoChosenWeight: 1, ktoRejectedWeight: 1, ...over };
}

/** A short LoRA run on a tiny model, overridable. */
export function prefTrainOptions(over: Partial<TrainOptions>): TrainOptions {
  return {
    finetuningType: 'lora', lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] },
    learningRate: 5e-2, scheduler: 'constant', warmupSteps: 0, warmupRatio: 0, epochs: 1, maxSteps: 3,
    batchSize: 2, gradAccum: 1, maxGradNorm: 1, weightDecay: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8,
    neftuneAlpha: 0, seed: 7, loggingSteps: 1, saveSteps: 0, evalSteps: 0, cutoffLen: 32, recompute: false, ...over,
  };
}

/** Random pairs sharing a prompt, for a tiny model with `vocab` tokens. */
export function randomPairs(rng: Rng, n: number, vocab: number): PairwiseExample[] {
  return Array.from({ length: n }, () => {
    const prompt = Array.from(rng.int(3 + Math.floor(rng.next() * 3), vocab - 3), (x) => x + 3);
    const seq = () => {
      const resp = Array.from(rng.int(3 + Math.floor(rng.next() * 5), vocab - 3), (x) => x + 3);
      return { input_ids: [...prompt, ...resp], labels: [...prompt.map(() => -100), ...resp] };
    };
    return { chosen: seq(), rejected: seq() };
  });
}
