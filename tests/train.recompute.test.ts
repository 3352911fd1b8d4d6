import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config';
import { dirFiles } from '../src/model/files-node';
import { Model } from '../src/model/model';
import { Trainer, type TrainOptions } from '../src/train/trainer';
import { testGpu } from './helpers/gpu';
import { benchmarkModel } from '../src/engine/bench';
import { trainOptionsFromConfig } from '../src/engine/options';
import { activationBytes, type ActivationSpec } from '../src/model/activations';
import { chooseRecompute, DEFAULT_MEMORY_BUDGET, memoryBudget, type RecomputeInput } from '../src/train/recompute';

const spec: ActivationSpec = {
  hidden: 256, heads: 4, kvHeads: 2, headDim: 64, intermediate: 768, qkNorm: false, sandwichNorms: false, vocab: 1000, layers: Array.from({ length: 12 }, () => ({})),
};
const B = 2, S = 512;
const resident = 300 * 2 ** 20;
const lora = [{ outFeatures: 256, rank: 8, dora: false }];
const bigLimits = { maxBufferSize: 2 ** 31, maxStorageBufferBindingSize: 2 ** 31 };
const peak = (recompute: boolean) => resident + activationBytes(spec, { B, S, recompute, lora }).total;

function input(over: Partial<RecomputeInput>): RecomputeInput {
  return { setting: 'auto', spec, B, S, lora, residentBytes: resident, limits: bigLimits, budget: { bytes: 8 * 2 ** 30, source: 'test' }, ...over };
}

describe('the recomputation choice', () => {
  it('turns recomputation off when the step fits the budget without it, and on when it does not', () => {
    expect(peak(false)).toBeGreaterThan(peak(true));
    const roomy = chooseRecompute(input({ budget: { bytes: Math.ceil(peak(false) / 0.9) + 1, source: 'memory_budget' } }));
    expect(roomy.recompute).toBe(false);
    expect(roomy.reason).toMatch(/^activation recomputation off: .*memory_budget/);
    const tight = chooseRecompute(input({ budget: { bytes: Math.floor(peak(false) / 0.9) - 1, source: 'memory_budget' } }));
    expect(tight.recompute).toBe(true);
    expect(tight.reason).toMatch(/^activation recomputation on: keeping every layer's activations needs about/);
  });

  it('counts the resident weights, adapter and optimizer state', () => {
    const budget = { bytes: Math.ceil(peak(false) / 0.9) + 1, source: 'test' };
    expect(chooseRecompute(input({ budget })).recompute).toBe(false);
    expect(chooseRecompute(input({ budget, residentBytes: resident + 64 * 2 ** 20 })).recompute).toBe(true);
  });

  it('honours disable_gradient_checkpointing either way, whatever the memory', () => {
    const huge = { bytes: 2 ** 50, source: 'test' }, tiny = { bytes: 1, source: 'test' };
    expect(chooseRecompute(input({ setting: true, budget: huge }))).toEqual({ recompute: true, reason: expect.stringMatching(/on: disable_gradient_checkpointing is false/) });
    expect(chooseRecompute(input({ setting: false, budget: tiny }))).toEqual({ recompute: false, reason: expect.stringMatching(/off: disable_gradient_checkpointing is true/) });
  });

  it('keeps recomputation on when a single buffer is over the binding limit', () => {
    const limits = { maxBufferSize: 2 ** 31, maxStorageBufferBindingSize: 4 * B * S * 768 - 4 };
    const c = chooseRecompute(input({ limits, budget: { bytes: 2 ** 50, source: 'test' } }));
    expect(c.recompute).toBe(true);
    expect(c.reason).toMatch(/buffer limit/);
  });

  it('takes the budget from memory_budget, else the device, else the default', () => {
    expect(memoryBudget(3, 80 * 2 ** 30)).toEqual({ bytes: 3 * 2 ** 30, source: 'memory_budget' });
    expect(memoryBudget(null, 80 * 2 ** 30).bytes).toBe(80 * 2 ** 30);
    expect(memoryBudget(undefined, undefined).bytes).toBe(DEFAULT_MEMORY_BUDGET);
    expect(() => memoryBudget(-1, undefined)).toThrow(/memory_budget = -1 must be a positive number of GiB/);
  });

  it('maps disable_gradient_checkpointing: unset decides, true forces off, false forces on', () => {
    const setting = (yaml: string) => trainOptionsFromConfig(parseConfig(yaml).config).recompute;
    expect(setting('')).toBe('auto');
    expect(setting('disable_gradient_checkpointing: true')).toBe(false);
    expect(setting('disable_gradient_checkpointing: false')).toBe(true);
    expect(trainOptionsFromConfig(parseConfig('memory_budget: 6.5').config).memoryBudget).toBe(6.5);
  });
});

describe('the trainer', () => {
  const rows = Array.from({ length: 2 }, (_, i) => {
    const ids = Array.from({ length: 8 }, (_, t) => (i * 31 + t * 7) % 256);
    return { input_ids: ids, labels: ids };
  });
  const options = (over: Partial<TrainOptions>): TrainOptions => ({
    finetuningType: 'lora', lora: { rank: 2, alpha: 4, targets: 'all' }, learningRate: 1e-3, scheduler: 'constant', warmupSteps: 0,
    warmupRatio: 0, epochs: 1, maxSteps: 1, batchSize: 2, gradAccum: 1, maxGradNorm: 1, weightDecay: 0, beta1: 0.9, beta2: 0.999,
    eps: 1e-8, neftuneAlpha: 0, seed: 3, loggingSteps: 1, saveSteps: 0, evalSteps: 0, cutoffLen: 8, recompute: 'auto', ...over,
  });

  it('logs its choice once: off for the tiny model in the default budget, on under a budget it does not fit', async () => {
    const gpu = await testGpu();
    const model = await Model.load(gpu, dirFiles(join(import.meta.dirname, 'fixtures/models/llama')));
    for (const [over, want] of [[{}, /^activation recomputation off: /], [{ memoryBudget: 1e-6 }, /^activation recomputation on: .*memory_budget/]] as const) {
      const trainer = await Trainer.create(model, rows, [], options(over), 0);
      const status: string[] = [];
      await trainer.run(null, { onStatus: (m) => status.push(m) });
      trainer.release();
      expect(status.filter((m) => m.startsWith('activation recomputation'))).toEqual([expect.stringMatching(want)]);
    }
  });
});

describe('crucible bench', () => {
  it('recomputes as a run of the config would, and says so', async () => {
    const gpu = await testGpu();
    const model = await Model.load(gpu, dirFiles(join(import.meta.dirname, 'fixtures/models/llama')));
    const base = 'per_device_train_batch_size: 2\ncutoff_len: 8\nlora_rank: 2\n';
    for (const [yaml, on, why] of [
      ['', false, /^activation recomputation off: .*default budget/],
      ['memory_budget: 0.000001', true, /^activation recomputation on: .*memory_budget/],
      ['disable_gradient_checkpointing: false', true, /disable_gradient_checkpointing is false/],
    ] as const) {
      const status: string[] = [];
      const r = await benchmarkModel(model, parseConfig(base + yaml).config, { steps: 1, warmup: 0, onStatus: (m) => status.push(m) });
      expect(r.recompute, yaml).toBe(on);
      expect(r.recomputeReason, yaml).toMatch(why);
      // the trainer's own line, where it decided from memory
      expect(status.filter((m) => m.startsWith('activation recomputation')), yaml).toEqual(yaml.startsWith('disable') ? [] : [r.recomputeReason]);
    }
    model.release();
  });
});
