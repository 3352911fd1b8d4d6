// BAdam (LLaMA-Factory's use_badam: the badam package's BlockOptimizer and BlockOptimizerRatio).
//
// Layer mode: block coordinate descent over the decoder layers. One layer trains at a time, with
// torch's AdamW, for badam_switch_interval steps; then the next layer in the switch order takes
// over and the optimizer state starts afresh (BAdam drops it at every switch). Parameters outside
// the layers (embeddings, final norm, output head) never train, gradients are clipped over the
// active layer only, and no weight decay applies: BlockOptimizer gives both of its groups the
// decay of LLaMA-Factory's first group, the no-decay one. As BAdam sets requires_grad on the active
// block only, the weights outside it have their gradients switched off (setGradEnabled): backward
// then does no weight-gradient work for them.
//
// Ratio mode: every weight but the embeddings and the output head trains a badam_update_ratio part
// of its entries (a run of adjacent entries from an offset, or entries of a fixed random order from
// an offset; weights of one shape share the mask), with a sparse Adam (no weight decay) whose state
// covers those entries only. Every 100 steps (BlockOptimizerRatio's switch_every, which LLaMA-Factory
// leaves at its default) the offsets move on by the part's size and the state starts afresh.
// torch's generator is not reproduced: the random orders (switch mode random, mask mode scatter)
// are the project's.

import type { Gpu } from '../../gpu/runtime';
import type { Tensor } from '../../gpu/tensor';
import { numel } from '../../gpu/tensor';
import { adamw, maskedAdam, maskedGather } from '../../kernels/optim';
import type { TrainableTensor } from '../../model/adapter';
import { permutation } from '../../data/random';
import { PackedTensors, TrainableArena, type GradientSet } from './arena';
import { GradientClip, type Optimizer, type OptimizerSettings } from './optimizer';

export interface BadamSettings {
  mode: 'layer' | 'ratio';
  startBlock: number | null;
  switchMode: 'ascending' | 'descending' | 'random' | 'fixed';
  /** Steps per block; -1 never switches. */
  switchInterval: number;
  updateRatio: number;
  maskMode: 'adjacent' | 'scatter';
  seed: number;
}

/** The decoder layer a parameter belongs to (BAdam's `layers.N.` prefix), or null. */
export const layerOf = (name: string): number | null => {
  const m = /(?:^|\.)layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : null;
};

/** The block (position in `blocks`) trained during the `period`-th interval. */
export function activeBlock(s: Pick<BadamSettings, 'startBlock' | 'switchMode' | 'seed'>, blocks: number, period: number): number {
  switch (s.switchMode) {
    case 'fixed':
      return s.startBlock ?? 0;
    case 'ascending':
      return ((s.startBlock ?? 0) + period) % blocks;
    case 'descending':
      return ((((s.startBlock ?? blocks - 1) - period) % blocks) + blocks) % blocks;
    case 'random': {
      // BAdam pops a fresh permutation of all blocks whenever the last one is used up
      if (s.startBlock !== null && period === 0) return s.startBlock;
      const i = s.startBlock !== null ? period - 1 : period;
      return permutation(blocks, s.seed + Math.floor(i / blocks))[i % blocks]!;
    }
  }
}

interface LayerParam {
  p: TrainableTensor;
  m: Tensor;
  v: Tensor;
}

export class BadamLayer implements Optimizer {
  private done = 0;
  /** The layer indices in order; a block is one layer's parameters. */
  private readonly layers: number[];
  private readonly blocks: TrainableTensor[][];
  /** The parameters and gradients (arena.ts): cleared at once, each block's gradients measured at once. */
  private readonly arena: TrainableArena;
  private readonly blockGrads: GradientSet[];
  private active: LayerParam[] = [];
  private activeIndex = -1;
  private readonly clip: GradientClip;

