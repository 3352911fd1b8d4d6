// AdamW over a list of trainable tensors, as torch.optim.AdamW with HF Trainer's parameter groups,
// plus global gradient-norm clipping (HF: max_grad_norm, 0 disables). All on the GPU: the clip
// factor is computed and applied there, with no readback.

import type { Gpu } from '../../gpu/runtime';
import type { Tensor } from '../../gpu/tensor';
import { adamw, clipScale, gradNormSquared } from '../../kernels/optim';
import type { TrainableTensor } from '../../model/adapter';
import type { Optimizer, OptimizerSettings } from './optimizer';

export type AdamWSettings = OptimizerSettings;

export class AdamW implements Optimizer {
  readonly m: Tensor[];
  readonly v: Tensor[];
  /** Optimizer steps taken (torch's `step` state). */
  step = 0;
  private readonly sumSq: Tensor;
  private readonly scale: Tensor;

  constructor(readonly gpu: Gpu, readonly params: TrainableTensor[], readonly settings: AdamWSettings) {
    this.m = params.map((p) => gpu.tensor(p.value.shape, 'f32', `${p.name}.exp_avg`));
    this.v = params.map((p) => gpu.tensor(p.value.shape, 'f32', `${p.name}.exp_avg_sq`));
    for (const t of [...this.m, ...this.v]) gpu.zero(t);
    this.sumSq = gpu.tensor([1], 'f32', 'grad_sum_sq');
    this.scale = gpu.tensor([1], 'f32', 'clip_scale');
  }

  zeroGrad(): void {
    for (const p of this.params) this.gpu.zero(p.grad);
  }

  /** One update at learning rate `lr`; returns the squared global grad norm tensor (pre-clip), for logging. */
  update(lr: number): Tensor {
    const s = this.settings;
    this.step++;
    gradNormSquared(this.gpu, this.params.map((p) => p.grad), this.sumSq);
    const clip = s.maxGradNorm > 0;
    if (clip) clipScale(this.gpu, this.sumSq, s.maxGradNorm, this.scale);
    this.params.forEach((p, i) => {
      adamw(this.gpu, p.value, p.grad, this.m[i]!, this.v[i]!, {
        lr: lr * p.lrScale,
        beta1: s.beta1,
        beta2: s.beta2,
        eps: s.eps,
        weightDecay: p.decay ? s.weightDecay : 0,
        step: this.step,
        ...(clip ? { gradScale: this.scale } : {}),
      });
    });
    return this.sumSq;
  }

  stateTensors(): { name: string; tensor: Tensor }[] {
    return this.params.flatMap((p, i) => [{ name: `${p.name}.exp_avg`, tensor: this.m[i]! }, { name: `${p.name}.exp_avg_sq`, tensor: this.v[i]! }]);
  }

  release(): void {
    this.gpu.release(...this.m, ...this.v, this.sumSq, this.scale);
  }
}
