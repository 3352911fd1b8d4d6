import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config';
import { trainOptionsFromConfig } from '../src/engine/options';
import { activationBytes, type ActivationSpec } from '../src/model/activations';
import { chooseRecompute, DEFAULT_MEMORY_BUDGET, memoryBudget, type RecomputeInput } from '../src/train/recompute';

const spec: ActivationSpec = {
  hidden: 256, heads: 4, kvHeads: 2, headDim: 64, intermediate: 768, qkNorm: false, sandwichNorms: false, vocab: 1000, layers: new Array(12).fill(null),
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