  constructor(readonly gpu: Gpu, readonly params: TrainableTensor[], readonly settings: OptimizerSettings, readonly badam: BadamSettings) {
    const byLayer = new Map<number, TrainableTensor[]>();
    for (const p of params) {
      const l = layerOf(p.name);
      if (l !== null) byLayer.set(l, [...(byLayer.get(l) ?? []), p]);
    }
    this.layers = [...byLayer.keys()].sort((a, b) => a - b);
    if (this.layers.length === 0) throw new Error('use_badam (layer): no trainable parameter lies in a decoder layer (model.layers.N.)');
    this.blocks = this.layers.map((l) => byLayer.get(l)!);
    if (badam.startBlock !== null && badam.startBlock >= this.blocks.length) {
      throw new Error(`badam_start_block ${badam.startBlock} is out of range: the model has ${this.blocks.length} trainable layers`);
    }
    this.arena = TrainableArena.pack(gpu, params);
    this.blockGrads = this.blocks.map((block) => this.arena.part((p) => block.includes(p)));
    this.clip = new GradientClip(gpu, settings.maxGradNorm);
    this.activate();
  }

  /** Optimizer steps taken; setting it (a resume) selects the block and fresh state of that point. */
  get step(): number {
    return this.done;
  }

  set step(n: number) {
    this.done = n;
    this.activate();
  }

  /** Steps between switches (never: the whole run is one period). */
  private get period(): number {
    return this.badam.switchInterval > 0 ? Math.floor(this.done / this.badam.switchInterval) : 0;
  }

  /** The layer being trained (its index in the model). */
  get activeLayer(): number {
    return this.layers[activeBlock(this.badam, this.blocks.length, this.period)]!;
  }

  private activate(): void {
    const index = activeBlock(this.badam, this.blocks.length, this.period);
    if (index === this.activeIndex) return;
    const block = new Set(this.blocks[index]);
    for (const p of this.params) p.setGradEnabled?.(block.has(p));
    this.gpu.release(...this.active.flatMap((a) => [a.m, a.v]));
    this.active = this.blocks[index]!.map((p) => {
      const m = this.gpu.tensor(p.value.shape, 'f32', `${p.name}.exp_avg`);
      const v = this.gpu.tensor(p.value.shape, 'f32', `${p.name}.exp_avg_sq`);
      this.gpu.zero(m);
      this.gpu.zero(v);
      return { p, m, v };
    });
    this.activeIndex = index;
  }

  zeroGrad(): void {
    this.arena.clearGrads();
  }

  update(lr: number): Tensor {
    const s = this.settings;
    const local = (this.badam.switchInterval > 0 ? this.done % this.badam.switchInterval : this.done) + 1;
    this.clip.apply(this.blockGrads[this.activeIndex]!);
    for (const a of this.active) {
      adamw(this.gpu, a.p.value, a.p.grad, a.m, a.v, {
        lr: lr * a.p.lrScale, beta1: s.beta1, beta2: s.beta2, eps: s.eps, weightDecay: 0, step: local, gradScale: this.clip.scale,
      });
    }
    this.step = this.done + 1;
    return this.clip.sumSq;
  }

  stateTensors(): { name: string; tensor: Tensor }[] {
    return this.active.flatMap((a) => [{ name: `${a.p.name}.exp_avg`, tensor: a.m }, { name: `${a.p.name}.exp_avg_sq`, tensor: a.v }]);
  }

  release(): void {
    for (const p of this.params) p.setGradEnabled?.(true);
    this.gpu.release(...this.active.flatMap((a) => [a.m, a.v]));
    this.arena.release();
    this.clip.release();
  }
}

/** BlockOptimizerRatio's switch_every (LLaMA-Factory does not set it). */
export const RATIO_SWITCH_EVERY = 100;

/**
 * The entries ratio mode updates in a tensor of n entries during `period`: k = floor(n ratio)
 * entries from offset (period k) mod n, wrapping, of 0..n-1 (adjacent) or of a fixed random
 * order (scatter); sorted, as torch's coalesced sparse gradient orders its values.
 */
export function ratioMask(n: number, ratio: number, mode: 'adjacent' | 'scatter', period: number, seed: number): Uint32Array {
  const k = Math.floor(n * ratio);
  const offset = n === 0 ? 0 : (period * k) % n;
  const order = mode === 'scatter' ? permutation(n, seed) : null;
  const out = new Uint32Array(k);
  for (let t = 0; t < k; t++) {
    const j = (offset + t) % n;
    out[t] = order ? order[j]! : j;
  }
  return out.sort();
}

