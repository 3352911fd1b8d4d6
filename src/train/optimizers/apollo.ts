// APOLLO (LLaMA-Factory's use_apollo: apollo_torch's APOLLOAdamW): each targeted weight's gradient
// is projected to rank k, by a Gaussian matrix / sqrt(k) drawn anew every apollo_update_interval
// steps (apollo_proj: random) or by GaLore's SVD projection (svd); Adam runs in that space only to
// measure how much it would rescale each channel: factor = ||Adam direction|| / ||projected
// gradient|| per row or column of the projected gradient (apollo_scale_type: channel) or over the
// whole (tensor). The update is the raw gradient times its factor, kept from growing faster than
// 1.01x per step (Fira's norm-growth limiter), times sqrt(apollo_scale). Every other parameter takes
// transformers' AdamW. torch's generator is not reproduced: the Gaussian draws are the project's.

import type { Gpu } from '../../gpu/runtime';
import type { Tensor } from '../../gpu/tensor';
import { numel } from '../../gpu/tensor';
import { adamDirection, apolloFactor, apolloLimit, apolloScaleGrad, gradNormSquared, scaledStep, type ChannelAxis } from '../../kernels/optim';
import type { TrainableTensor } from '../../model/adapter';
import { mulberry32 } from '../../data/random';
import { hfAdamWStep, hfStepSize, isLowRankTarget, plainState, type PlainState } from './hf-adamw';
import { gradientOps, normalFrom, project, projectedShape, projectionShape, projectionSide, topSingularProjection, type ProjType, type Side } from './low-rank';
import { TrainableArena } from './arena';
import { GradientClip, type Optimizer, type OptimizerSettings } from './optimizer';

export interface ApolloSettings {
  targets: readonly string[];
  rank: number;
  updateInterval: number;
  scale: number;
  proj: 'random' | 'svd';
  projType: Exclude<ProjType, 'reverse_std'>;
  scaleType: 'channel' | 'tensor';
  scaleFront: boolean;
}

interface Projected {
  p: TrainableTensor;
  index: number;
  side: Side;
  R: number;
  C: number;
  k: number;
  /** The channels: rows or columns of both the projected and the raw gradient, or the whole tensor. */
  axis: ChannelAxis;
  Q: Tensor;
  low: Tensor;
  m: Tensor;
  v: Tensor;
  u: Tensor;
  factor: Tensor;
  /** The limiter's last norm (-1: none yet) and this step's limiter. */
  prev: Tensor;
  limiter: Tensor;
}

/**
 * The channel axis of apollo_torch's rule on the projected gradient [a, b]: norms over dim 0 (one
 * factor per column) when a < b, else over dim 1 (one per row); the factors must then line up with
 * the raw gradient's rows or columns.
 */
export function apolloAxis(name: string, low: [number, number], R: number, C: number, scaleType: 'channel' | 'tensor'): ChannelAxis {
  if (scaleType === 'tensor') return 'tensor';
  const [a, b] = low;
  if (a < b) {
    if (b !== C) throw new Error(`use_apollo: ${name} [${R}, ${C}] projected to [${a}, ${b}] gives ${b} channel factors for ${C} columns; lower apollo_rank below ${Math.min(R, C)}`);
    return 'column';
  }
  if (a !== R) throw new Error(`use_apollo: ${name} [${R}, ${C}] projected to [${a}, ${b}] gives ${a} channel factors for ${R} rows; lower apollo_rank below ${Math.min(R, C)}`);
  return 'row';
}

/** The Gaussian projection of parameter `index` for the interval starting at `step`: N(0, 1) / sqrt(k). */
export function randomProjection(shape: [number, number], k: number, index: number, step: number): Float32Array {
  const normal = normalFrom(mulberry32((Math.imul(index + 1, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca77)) >>> 0));
  return Float32Array.from({ length: shape[0] * shape[1] }, () => normal() / Math.sqrt(k));
}

export class Apollo implements Optimizer {
  step = 0;
  private readonly projected: Projected[] = [];
  private readonly plain: PlainState[] = [];
  private readonly clip: GradientClip;
  /** The parameters and gradients (arena.ts): cleared and measured at once; the updates stay per tensor. */
  private readonly arena: TrainableArena;
  private readonly scratch: Tensor;
  private readonly normSq: Tensor;
  private readonly one: Tensor;
  private readonly normal: () => number;

