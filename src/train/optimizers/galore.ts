// GaLore (LLaMA-Factory's use_galore: galore_torch's GaLoreAdamW): each targeted weight's gradient
// is projected onto its top-k singular vectors (recomputed from the gradient every
// galore_update_interval steps, starting with the first), Adam runs on the projected gradient (its
// moments kept across projection changes, as GaLore keeps them), and the Adam direction comes back
// through the same projection, times galore_scale. Every other parameter takes transformers' AdamW.
// The SVD iterates products of the gradient with a few vectors (GEMMs on the GPU for large weights)
// in Optimizer.prepare.

import type { Gpu } from '../../gpu/runtime';
import type { Tensor } from '../../gpu/tensor';
import { numel } from '../../gpu/tensor';
import { adamDirection } from '../../kernels/optim';
import type { TrainableTensor } from '../../model/adapter';
import { mulberry32 } from '../../data/random';
import { hfAdamWStep, hfStepSize, isLowRankTarget, plainState, type PlainState } from './hf-adamw';
import { gradientOps, normalFrom, project, projectBack, projectedShape, projectionShape, projectionSide, topSingularProjection, type ProjType, type Side } from './low-rank';
import { TrainableArena } from './arena';
import { GradientClip, type Optimizer, type OptimizerSettings } from './optimizer';

export interface GaloreSettings {
  targets: readonly string[];
  rank: number;
  updateInterval: number;
  scale: number;
  projType: ProjType;
}

interface Projected {
  p: TrainableTensor;
  side: Side;
  R: number;
  C: number;
  k: number;
  Q: Tensor;
  low: Tensor;
  m: Tensor;
  v: Tensor;
  u: Tensor;
}

export class Galore implements Optimizer {
  step = 0;
  private readonly projected: Projected[] = [];
  private readonly plain: PlainState[] = [];
  private readonly clip: GradientClip;
  /** The parameters and gradients (arena.ts): cleared and measured at once; the updates stay per tensor. */
  private readonly arena: TrainableArena;
  private readonly scratch: Tensor;
  private readonly one: Tensor;
  private readonly normal: () => number;

  constructor(readonly gpu: Gpu, readonly params: TrainableTensor[], readonly settings: OptimizerSettings, readonly galore: GaloreSettings, seed: number) {
    this.arena = TrainableArena.pack(gpu, params);
    this.clip = new GradientClip(gpu, settings.maxGradNorm);
    this.normal = normalFrom(mulberry32((seed ^ 0x6a1023e5) >>> 0));
    const zeroed = (shape: readonly number[], name: string) => {
      const t = gpu.tensor(shape, 'f32', name);
      gpu.zero(t);
      return t;
    };
    let largest = 1;
    for (const p of params) {
      if (!isLowRankTarget(p, galore.targets)) {
        this.plain.push(plainState(gpu, p));
        largest = Math.max(largest, numel(p.value.shape));
        continue;
      }
      const [R, C] = p.value.shape as [number, number];
      const side = projectionSide(R, C, galore.projType);
      const k = Math.min(galore.rank, R, C);
      const low = projectedShape(side, R, C, k);
      this.projected.push({
        p, side, R, C, k,
        Q: zeroed(projectionShape(side, R, C, k), `${p.name}.galore_projection`),
        low: gpu.tensor(low, 'f32', `${p.name}.galore_grad`),
        m: zeroed(low, `${p.name}.exp_avg`),
        v: zeroed(low, `${p.name}.exp_avg_sq`),
        u: gpu.tensor(low, 'f32', `${p.name}.galore_direction`),
      });
    }
    this.scratch = gpu.tensor([largest], 'f32', 'galore.scratch');
    this.one = gpu.upload(new Float32Array([1]), [1]);
  }

  zeroGrad(): void {
    this.arena.clearGrads();
  }

  /** At steps 0, T, 2T, ...: the SVD of each projected gradient (galore_torch's iter % update_proj_gap == 0). */
  async prepare(): Promise<void> {
    if (this.step % this.galore.updateInterval !== 0) return;
    for (const x of this.projected) {
      this.gpu.write(x.Q, await topSingularProjection(await gradientOps(this.gpu, x.p.grad, x.R, x.C), x.k, x.side, this.normal));
    }
  }

  update(lr: number): Tensor {
    const s = this.settings;
    this.step++;
    this.clip.apply(this.arena);
    for (const x of this.projected) {
      project(this.gpu, x.side, x.p.grad, x.Q, x.low, x.R, x.C, x.k);
      adamDirection(this.gpu, x.low, x.m, x.v, x.u, { beta1: s.beta1, beta2: s.beta2, eps: s.eps, gradScale: this.clip.scale });
      // p = (p - stepSize scale back(u)) (1 - lr wd), as one GEMM: beta p + alpha back(u)
      const rate = lr * x.p.lrScale;
      const decay = 1 - rate * s.weightDecay;
      projectBack(this.gpu, x.side, x.u, x.Q, x.p.value, x.R, x.C, x.k, -hfStepSize(rate, s, this.step) * this.galore.scale * decay, decay);
    }
    for (const a of this.plain) hfAdamWStep(this.gpu, a, s, lr, this.step, this.clip.scale, this.scratch, this.one);
    return this.clip.sumSq;
  }

  stateTensors(): { name: string; tensor: Tensor }[] {
    return [
      ...this.projected.flatMap((x) => [
        { name: `${x.p.name}.exp_avg`, tensor: x.m }, { name: `${x.p.name}.exp_avg_sq`, tensor: x.v }, { name: `${x.p.name}.galore_projection`, tensor: x.Q },
      ]),
      ...this.plain.flatMap((a) => [{ name: `${a.p.name}.exp_avg`, tensor: a.m }, { name: `${a.p.name}.exp_avg_sq`, tensor: a.v }]),
    ];
  }

  release(): void {
    this.gpu.release(...this.projected.flatMap((x) => [x.Q, x.low, x.m, x.v, x.u]), ...this.plain.flatMap((a) => [a.m, a.v]), this.scratch, this.one);
    this.arena.release();
    this.clip.release();
  }
}