interface MaskedParam {
  p: TrainableTensor;
  k: number;
  /** The mask's seed (scatter): one per shape, as BAdam shares masks between same-shaped weights. */
  seed: number;
  idx: Tensor;
  /** The masked gradient entries, a view of `gathered`. */
  gm: Tensor;
  m: Tensor;
  v: Tensor;
}

export class BadamRatio implements Optimizer {
  private done = 0;
  private period = -1;
  private readonly masked: MaskedParam[] = [];
  /** The parameters and gradients (arena.ts): cleared at once. */
  private readonly arena: TrainableArena;
  /** Every weight's masked gradient entries in one buffer: measured at once. */
  private readonly gathered: PackedTensors;
  private readonly clip: GradientClip;

  constructor(readonly gpu: Gpu, readonly params: TrainableTensor[], readonly settings: OptimizerSettings, readonly badam: BadamSettings) {
    // include_embedding / include_lm_head are off: the first embedding and output-head weights stay frozen
    const embed = params.find((p) => p.name.includes('embed'));
    const head = params.find((p) => p.name.includes('lm_head'));
    this.arena = TrainableArena.pack(gpu, params);
    const seeds = new Map<string, number>();
    const chosen: { p: TrainableTensor; k: number; seed: number }[] = [];
    for (const p of params) {
      if (p === embed || p === head) continue;
      const shape = p.value.shape.join('x');
      if (!seeds.has(shape)) seeds.set(shape, badam.seed + seeds.size);
      const k = Math.floor(numel(p.value.shape) * badam.updateRatio);
      if (k === 0) continue; // too small for one entry at this ratio: BAdam's mask is empty too
      chosen.push({ p, k, seed: seeds.get(shape)! });
    }
    this.gathered = new PackedTensors(gpu, chosen.map((c) => c.k), 'badam_grad');
    chosen.forEach(({ p, k, seed }, i) => {
      const zeroed = (name: string) => {
        const t = gpu.tensor([k], 'f32', `${p.name}.${name}`);
        gpu.zero(t);
        return t;
      };
      this.masked.push({ p, k, seed, idx: gpu.tensor([k], 'u32', `${p.name}.badam_mask`), gm: this.gathered.views[i]!, m: zeroed('exp_avg'), v: zeroed('exp_avg_sq') });
    });
    this.clip = new GradientClip(gpu, settings.maxGradNorm);
    this.remask();
  }

  get step(): number {
    return this.done;
  }

  set step(n: number) {
    this.done = n;
    this.remask();
  }

  /** The mask of the current period; a new period also starts the state afresh. */
  private remask(): void {
    const period = Math.floor(this.done / RATIO_SWITCH_EVERY);
    if (period === this.period) return;
    for (const x of this.masked) {
      this.gpu.write(x.idx, ratioMask(numel(x.p.value.shape), this.badam.updateRatio, this.badam.maskMode, period, x.seed));
      this.gpu.zero(x.m);
      this.gpu.zero(x.v);
    }
    this.period = period;
  }

  zeroGrad(): void {
    this.arena.clearGrads();
  }

  update(lr: number): Tensor {
    const s = this.settings;
    const t = (this.done % RATIO_SWITCH_EVERY) + 1;
    for (const x of this.masked) maskedGather(this.gpu, x.p.grad, x.idx, x.gm);
    // clip_grad_norm_ sees the masked (sparse) gradients only
    this.clip.apply(this.gathered);
    for (const x of this.masked) {
      const rate = lr * x.p.lrScale;
      maskedAdam(this.gpu, x.p.value, x.gm, x.idx, x.m, x.v, {
        beta1: s.beta1, beta2: s.beta2, eps: s.eps, stepSize: (rate * Math.sqrt(1 - s.beta2 ** t)) / (1 - s.beta1 ** t), gradScale: this.clip.scale,
      });
    }
    this.step = this.done + 1;
    return this.clip.sumSq;
  }

  stateTensors(): { name: string; tensor: Tensor }[] {
    return this.masked.flatMap((x) => [{ name: `${x.p.name}.exp_avg`, tensor: x.m }, { name: `${x.p.name}.exp_avg_sq`, tensor: x.v }]);
  }

  release(): void {
    this.gpu.release(...this.masked.flatMap((x) => [x.idx, x.m, x.v]));
    this.gathered.release();
    this.arena.release();
    this.clip.release();
  }
}
