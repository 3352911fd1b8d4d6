// Shared steps of the parity tests against HF transformers + PEFT fixtures (tests/fixtures/models,
// made by generators/gen_fixtures.py).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { Model } from '../../src/model/model';
import { dirFiles, fileSource } from '../../src/model/files-node';
import { Adapter, type TrainableTensor } from '../../src/model/adapter';
import { forwardBackward, fullLogits, shiftLabels, Workspace, type Batch } from '../../src/model/forward';
import { Generator } from '../../src/model/generate';
import { AdamW } from '../../src/train/optimizers/adamw';
import { makeTrainable } from '../../src/model/trainable';
import { openSafetensors, readF32 } from '../../src/model/safetensors';
import { testGpu } from './gpu';
import { relErr } from './check';
import type { Gpu } from '../../src/gpu/runtime';

export const ROOT = join(import.meta.dirname, '../fixtures/models');
export const TOL = 1e-4;
/**
 * DoRA's five-step trajectory is ill-conditioned: perturbing the initial adapter by 1e-6
 * (relative) moves our own final adapter by 3.6e-3, against 6e-6 for plain LoRA (measured
 * 2026-11-22). Any f32 implementation that is not bit-identical to PyTorch lands ~1e-4 away, so
 * DoRA's final tensors get this bound; its gradients and every step's loss keep TOL.
 */
export const DORA_FINAL_TOL = 1e-3;

export interface Case {
  input_ids: number[][];
  labels: number[][];
  prompt: number[];
  optimizer: { lr: number; betas: [number, number]; eps: number; weight_decay: number; steps: number };
  expected: { loss_base: number; greedy_base: number[]; loss_lora_init?: number; losses_train: number[]; loss_final: number; greedy_final?: number[] };
}

export const readCase = (name: string): Case => JSON.parse(readFileSync(join(ROOT, name, 'case.json'), 'utf8'));

export function batchOf(c: Case): Batch & { valid: number } {
  const B = c.input_ids.length, S = c.input_ids[0]!.length;
  const labels = shiftLabels(Int32Array.from(c.labels.flat()), B, S);
  return {
    B, S,
    ids: Int32Array.from(c.input_ids.flat()),
    labels,
    positions: Int32Array.from({ length: B * S }, (_, i) => i % S),
    valid: labels.filter((l) => l !== -100).length,
  };
}

export async function tensorsOf(path: string): Promise<Map<string, Float32Array>> {
  const f = await openSafetensors(await fileSource(path));
  const out = new Map<string, Float32Array>();
  // gradient files name DoRA's magnitude by its parameter (…lora_magnitude_vector.weight), adapter files without .weight
  for (const name of f.tensors.keys()) out.set(name.replace(/lora_magnitude_vector\.weight$/, 'lora_magnitude_vector'), await readF32(f, name));
  return out;
}

export async function meanLoss(gpu: Gpu, ws: Workspace, valid: number): Promise<number> {
  const l = await gpu.readF32(ws.loss);
  return l.reduce((a, b) => a + b, 0) / valid;
}

export async function greedy(model: Model, prompt: number[], n: number): Promise<number[]> {
  const gen = new Generator(model, 64);
  const out: number[] = [];
  for await (const id of gen.generate(prompt, { maxNewTokens: n, stopIds: [] })) out.push(id);
  gen.release();
  return out;
}

export async function expectGrads(gpu: Gpu, params: TrainableTensor[], ref: Map<string, Float32Array>, tol: number) {
  expect(params.map((p) => p.name).sort()).toEqual([...ref.keys()].sort());
  for (const p of params) {
    const err = relErr(await gpu.readF32(p.grad), ref.get(p.name)!);
    expect(err, `gradient ${p.name}: rel err ${err}`).toBeLessThan(tol);
  }
}

export async function train(gpu: Gpu, ws: Workspace, batch: Batch & { valid: number }, params: TrainableTensor[], c: Case): Promise<number[]> {
  const o = c.optimizer;
  const opt = new AdamW(gpu, params, { lr: o.lr, beta1: o.betas[0], beta2: o.betas[1], eps: o.eps, weightDecay: o.weight_decay, maxGradNorm: 0 });
  const losses: number[] = [];
  for (let s = 0; s < o.steps; s++) {
    opt.zeroGrad();
    forwardBackward(ws, { backward: true, gradScale: 1 / batch.valid });
    losses.push(await meanLoss(gpu, ws, batch.valid));
    opt.update(o.lr);
  }
  opt.release();
  return losses;
}