  constructor(readonly gpu: Gpu, readonly params: TrainableTensor[], readonly settings: OptimizerSettings, readonly apollo: ApolloSettings, seed: number) {
    this.arena = TrainableArena.pack(gpu, params);
    this.clip = new GradientClip(gpu, settings.maxGradNorm);
    this.normal = normalFrom(mulberry32((seed ^ 0x3c6ef372) >>> 0));
    const zeroed = (shape: readonly number[], name: string) => {
      const t = gpu.tensor(shape, 'f32', name);
      gpu.zero(t);
      return t;
    };
    let largest = 1;
    params.forEach((p, index) => {
      largest = Math.max(largest, numel(p.value.shape));
      if (!isLowRankTarget(p, apollo.targets)) {
        this.plain.push(plainState(gpu, p));
        return;
      }
      const [R, C] = p.value.shape as [number, number];
      const side = projectionSide(R, C, apollo.projType);
      // the random projection keeps the full rank; GaLore's SVD has at most min(R, C) vectors
      const k = apollo.proj === 'svd' ? Math.min(apollo.rank, R, C) : apollo.rank;
      const low = projectedShape(side, R, C, k);
      const axis = apolloAxis(p.name, low, R, C, apollo.scaleType);
      this.projected.push({
        p, index, side, R, C, k, axis,
        Q: zeroed(projectionShape(side, R, C, k), `${p.name}.apollo_projection`),
        low: gpu.tensor(low, 'f32', `${p.name}.apollo_grad`),
        m: zeroed(low, `${p.name}.exp_avg`),
        v: zeroed(low, `${p.name}.exp_avg_sq`),
        u: gpu.tensor(low, 'f32', `${p.name}.apollo_direction`),
        factor: gpu.tensor([axis === 'row' ? R : axis === 'column' ? C : 1], 'f32', `${p.name}.apollo_factor`),
        prev: gpu.upload(new Float32Array([-1]), [1], 'f32', `${p.name}.apollo_scaled_grad_norm`),
        limiter: gpu.tensor([1], 'f32', `${p.name}.apollo_limiter`),
      });
    });
    this.scratch = gpu.tensor([largest], 'f32', 'apollo.scratch');
    this.normSq = gpu.tensor([1], 'f32', 'apollo.norm_sq');
    this.one = gpu.upload(new Float32Array([1]), [1]);
  }

  zeroGrad(): void {
    this.arena.clearGrads();
  }

  /** A new projection at steps 0, T, 2T, ... (a random draw, or the SVD of the gradient). */
  async prepare(): Promise<void> {
    if (this.step % this.apollo.updateInterval !== 0) return;
    for (const x of this.projected) {
      const shape = projectionShape(x.side, x.R, x.C, x.k);
      const q = this.apollo.proj === 'random' ? randomProjection(shape, x.k, x.index, this.step)
        : await topSingularProjection(await gradientOps(this.gpu, x.p.grad, x.R, x.C), x.k, x.side, this.normal);
      this.gpu.write(x.Q, q);
    }
  }

  update(lr: number): Tensor {
    const s = this.settings, a = this.apollo;
    this.step++;
    this.clip.apply(this.arena);
    const root = Math.sqrt(a.scale);
    for (const x of this.projected) {
      project(this.gpu, x.side, x.p.grad, x.Q, x.low, x.R, x.C, x.k);
      adamDirection(this.gpu, x.low, x.m, x.v, x.u, { beta1: s.beta1, beta2: s.beta2, eps: s.eps, gradScale: this.clip.scale });
      apolloFactor(this.gpu, x.low, x.u, x.factor, x.axis, this.clip.scale);
      const y = { ...this.scratch, shape: x.p.value.shape };
      // scale_front multiplies by sqrt(scale) before the limiter measures the norm, else after
      apolloScaleGrad(this.gpu, x.p.grad, x.factor, y, x.axis, this.clip.scale, a.scaleFront ? root : 1);
      gradNormSquared(this.gpu, [y], this.normSq);
      apolloLimit(this.gpu, this.normSq, x.prev, x.limiter);
      const rate = lr * x.p.lrScale;
      scaledStep(this.gpu, x.p.value, y, x.limiter, { stepSize: hfStepSize(rate, s, this.step) * (a.scaleFront ? 1 : root), decay: 1 - rate * s.weightDecay });
    }
    for (const p of this.plain) hfAdamWStep(this.gpu, p, s, lr, this.step, this.clip.scale, this.scratch, this.one);
    return this.clip.sumSq;
  }

  stateTensors(): { name: string; tensor: Tensor }[] {
    return [
      ...this.projected.flatMap((x) => [
        { name: `${x.p.name}.exp_avg`, tensor: x.m }, { name: `${x.p.name}.exp_avg_sq`, tensor: x.v },
        { name: `${x.p.name}.apollo_projection`, tensor: x.Q }, { name: `${x.p.name}.apollo_scaled_grad_norm`, tensor: x.prev },
      ]),
      ...this.plain.flatMap((p) => [{ name: `${p.p.name}.exp_avg`, tensor: p.m }, { name: `${p.p.name}.exp_avg_sq`, tensor: p.v }]),
    ];
  }

  release(): void {
    this.gpu.release(...this.projected.flatMap((x) => [x.Q, x.low, x.m, x.v, x.u, x.factor, x.prev, x.limiter]), ...this.plain.flatMap((p) => [p.m, p.v]),
      this.scratch, this.normSq, this.one);
    this.arena.release();
    this.clip.release();
  }
}
