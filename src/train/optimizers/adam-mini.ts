// Adam-mini (LLaMA-Factory's use_adam_mini: the adam-mini package, 1.1.1): Adam with one second
// moment per block of parameters instead of per element, blocks chosen from the parameter's name:
// biases per element; queries and keys per attention head (dim²/n_heads elements); embeddings,
// the output head, values, the attention output and MLPs per output neuron (row); everything else
// (norms) one per tensor. Weight decay is off for names with "norm", "ln" or "bias".

import type { Gpu } from '../../gpu/runtime';
import type { Tensor } from '../../gpu/tensor';
import { numel } from '../../gpu/tensor';
import { adamMini } from '../../kernels/optim';
import type { TrainableTensor } from '../../model/adapter';
import { TrainableArena } from './arena';
import { GradientClip, type Optimizer, type OptimizerSettings } from './optimizer';

const QUERY_KEY = ['k_proj', 'q_proj', 'wq', 'wk', 'query', 'key'];
const PER_NEURON = ['embed', 'embd', 'wte', 'lm_head', 'output', 'final_layer', 'v_proj', 'wv', 'value', 'o_proj', 'wo', 'attn.proj', 'feed_forward', 'linear', 'mlp'];

/** The model dimensions that size Adam-mini's per-head blocks. */
export interface AdamMiniDims {
  hidden: number;
  heads: number;
}

/** Elements per second-moment block of a parameter, as adam-mini 1.1.1 partitions it. */
export function adamMiniBlock(p: Pick<TrainableTensor, 'name' | 'value'>, dims: AdamMiniDims): number {
  const name = p.name.toLowerCase();
  const n = numel(p.value.shape);
  if (name.includes('bias')) return 1;
  if (QUERY_KEY.some((k) => name.includes(k))) {
    const head = (dims.hidden * dims.hidden) / dims.heads;
    if (!Number.isInteger(head) || n % head !== 0) {
      throw new Error(`use_adam_mini: ${p.name} has ${n} values, not a whole number of attention heads of ${head} (hidden² / heads); `
        + 'adam-mini gives queries and keys one second moment per head and cannot split this tensor (LoRA on q_proj/k_proj, for one); '
        + 'train with full fine-tuning, or leave q_proj and k_proj out of lora_target');
    }
    return head;
  }
  // a row of a matrix; a 1-D tensor here (the reference would fail on it) gets one per element
  if (PER_NEURON.some((k) => name.includes(k))) return p.value.shape.length >= 2 ? n / p.value.shape[0]! : 1;
  return n;
}

const noDecay = (name: string): boolean => /norm|ln|bias/.test(name.toLowerCase());

interface Block {
  p: TrainableTensor;
  m: Tensor;
  vmean: Tensor;
  size: number;
}

export class AdamMini implements Optimizer {
  step = 0;
  private readonly blocks: Block[];
  private readonly clip: GradientClip;
  /** The parameters and gradients (arena.ts): cleared and measured at once; the updates stay per tensor. */
  private readonly arena: TrainableArena;

  constructor(readonly gpu: Gpu, readonly params: TrainableTensor[], readonly settings: OptimizerSettings, dims: AdamMiniDims) {
    this.arena = TrainableArena.pack(gpu, params);
    this.blocks = params.map((p) => {
      const size = adamMiniBlock(p, dims);
      const m = gpu.tensor(p.value.shape, 'f32', `${p.name}.exp_avg`);
      const vmean = gpu.tensor([Math.ceil(numel(p.value.shape) / size)], 'f32', `${p.name}.vmean`);
      gpu.zero(m);
      gpu.zero(vmean);
      return { p, m, vmean, size };
    });
    this.clip = new GradientClip(gpu, settings.maxGradNorm);
  }

  zeroGrad(): void {
    this.arena.clearGrads();
  }

  update(lr: number): Tensor {
    const s = this.settings;
    this.step++;
    this.clip.apply(this.arena);
    for (const b of this.blocks) {
      adamMini(this.gpu, b.p.value, b.p.grad, b.m, b.vmean, {
        lr: lr * b.p.lrScale, beta1: s.beta1, beta2: s.beta2, eps: s.eps, weightDecay: noDecay(b.p.name) ? 0 : s.weightDecay,
        step: this.step, blockSize: b.size, gradScale: this.clip.scale,
      });
    }
    return this.clip.sumSq;
  }

  stateTensors(): { name: string; tensor: Tensor }[] {
    return this.blocks.flatMap((b) => [{ name: `${b.p.name}.exp_avg`, tensor: b.m }, { name: `${b.p.name}.vmean`, tensor: b.vmean }]);
  }

  release(): void {
    this.gpu.release(...this.blocks.flatMap((b) => [b.m, b.vmean]));
    this.arena.release();
    this.clip.release();
  }
}
