// LoRA+ (loraplus_lr_ratio): lora_B learns at ratio x the learning rate, lora_A at the learning
// rate. AdamW's first step moves every parameter with a nonzero gradient by about its own rate
// (m̂ / √v̂ = ±1), so the step sizes show the two rates directly.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { Adapter } from '../src/model/adapter';
import { dirFiles, fileSource } from '../src/model/files-node';
import { forwardBackward, shiftLabels, Workspace } from '../src/model/forward';
import { Model } from '../src/model/model';
import { AdamW } from '../src/train/optimizers/adamw';
import { testGpu } from './helpers/gpu';

it('lora_B steps at loraplus_lr_ratio x the learning rate, lora_A at the learning rate', async () => {
  const gpu = await testGpu();
  const dir = join(import.meta.dirname, 'fixtures/models/llama');
  const c = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8'));
  const model = await Model.load(gpu, dirFiles(dir));
  // the trained adapter: B != 0, so A has gradients too
  const adapter = await Adapter.load(model, readFileSync(join(dir, 'adapter_final/adapter_config.json'), 'utf8'), await fileSource(join(dir, 'adapter_final/adapter_model.safetensors')));
  const [B, S] = [c.input_ids.length, c.input_ids[0].length];
  const ws = new Workspace(model, B, S, false);
  ws.load({ B, S, ids: Int32Array.from(c.input_ids.flat()), labels: shiftLabels(Int32Array.from(c.labels.flat()), B, S), positions: Int32Array.from({ length: B * S }, (_, i) => i % S) });
  const ratio = 16, lr = 1e-3;
  const params = adapter.params(ratio);
  for (const p of params) gpu.zero(p.grad);
  forwardBackward(ws, { backward: true, gradScale: 1 });
  const before = await Promise.all(params.map((p) => gpu.readF32(p.value)));
  const opt = new AdamW(gpu, params, { lr, beta1: 0.9, beta2: 0.999, eps: 1e-12, weightDecay: 0, maxGradNorm: 0 });
  opt.update(lr);
  for (const [i, p] of params.entries()) {
    const after = await gpu.readF32(p.value);
    const step = Math.max(...after.map((v, j) => Math.abs(v - before[i]![j]!)));
    const want = p.name.includes('lora_B') ? ratio * lr : lr;
    expect(step / want, p.name).toBeCloseTo(1, 3);
  }
  opt.release();
  ws.release();
  adapter.release();
  model.release();
});
