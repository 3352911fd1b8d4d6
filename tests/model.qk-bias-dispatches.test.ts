// RoPE adds the q/k projections' biases in its own pass where nothing reads the raw projections
// (Qwen2: no q/k norms): a training step of a model with those biases records as many dispatches
// as the same model without them, with and without recomputation.
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { benchTraining } from '../src/bench/train';
import { dirFiles } from '../src/model/files-node';
import { Model, siteOf } from '../src/model/model';
import { testGpu } from './helpers/gpu';

it('q/k projection biases cost no dispatch of their own on a model without q/k norms', async () => {
  const gpu = await testGpu();
  const model = await Model.load(gpu, dirFiles(join(import.meta.dirname, 'fixtures/models/qwen2')));
  const step = async (recompute: boolean) => (await benchTraining(model, { batch: 1, seq: 8, rank: 2, steps: 1, warmup: 1, recompute })).perStep[0]!.dispatches;
  const withBias = [await step(false), await step(true)];
  const saved = model.layers.map((l) => [siteOf(l, 'q_proj'), siteOf(l, 'k_proj'), siteOf(l, 'v_proj')].map((s) => s.bias));
  expect(saved.flat().every((b) => b !== null)).toBe(true);
  for (const l of model.layers) for (const kind of ['q_proj', 'k_proj'] as const) siteOf(l, kind).bias = null;
  expect([await step(false), await step(true)]).toEqual(withBias);
  // v's bias is still added by its projection: one dispatch per layer per forward
  for (const l of model.layers) siteOf(l, 'v_proj').bias = null;
  const layers = model.layers.length;
  expect([await step(false), await step(true)]).toEqual([withBias[0]! - layers, withBias[1]! - 2 * layers]);
  model.layers.forEach((l, i) => (['q_proj', 'k_proj', 'v_proj'] as const).forEach((kind, k) => (siteOf(l, kind).bias = saved[i]![k]!)));
  model.release();
});