export const near = (got: number, want: number, what: string) =>
  expect(Math.abs(got - want) / Math.abs(want), `${what}: ${got} vs ${want}`).toBeLessThan(TOL);


/** Base logits and greedy tokens, LoRA loss and gradients, AdamW steps, final adapter and tokens. */
export async function loraParity(name: string): Promise<void> {
  const gpu = await testGpu();
  const dir = join(ROOT, name);
  const c = readCase(name);
  const model = await Model.load(gpu, dirFiles(dir));
  const batch = batchOf(c);
  const ws = new Workspace(model, batch.B, batch.S, false);
  ws.load(batch);

  const logits = gpu.tensor([batch.B * batch.S, model.spec.vocab]);
  fullLogits(ws, logits);
  const refLogits = (await tensorsOf(join(dir, 'logits_base.safetensors'))).get('logits')!;
  expect(relErr(await gpu.readF32(logits), refLogits), 'base logits').toBeLessThan(TOL);
  forwardBackward(ws, { backward: false, gradScale: 1 / batch.valid });
  near(await meanLoss(gpu, ws, batch.valid), c.expected.loss_base, 'base loss');
  expect(await greedy(model, c.prompt, 10)).toEqual(c.expected.greedy_base);

  const adapter = await Adapter.load(model, readFileSync(join(dir, 'adapter_init/adapter_config.json'), 'utf8'),
    await fileSource(join(dir, 'adapter_init/adapter_model.safetensors')));
  const ws2 = new Workspace(model, batch.B, batch.S, true); // the adapter adds saved activations; recompute path
  ws2.load(batch);
  const params = adapter.params();
  for (const p of params) gpu.zero(p.grad);
  forwardBackward(ws2, { backward: true, gradScale: 1 / batch.valid });
  near(await meanLoss(gpu, ws2, batch.valid), c.expected.loss_lora_init!, 'LoRA initial loss');
  await expectGrads(gpu, params, await tensorsOf(join(dir, 'grads_init.safetensors')), TOL);

  const losses = await train(gpu, ws2, batch, params, c);
  losses.forEach((l, i) => near(l, c.expected.losses_train[i]!, `training loss at step ${i + 1}`));
  const final = await tensorsOf(join(dir, 'adapter_final/adapter_model.safetensors'));
  const finalTol = name === 'llama_dora' ? DORA_FINAL_TOL : TOL;
  for (const p of params) {
    expect(relErr(await gpu.readF32(p.value), final.get(p.name)!), `final ${p.name}`).toBeLessThan(finalTol);
  }
  forwardBackward(ws2, { backward: false, gradScale: 1 / batch.valid });
  near(await meanLoss(gpu, ws2, batch.valid), c.expected.loss_final, 'final loss');
  expect(await greedy(model, c.prompt, 10)).toEqual(c.expected.greedy_final);
}

/** Full fine-tuning: gradients of every weight, AdamW steps, final weights. */
export async function fullParity(name: string): Promise<void> {
  const gpu = await testGpu();
  const dir = join(ROOT, name);
  const c = readCase(name);
  const model = await Model.load(gpu, dirFiles(dir));
  const batch = batchOf(c);
  const ws = new Workspace(model, batch.B, batch.S, false);
  ws.load(batch);
  const params = makeTrainable(model, model.layers.map((l) => l.index), true);
  for (const p of params) gpu.zero(p.grad);
  forwardBackward(ws, { backward: true, gradScale: 1 / batch.valid });
  near(await meanLoss(gpu, ws, batch.valid), c.expected.loss_base, 'loss');
  await expectGrads(gpu, params, await tensorsOf(join(dir, 'grads_init.safetensors')), TOL);
  const losses = await train(gpu, ws, batch, params, c);
  losses.forEach((l, i) => near(l, c.expected.losses_train[i]!, `training loss at step ${i + 1}`));
  const final = await tensorsOf(join(dir, 'model_final.safetensors'));
  for (const p of params) {
    expect(relErr(await gpu.readF32(p.value), final.get(p.name)!), `final ${p.name}`).toBeLessThan(TOL);
  }
}
