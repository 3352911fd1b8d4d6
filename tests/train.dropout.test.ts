// lora_dropout in training (PEFT's nn.Dropout on the LoRA input): masks are a function of (seed,
// step, micro-batch, site, element), so runs reproduce from the seed, recomputation and resumed
// runs see the same masks, and evaluation runs without dropout.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { defaultConfig } from '../src/config';
import { trainOptionsFromConfig } from '../src/engine/options';
import { Adapter } from '../src/model/adapter';
import { dirFiles, fileSource } from '../src/model/files-node';
import { forwardBackward, Workspace, type LoraDropoutStep } from '../src/model/forward';
import { Model } from '../src/model/model';
import { makeBatch } from '../src/train/batches';
import { preferenceOptions } from '../src/train/preference';
import type { RunStore } from '../src/train/store';
import { Trainer, type LogRecord, type TrainExample, type TrainOptions } from '../src/train/trainer';
import { relErr } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { memoryStore } from './helpers/run-store';

const fixture = (name: string) => join(import.meta.dirname, 'fixtures/models', name);

const rows = Array.from({ length: 8 }, (_, i) => {
  const ids = Array.from({ length: 12 }, (_, t) => (i * 37 + t * 11) % 256);
  return { input_ids: ids, labels: ids };
});

function options(over: Partial<TrainOptions> = {}): TrainOptions {
  return {
    finetuningType: 'lora', lora: { rank: 2, alpha: 4, targets: 'all' }, learningRate: 1e-2, scheduler: 'constant', warmupSteps: 0,
    warmupRatio: 0, epochs: 1, maxSteps: 4, batchSize: 2, gradAccum: 2, maxGradNorm: 1, weightDecay: 0, beta1: 0.9, beta2: 0.999,
    eps: 1e-8, neftuneAlpha: 0, seed: 5, loggingSteps: 1, saveSteps: 0, evalSteps: 0, cutoffLen: 12, recompute: true, ...over,
  };
}

/** A trained adapter (B ≠ 0, so dropout changes the output from the first step) with lora_dropout p. */
async function trainedAdapter(dir: string, p: number): Promise<TrainOptions['initialAdapter']> {
  const config = JSON.parse(readFileSync(join(fixture(dir), 'adapter_final/adapter_config.json'), 'utf8'));
  return { configJson: JSON.stringify({ ...config, lora_dropout: p }), weights: await fileSource(join(fixture(dir), 'adapter_final/adapter_model.safetensors')) };
}

interface Curve { loss: number[]; evalLoss: number[] }

async function train(opts: TrainOptions, dir = 'llama', how: { store?: RunStore; resumeFrom?: string; data?: TrainExample[] } = {}): Promise<Curve> {
  const gpu = await testGpu();
  const model = await Model.load(gpu, dirFiles(fixture(dir)));
  const data = how.data ?? rows;
  const trainer = await Trainer.create(model, data, data.slice(0, 4), opts, 0);
  if (how.resumeFrom) await trainer.resume(how.store!, how.resumeFrom);
  const logs: LogRecord[] = [];
  await trainer.run(how.store ?? null, { onLog: (r) => logs.push(r) });
  trainer.release();
  return { loss: logs.flatMap((l) => (l.loss === undefined ? [] : [l.loss])), evalLoss: logs.flatMap((l) => (l.eval_loss === undefined ? [] : [l.eval_loss])) };
}

it('dropout changes the training loss, not the evaluation loss', async () => {
  // a trained adapter (B ≠ 0) and lr 0: the weights stay put, so only the dropout can move a loss
  const still = { learningRate: 0, maxSteps: 1, gradAccum: 1, evalSteps: 1 };
  const plain = await train(options({ ...still, initialAdapter: await trainedAdapter('llama', 0) }));
  const dropped = await train(options({ ...still, initialAdapter: await trainedAdapter('llama', 0.3) }));
  expect(Math.abs(dropped.loss[0]! - plain.loss[0]!)).toBeGreaterThan(1e-3);
  expect(dropped.evalLoss).toEqual(plain.evalLoss);
});

