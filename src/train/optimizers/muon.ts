// Muon (LLaMA-Factory's use_muon: its third_party/muon, Keller Jordan's MomentUm Orthogonalized by
// Newton-Schulz): 2-D parameters other than embeddings and the output head take SGD momentum
// (Nesterov), orthogonalised by five quintic Newton-Schulz iterations, at the learning rate scaled
// by 0.2 sqrt(max(rows, cols)); every other parameter takes the AdamW-like rule of the same file.
// Weight decay applies to every parameter (the reference has one group). The reference runs the
// iteration in bfloat16; here it runs in f32.

import type { Gpu } from '../../gpu/runtime';
import type { Tensor } from '../../gpu/tensor';
import { adamw, muonApply, muonMomentum, newtonSchulz, type NewtonSchulzScratch } from '../../kernels/optim';
import type { TrainableTensor } from '../../model/adapter';
import { TrainableArena } from './arena';
import { GradientClip, type Optimizer, type OptimizerSettings } from './optimizer';

const MOMENTUM = 0.95;
const NS_STEPS = 5;

/** Whether Muon (rather than its AdamW rule) updates this parameter: LLaMA-Factory's selection. */
export const usesMuon = (p: TrainableTensor): boolean => p.value.shape.length === 2 && !/embed|lm_head/.test(p.name);

interface MuonParam {
  p: TrainableTensor;
  buf: Tensor;
  /** The momentum direction, orthogonalised in place by the iteration. */
  u: Tensor;
  work: NewtonSchulzScratch;
  /** 0.2 sqrt(max(rows, cols)): the reference's adjust_lr_for_muon. */
  lrRatio: number;
}

interface AdamParam {
  p: TrainableTensor;
  m: Tensor;
  v: Tensor;
}

export class Muon implements Optimizer {
  step = 0;
  private readonly muon: MuonParam[] = [];
  private readonly adam: AdamParam[] = [];
  private readonly clip: GradientClip;
  /** The parameters and gradients (arena.ts): cleared and measured at once; the updates stay per tensor. */
  private readonly arena: TrainableArena;
  /** The shared Newton-Schulz buffers (released with the optimizer). */
  private readonly scratch: Tensor[];

  constructor(readonly gpu: Gpu, readonly params: TrainableTensor[], readonly settings: OptimizerSettings) {
    this.arena = TrainableArena.pack(gpu, params);
    this.clip = new GradientClip(gpu, settings.maxGradNorm);
    // one Newton-Schulz scratch per distinct shape: LoRA's many A and B share a few
    const scratch = new Map<string, { u: Tensor; work: NewtonSchulzScratch }>();
    for (const p of params) {
      const zeroed = (name: string) => {
        const t = gpu.tensor(p.value.shape, 'f32', `${p.name}.${name}`);
        gpu.zero(t);
        return t;
      };
      if (!usesMuon(p)) {
        this.adam.push({ p, m: zeroed('exp_avg'), v: zeroed('exp_avg_sq') });
        continue;
      }
      const [R, C] = p.value.shape as [number, number];
      const key = `${R}x${C}`;
      let s = scratch.get(key);
      if (!s) {
        const n = Math.min(R, C);
        s = { u: gpu.tensor([R, C], 'f32', `muon.u.${key}`), work: { A: gpu.tensor([n, n]), B: gpu.tensor([n, n]), Y: gpu.tensor([R, C]), sumSq: gpu.tensor([1]) } };
        scratch.set(key, s);
      }
      this.muon.push({ p, buf: zeroed('momentum_buffer'), u: s.u, work: s.work, lrRatio: 0.2 * Math.sqrt(Math.max(R, C)) });
    }
    this.scratch = [...scratch.values()].flatMap((s) => [s.u, s.work.A, s.work.B, s.work.Y, s.work.sumSq]);
  }

  zeroGrad(): void {
    this.arena.clearGrads();
  }

  update(lr: number): Tensor {
    const s = this.settings;
    this.step++;
    this.clip.apply(this.arena);
    for (const m of this.muon) {
      const rate = lr * m.p.lrScale;
      muonMomentum(this.gpu, m.p.grad, m.buf, m.u, { momentum: MOMENTUM, nesterov: true, gradScale: this.clip.scale });
      const u = newtonSchulz(this.gpu, m.u, NS_STEPS, m.work);
      muonApply(this.gpu, m.p.value, u, { decay: 1 - rate * s.weightDecay, stepSize: rate * m.lrRatio });
    }
    // The reference's rule p -= lr sqrt(bc2)/bc1 · m / (sqrt(v) + eps) is AdamW's with eps / sqrt(bc2).
    const eps = s.eps / Math.sqrt(1 - s.beta2 ** this.step);
    for (const a of this.adam) {
      adamw(this.gpu, a.p.value, a.p.grad, a.m, a.v, {
        lr: lr * a.p.lrScale, beta1: s.beta1, beta2: s.beta2, eps, weightDecay: s.weightDecay, step: this.step, gradScale: this.clip.scale,
      });
    }
    return this.clip.sumSq;
  }

  stateTensors(): { name: string; tensor: Tensor }[] {
    return [
      ...this.muon.map((m) => ({ name: `${m.p.name}.momentum_buffer`, tensor: m.buf })),
      ...this.adam.flatMap((a) => [{ name: `${a.p.name}.exp_avg`, tensor: a.m }, { name: `${a.p.name}.exp_avg_sq`, tensor: a.v }]),
    ];
  }

  release(): void {
    this.gpu.release(...this.muon.map((m) => m.buf), ...this.adam.flatMap((a) => [a.m, a.v]), ...this.scratch);
    this.arena.release();
    this.clip.release();
  }
}
