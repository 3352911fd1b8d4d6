// AdamW over a list of trainable tensors, as torch.optim.AdamW with HF Trainer's parameter groups,
// plus global gradient-norm clipping (HF: max_grad_norm, 0 disables). All on the GPU: the clip
// factor is computed and applied there, with no readback. The tensors, their gradients and moments
// live in arenas (arena.ts): a step is one clear, one norm and one update for all of them.

import type { Gpu } from '../../gpu/runtime';
import type { Tensor } from '../../gpu/tensor';
import type { TrainableTensor } from '../../model/adapter';
import { TrainableArena, type AdamWSegments, type ArenaBuffers } from './arena';
import { GradientClip, type Optimizer, type OptimizerSettings } from './optimizer';

export type AdamWSettings = OptimizerSettings;

export class AdamW implements Optimizer {
  /** Optimizer steps taken (torch's `step` state). */
  step = 0;
  private readonly arena: TrainableArena;
  private readonly segments: AdamWSegments;
  private readonly m: ArenaBuffers;
  private readonly v: ArenaBuffers;
  private readonly clip: GradientClip;

  /** Moves `params` into the arena (TrainableArena.pack). */
  constructor(readonly gpu: Gpu, readonly params: TrainableTensor[], readonly settings: AdamWSettings) {
    this.arena = TrainableArena.pack(gpu, params);
    this.segments = this.arena.adamwSegments((p) => ({ lrScale: p.lrScale, decay: p.decay }));
    this.m = this.arena.buffers('exp_avg');
    this.v = this.arena.buffers('exp_avg_sq');
    this.clip = new GradientClip(gpu, settings.maxGradNorm);
  }

  zeroGrad(): void {
    this.arena.clearGrads();
  }

  /** One update at learning rate `lr`; returns the squared global grad norm tensor (pre-clip), for logging. */
  update(lr: number): Tensor {
    const s = this.settings;
    this.step++;
    this.clip.apply(this.arena);
    this.arena.adamw(this.segments, this.m, this.v, {
      lr, beta1: s.beta1, beta2: s.beta2, eps: s.eps, weightDecay: s.weightDecay, step: this.step, gradScale: this.clip.scale,
    });
    return this.clip.sumSq;
  }

  stateTensors(): { name: string; tensor: Tensor }[] {
    return this.params.flatMap((p, i) => [{ name: `${p.name}.exp_avg`, tensor: this.m.views[i]! }, { name: `${p.name}.exp_avg_sq`, tensor: this.v.views[i]! }]);
  }

  release(): void {
    this.gpu.release(...this.m.whole, ...this.m.views, ...this.v.whole, ...this.v.views);
    this.arena.release();
    this.clip.release();
  }
}
