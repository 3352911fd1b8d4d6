// Gradient accumulation as HF transformers does it: the loss of an optimizer step is the mean
// over the learned tokens of all its micro-batches, so two micro-batches of one row give the
// gradients of one batch of two rows.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { Adapter } from '../src/model/adapter';
import { dirFiles, fileSource } from '../src/model/files-node';
import { forwardBackward, shiftLabels, Workspace, type Batch } from '../src/model/forward';
import { Model } from '../src/model/model';
import { testGpu } from './helpers/gpu';
import { relErr } from './helpers/check';

it('two micro-batches of one row accumulate to the gradients of one batch of two', async () => {
  const gpu = await testGpu();
  const dir = join(import.meta.dirname, 'fixtures/models/llama');
  const c = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8'));
  const model = await Model.load(gpu, dirFiles(dir));
  const adapter = await Adapter.load(model, readFileSync(join(dir, 'adapter_init/adapter_config.json'), 'utf8'), await fileSource(join(dir, 'adapter_init/adapter_model.safetensors')));
  const S = c.input_ids[0].length;
  const row = (b: number): Batch => ({ B: 1, S, ids: Int32Array.from(c.input_ids[b]), labels: shiftLabels(Int32Array.from(c.labels[b]), 1, S), positions: Int32Array.from({ length: S }, (_, i) => i) });
  const both: Batch = { B: 2, S, ids: Int32Array.from(c.input_ids.flat()), labels: shiftLabels(Int32Array.from(c.labels.flat()), 2, S), positions: Int32Array.from({ length: 2 * S }, (_, i) => i % S) };
  const valid = both.labels.filter((l) => l !== -100).length;
  const params = adapter.params();

  const ws2 = new Workspace(model, 2, S, true);
  for (const p of params) gpu.zero(p.grad);
  ws2.load(both);
  forwardBackward(ws2, { backward: true, gradScale: 1 / valid });
  const whole = await Promise.all(params.map((p) => gpu.readF32(p.grad)));

  const ws1 = new Workspace(model, 1, S, true);
  for (const p of params) gpu.zero(p.grad);
  for (const b of [0, 1]) {
    ws1.load(row(b)); // same workspace: the second load must not overtake the first micro-batch
    forwardBackward(ws1, { backward: true, gradScale: 1 / valid });
  }
  for (let i = 0; i < params.length; i++) expect(relErr(await gpu.readF32(params[i]!.grad), whole[i]!), params[i]!.name).toBeLessThan(1e-5);
});
