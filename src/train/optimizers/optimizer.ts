// What the trainer needs from any optimizer, and the gradient clipping they all share (HF Trainer
// clips the global gradient norm before the optimizer step, whatever the optimizer).

import type { Gpu } from '../../gpu/runtime';
import type { Tensor } from '../../gpu/tensor';
import { clipScale } from '../../kernels/optim';
import type { GradientSet } from './arena';

export interface Optimizer {
  /** Optimizer steps taken (torch's `step` state). */
  step: number;
  zeroGrad(): void;
  /** Host work the next update needs, after the gradients are ready (GaLore's SVD of them). */
  prepare?(): Promise<void>;
  /** One update at learning rate `lr`; returns the squared global gradient norm (pre-clip) tensor, for logging. */
  update(lr: number): Tensor;
  /** The state a checkpoint saves and a resume restores, under PEFT-style tensor names. */
  stateTensors(): { name: string; tensor: Tensor }[];
  release(): void;
}

/** The hyper-parameters every optimizer here takes (TrainingArguments' adam_* and max_grad_norm). */
export interface OptimizerSettings {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  maxGradNorm: number;
}

/**
 * The squared global gradient norm and the factor the update kernels multiply gradients by:
 * clip_grad_norm_'s min(1, max_norm / (norm + 1e-6)), or 1 when clipping is off.
 */
export class GradientClip {
  readonly sumSq: Tensor;
  readonly scale: Tensor;

  constructor(readonly gpu: Gpu, readonly maxNorm: number) {
    this.sumSq = gpu.tensor([1], 'f32', 'grad_sum_sq');
    this.scale = gpu.upload(new Float32Array([1]), [1], 'f32', 'clip_scale');
  }

  /** Measures the gradients (an arena's, or part of them: BAdam's active block or masked entries) and sets `scale`; no readback. */
  apply(grads: GradientSet): void {
    grads.gradNormSquared(this.sumSq);
    if (this.maxNorm > 0) clipScale(this.gpu, this.sumSq, this.maxNorm, this.scale);
  }

  release(): void {
    this.gpu.release(this.sumSq, this.scale);
  }
}
