// NEFTune (neftune_noise_alpha): uniform noise of magnitude alpha / sqrt(seq * hidden) on the
// embeddings while training only; runs stay reproducible from the seed.
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { dirFiles } from '../src/model/files-node';
import { Model } from '../src/model/model';
import { Trainer, type LogRecord, type TrainOptions } from '../src/train/trainer';
import { testGpu } from './helpers/gpu';

const rows = Array.from({ length: 4 }, (_, i) => {
  const ids = Array.from({ length: 16 }, (_, t) => (i * 37 + t * 11) % 256);
  return { input_ids: ids, labels: ids };
});

async function firstLoss(neftuneAlpha: number): Promise<{ train: number; evalLoss: number }> {
  const gpu = await testGpu();
  const model = await Model.load(gpu, dirFiles(join(import.meta.dirname, 'fixtures/models/llama')));
  const opts: TrainOptions = {
    finetuningType: 'lora', lora: { rank: 2, alpha: 4, targets: 'all' }, learningRate: 0, scheduler: 'constant', warmupSteps: 0,
    warmupRatio: 0, epochs: 1, maxSteps: 1, batchSize: 4, gradAccum: 1, maxGradNorm: 0, weightDecay: 0, beta1: 0.9, beta2: 0.999,
    eps: 1e-8, neftuneAlpha, seed: 3, loggingSteps: 1, saveSteps: 0, evalSteps: 1, cutoffLen: 16, recompute: true,
  };
  const trainer = await Trainer.create(model, rows, rows, opts, 0);
  const logs: LogRecord[] = [];
  await trainer.run(null, { onLog: (r) => logs.push(r) });
  trainer.release();
  return { train: logs.find((l) => l.loss !== undefined)!.loss!, evalLoss: logs.find((l) => l.eval_loss !== undefined)!.eval_loss! };
}

it('adds noise to training forward passes only, reproducibly', async () => {
  const plain = await firstLoss(0);
  const noisy = await firstLoss(50);
  const again = await firstLoss(50);
  expect(noisy.train).not.toBeCloseTo(plain.train, 3); // the noise changes the training loss
  expect(noisy.train).toBe(again.train); // same seed, same noise
  expect(noisy.evalLoss).toBeCloseTo(plain.evalLoss, 4); // lr 0: evaluation sees no noise
});
