// transformers' AdamW rule, which galore_torch and apollo_torch copy for every parameter they do
// not project: the bias corrections in the step size lr sqrt(1 - b2^t) / (1 - b1^t), eps outside
// the square root, and the weight decay applied after the update (p -= lr wd p with the new p).

import type { Gpu } from '../../gpu/runtime';
import type { Tensor } from '../../gpu/tensor';
import { numel } from '../../gpu/tensor';
import { adamDirection, scaledStep } from '../../kernels/optim';
import type { TrainableTensor } from '../../model/adapter';
import type { OptimizerSettings } from './optimizer';

/** Which parameters are projected: 2-D weights of linear modules named by the target list ("all": every one but the output head). */
export function isLowRankTarget(p: Pick<TrainableTensor, 'name' | 'value'>, targets: readonly string[]): boolean {
  if (p.value.shape.length !== 2 || !p.name.endsWith('.weight') || /embed|wte|embd/.test(p.name)) return false;
  const module = p.name.slice(0, -'.weight'.length);
  if (targets.length === 1 && targets[0] === 'all') return !/lm_head/.test(module);
  return targets.some((t) => module.includes(t));
}

/** The bias-corrected step size of transformers' AdamW at 1-based step t. */
export const hfStepSize = (lr: number, s: OptimizerSettings, t: number): number => (lr * Math.sqrt(1 - s.beta2 ** t)) / (1 - s.beta1 ** t);

export interface PlainState {
  p: TrainableTensor;
  m: Tensor;
  v: Tensor;
}

/** Moments for an unprojected parameter. */
export function plainState(gpu: Gpu, p: TrainableTensor): PlainState {
  const m = gpu.tensor(p.value.shape, 'f32', `${p.name}.exp_avg`);
  const v = gpu.tensor(p.value.shape, 'f32', `${p.name}.exp_avg_sq`);
  gpu.zero(m);
  gpu.zero(v);
  return { p, m, v };
}

/** One transformers-AdamW step of p, its direction in `scratch` (at least p's size), `one` an f32 [1] holding 1. */
export function hfAdamWStep(gpu: Gpu, a: PlainState, s: OptimizerSettings, lr: number, t: number, gradScale: Tensor, scratch: Tensor, one: Tensor): void {
  const u = { ...scratch, shape: a.p.value.shape };
  if (numel(scratch.shape) < numel(a.p.value.shape)) throw new Error(`hfAdamWStep: scratch is smaller than ${a.p.name}`);
  adamDirection(gpu, a.p.grad, a.m, a.v, u, { beta1: s.beta1, beta2: s.beta2, eps: s.eps, gradScale });
  const rate = lr * a.p.lrScale;
  scaledStep(gpu, a.p.value, u, one, { stepSize: hfStepSize(rate, s, t), decay: 1 - rate * (a.p.decay ? s.weightDecay : 0) });
}