async function gradientChecks(dir: string): Promise<void> {
  const gpu = await testGpu();
  const model = await Model.load(gpu, dirFiles(fixture(dir)));
  const { configJson, weights } = (await trainedAdapter(dir, 0.3))!;
  const params = (await Adapter.load(model, configJson, weights)).params();
  const batch = makeBatch(rows.slice(0, 2), 0, 12);
  const grads = async (recompute: boolean, loraDropout?: LoraDropoutStep): Promise<Float32Array[]> => {
    const ws = new Workspace(model, batch.B, batch.S, recompute);
    ws.load(batch);
    for (const p of params) gpu.zero(p.grad);
    forwardBackward(ws, { backward: true, gradScale: 1 / batch.validTokens, loraDropout });
    const out = await Promise.all(params.map((p) => gpu.readF32(p.grad)));
    ws.release();
    return out;
  };
  const drop: LoraDropoutStep = { p: 0.3, seed: 11, step: 4, micro: 1 };
  const recomputed = await grads(true, drop), kept = await grads(false, drop), none = await grads(true);
  for (let i = 0; i < params.length; i++) {
    expect(relErr(recomputed[i]!, kept[i]!), params[i]!.name).toBeLessThan(1e-6);
    expect(relErr(recomputed[i]!, none[i]!), `${params[i]!.name}: dropout changes the gradient`).toBeGreaterThan(1e-3);
  }
  if (dir === 'llama_dora') return; // PEFT's DoRA gradient detaches the weight norm: not the derivative of the loss

  // the masked forward is a deterministic function of the weights: its central difference along
  // the gradient g must be |g|² (a backward that missed a mask would not match)
  const values = await Promise.all(params.map((p) => gpu.readF32(p.value)));
  const g2 = recomputed.reduce((a, g) => a + g.reduce((b, v) => b + v * v, 0), 0);
  const h = 1e-2 / g2;
  const lossAt = async (step: number): Promise<number> => {
    params.forEach((p, i) => gpu.write(p.value, values[i]!.map((v, j) => v + step * recomputed[i]![j]!)));
    const ws = new Workspace(model, batch.B, batch.S, true);
    ws.load(batch);
    forwardBackward(ws, { backward: false, gradScale: 1, loraDropout: drop });
    const loss = (await gpu.readF32(ws.loss)).reduce((a, b) => a + b, 0) / batch.validTokens;
    ws.release();
    return loss;
  };
  const slope = ((await lossAt(h)) - (await lossAt(-h))) / (2 * h);
  expect(Math.abs(slope - g2) / g2).toBeLessThan(2e-3);
}

it('LoRA gradients with dropout: the same with recomputation, and the derivative of the masked loss', () => gradientChecks('llama'));
it('DoRA gradients with dropout: the same with recomputation', () => gradientChecks('llama_dora'));

it('a resumed run reproduces the uninterrupted loss curve', async () => {
  const opts = options({ lora: { rank: 2, alpha: 4, targets: 'all', dropout: 0.25 }, maxSteps: 3, saveSteps: 1 });
  const store = memoryStore();
  const whole = await train(opts, 'llama', { store });
  expect(JSON.parse(store.files.get('checkpoint-1/adapter_config.json') as string).lora_dropout).toBe(0.25); // PEFT's adapter_config.json
  const resumed = await train(opts, 'llama', { store, resumeFrom: 'checkpoint-1' });
  expect(resumed.loss).toEqual(whole.loss.slice(1));
});

it('lora_dropout reaches the trainer from the config; dpo trains without it, rm with it (as LLaMA-Factory)', async () => {
  expect(trainOptionsFromConfig({ ...defaultConfig(), lora_dropout: 0.1 }).lora?.dropout).toBe(0.1);
  const pairs = [0, 1].map((i) => ({ chosen: rows[2 * i]!, rejected: rows[2 * i + 1]! }));
  const dpo = async (p: number) => train(options({
    preference: preferenceOptions({ ...defaultConfig(), stage: 'dpo' }), initialAdapter: await trainedAdapter('llama', p), maxSteps: 1, gradAccum: 1,
  }), 'llama', { data: pairs });
  expect((await dpo(0.3)).loss).toEqual((await dpo(0)).loss);

  const rm = async (p: number) => train(options({
    preference: preferenceOptions({ ...defaultConfig(), stage: 'rm' }), initialAdapter: await trainedAdapter('llama', p), maxSteps: 2, gradAccum: 1,
  }), 'llama', { data: pairs });
  const masked = (await rm(0.3)).loss;
  expect(masked).toEqual((await rm(0.3)).loss);
  const plain = (await rm(0)).loss;
  expect(Math.abs(masked[0]! - plain[0]!)).toBeGreaterThan(1e-4);
});
