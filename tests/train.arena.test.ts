// The optimizers' arenas (src/train/optimizers/arena.ts): trainable values, gradients and AdamW
// moments each in one buffer, every tensor a 256-byte-aligned view; packing keeps the values and
// gradients and re-points the layers; one optimizer step records a fixed number of dispatches and
// one gradient clear, whatever the number of tensors.
import { join } from 'node:path';
import { expect, it, vi } from 'vitest';
import { Adapter } from '../src/model/adapter';
import { dirFiles } from '../src/model/files-node';
import { Model } from '../src/model/model';
import { makeTrainable } from '../src/model/trainable';
import type { TrainableTensor } from '../src/model/adapter';
import { createOptimizer, type OptimizerChoice } from '../src/train/optimizers';
import { AdamW } from '../src/train/optimizers/adamw';
import { planArenas } from '../src/train/optimizers/arena';
import type { Gpu } from '../src/gpu/runtime';
import { makeRng } from './helpers/check';
import { testGpu } from './helpers/gpu';

const DIR = join(import.meta.dirname, 'fixtures/models/llama');
const SETTINGS = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 };

/** Dispatches and buffer clears of one zeroGrad + update. */
async function stepCounts(gpu: Gpu, model: Model, params: TrainableTensor[], kind: 'adamw' | 'muon' | 'adam_mini' | OptimizerChoice = 'adamw') {
  const choice: OptimizerChoice = typeof kind === 'string' ? { kind } : kind;
  const opt = createOptimizer(gpu, params, SETTINGS, choice, { hidden: model.spec.hidden, heads: model.spec.heads }, 0);
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

it('planArenas lays tensors out at 256-byte boundaries, in order, and starts a new arena where one binding is full', () => {
  expect(planArenas([1, 64, 65, 3], 1024)).toEqual([{ arena: 0, offset: 0 }, { arena: 0, offset: 64 }, { arena: 0, offset: 128 }, { arena: 0, offset: 256 }]);
  expect(planArenas([600, 500, 100, 1024], 1024)).toEqual([{ arena: 0, offset: 0 }, { arena: 1, offset: 0 }, { arena: 1, offset: 512 }, { arena: 2, offset: 0 }]);
  expect(() => planArenas([10, 1025], 1024)).toThrow(/tensor 1 has 1025 values; one buffer binding on this GPU holds at most 1024/);
});

it('packing an adapter keeps its values and gradients, puts them in one buffer each and points the layers at them', async () => {
  const gpu = await testGpu();
  const model = await Model.load(gpu, dirFiles(DIR));
  const rng = makeRng();
  const adapter = await Adapter.create(model, { rank: 4, alpha: 8, targets: 'all', dora: true }, rng.next);
  const params = adapter.params(16);
  const grads = params.map((p) => rng.randn(p.value.shape.reduce((a, b) => a * b, 1)));
  params.forEach((p, i) => gpu.write(p.grad, grads[i]!));
  const saved = await adapter.safetensors();
  const opt = new AdamW(gpu, params, SETTINGS);
  expect(new Set(params.map((p) => p.value.buffer)).size).toBe(1);
  expect(new Set(params.map((p) => p.grad.buffer)).size).toBe(1);
  expect(params[0]!.value.buffer).not.toBe(params[0]!.grad.buffer);
  for (const p of params) expect(p.value.offset % 256, p.name).toBe(0);
  expect(await adapter.safetensors()).toEqual(saved);
  for (const [i, p] of params.entries()) expect(await gpu.readF32(p.grad), p.name).toEqual(grads[i]);
  // the sites read and write the views (an unfused model: each module's tensors are its site's)
  for (const site of adapter.sites) {
    const p = params.find((q) => q.name.endsWith(`${site.name}.lora_A.weight`))!;
    expect(site.lora!.A).toBe(p.value);
    expect(site.loraGrads!.dA).toBe(p.grad);
  }
  // padding between the views: zero, in values and gradients
  const ends = params.map((p) => p.value.offset + p.value.shape.reduce((a, b) => a * b, 1) * 4);
  const span = Math.max(...ends);
  const whole = { buffer: params[0]!.value.buffer, shape: [span / 4], dtype: 'f32' as const, offset: 0 };
  const values = await gpu.readF32(whole), gradsOut = await gpu.readF32({ ...whole, buffer: params[0]!.grad.buffer });
  const inside = new Uint8Array(span / 4);
  params.forEach((p, i) => inside.fill(1, p.value.offset / 4, ends[i]! / 4));
  for (let i = 0; i < inside.length; i++) if (!inside[i] && (values[i] !== 0 || gradsOut[i] !== 0)) expect.fail(`padding element ${i} is not zero`);
  expect(opt.stateTensors().map((t) => t.name)).toEqual(params.flatMap((p) => [`${p.name}.exp_avg`, `${p.name}.exp_avg_sq`]));
  opt.release();
  adapter.release();
  model.release();
});

it('one optimizer step over a LoRA adapter or a full model takes the same few dispatches, however many tensors', async () => {
  const gpu = await testGpu();
  const model = await Model.load(gpu, dirFiles(DIR));
  const random = makeRng().next;
  const small = await Adapter.create(model, { rank: 4, alpha: 8, targets: ['q_proj'], layers: [0] }, random);
  const smallParams = small.params(16);
  const few = await stepCounts(gpu, model, smallParams);
  const fewMuon = await stepCounts(gpu, model, smallParams, 'muon');
  small.release();
  const all = await Adapter.create(model, { rank: 4, alpha: 8, targets: 'all', dora: true }, random);
  const allParams = all.params(16);
  const many = await stepCounts(gpu, model, allParams);
  const manyMuon = await stepCounts(gpu, model, allParams, 'muon');
  all.release();
  const full = makeTrainable(model, model.layers.map((l) => l.index), true);
  const fullCounts = await stepCounts(gpu, model, full);
  const fullMini = await stepCounts(gpu, model, full, 'adam_mini');
  console.log(`one step: AdamW ${smallParams.length} LoRA tensors ${JSON.stringify(few)}, ${allParams.length} LoRA tensors ${JSON.stringify(many)}, `
    + `${full.length} full-model tensors ${JSON.stringify(fullCounts)}; Muon ${JSON.stringify(fewMuon)} / ${JSON.stringify(manyMuon)}; Adam-mini full ${JSON.stringify(fullMini)}`);
  expect(allParams.length).toBeGreaterThan(4 * smallParams.length);
  expect(many).toEqual(few);
  expect(fullCounts).toEqual(few);
  // grad norm (partials + sum), clip factor, update; one clear of all gradients
  expect(few).toEqual({ dispatches: 4, clears: 1 });
  // Muon and Adam-mini update per tensor, but clear all gradients at once
  for (const c of [fewMuon, manyMuon, fullMini]) expect(c.clears).toBe(1);
  model.release();
});

it('GaLore, APOLLO and BAdam clear all gradients at once and measure them with one reduction', async () => {
  const gpu = await testGpu();
  const model = await Model.load(gpu, dirFiles(DIR));
  const lowRank = { targets: ['all'], rank: 2, updateInterval: 1, scale: 1 };
  // BAdam layer mode never switching: a switch clears the next block's fresh moments
  const badam = { startBlock: null, switchMode: 'ascending', switchInterval: -1, updateRatio: 0.5, maskMode: 'adjacent', seed: 1 } as const;
  const choices: OptimizerChoice[] = [
    { kind: 'galore', galore: { ...lowRank, projType: 'std' } },
    { kind: 'apollo', apollo: { ...lowRank, proj: 'random', projType: 'std', scaleType: 'channel', scaleFront: false } },
    { kind: 'badam', badam: { ...badam, mode: 'layer' } },
    { kind: 'badam', badam: { ...badam, mode: 'ratio' } },
  ];
  for (const choice of choices) {
    const full = makeTrainable(model, model.layers.map((l) => l.index), true);
    const counts = await stepCounts(gpu, model, full, choice);
    expect(counts.clears, choice.kind).toBe(1);
    expect(new Set(full.map((p) => p.grad.buffer)).size, choice.kind).toBe(1);
  }
  // the clip sees one norm: partials over the arena and their sum, whatever the number of tensors
  const full = makeTrainable(model, model.layers.map((l) => l.index), true);
  const opt = createOptimizer(gpu, full, SETTINGS, choices[0]!, { hidden: model.spec.hidden, heads: model.spec.heads }, 0);
  const grads = full.map((p) => makeRng().randn(p.value.shape.reduce((a, b) => a * b, 1)));
  full.forEach((p, i) => gpu.write(p.grad, grads[i]!));
  await opt.prepare?.();
  const sumSq = (await gpu.readF32(opt.update(0)))[0]!;
  const want = grads.reduce((t, g) => t + g.reduce((u, x) => u + x * x, 0), 0);
  expect(Math.abs(sumSq - want) / want).toBeLessThan(1e-5);
  opt.release();
  model.release();
});
