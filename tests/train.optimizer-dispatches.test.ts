// One optimizer step records a fixed number of dispatches and grad clears, whatever the number of
// trainable tensors: gradients, values and moments live in one arena, so the clear, the gradient
// norm and the AdamW update each cover all of them at once.
import { join } from 'node:path';
import { expect, it, vi } from 'vitest';
import { Adapter } from '../src/model/adapter';
import { dirFiles } from '../src/model/files-node';
import { Model } from '../src/model/model';
import { makeTrainable } from '../src/model/trainable';
import type { TrainableTensor } from '../src/model/adapter';
import { createOptimizer, type OptimizerKind } from '../src/train/optimizers';
import type { Gpu } from '../src/gpu/runtime';
import { makeRng } from './helpers/check';
import { testGpu } from './helpers/gpu';

const DIR = join(import.meta.dirname, 'fixtures/models/llama');
const SETTINGS = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 };

/** Dispatches and buffer clears of one zeroGrad + update. */
async function stepCounts(gpu: Gpu, params: TrainableTensor[], kind: OptimizerKind = 'adamw') {
  const opt = createOptimizer(gpu, params, SETTINGS, kind, { hidden: 64, heads: 4 });
  await gpu.sync();
  gpu.resetCounters();
  const zero = vi.spyOn(gpu, 'zero');
  opt.zeroGrad();
  opt.update(SETTINGS.lr);
  const counts = { dispatches: gpu.counters.dispatches, clears: zero.mock.calls.length };
  zero.mockRestore();
  await gpu.sync();
  opt.release();
  return counts;
}

it('one AdamW step over a LoRA adapter or a full model takes the same few dispatches, however many tensors', async () => {
  const gpu = await testGpu();
  const model = await Model.load(gpu, dirFiles(DIR));
  const random = makeRng().next;
  const small = await Adapter.create(model, { rank: 4, alpha: 8, targets: ['q_proj'], layers: [0] }, random);
  const smallParams = small.params(16);
  const few = await stepCounts(gpu, smallParams);
  small.release();
  const all = await Adapter.create(model, { rank: 4, alpha: 8, targets: 'all', dora: true }, random);
  const allParams = all.params(16);
  const many = await stepCounts(gpu, allParams);
  all.release();
  const full = makeTrainable(model, model.layers.map((l) => l.index), true);
  const fullCounts = await stepCounts(gpu, full);
  console.log(`one AdamW step: ${smallParams.length} LoRA tensors ${JSON.stringify(few)}, ${allParams.length} LoRA tensors ${JSON.stringify(many)}, `
    + `${full.length} full-model tensors ${JSON.stringify(fullCounts)}`);
  expect(allParams.length).toBeGreaterThan(4 * smallParams.length);
  expect(many).toEqual(few);
  expect(fullCounts).toEqual(few);
  // grad norm (partials + sum), clip factor, update; one clear of all gradients
  expect(few).toEqual({ dispatches: 4, clears: 1 });
  model.release();
});
