// The reward model's value head (stage: rm), as TRL's AutoModelForCausalLMWithValueHead and
// LLaMA-Factory use it: a Linear(hidden, 1) `v_head.summary` on the final (normed) hidden state,
// read at each sequence's last non-padding token. It is saved beside the adapter as
// value_head.safetensors with the keys v_head.summary.weight [1, hidden] and v_head.summary.bias [1]
// (LLaMA-Factory's fix_valuehead_checkpoint / load_valuehead_params).
//
// Differences from TRL: no summary dropout (TRL's ValueHead defaults to p = 0.1 in training).

import type { Gpu } from '../gpu/runtime';
import type { Tensor } from '../gpu/tensor';
import { add } from '../kernels/elementwise';
import { gemm } from '../kernels/matmul';
import type { TrainableTensor } from '../model/adapter';
import type { Workspace } from '../model/forward';
import { encodeSafetensors, openSafetensors, readF32, type ByteSource } from '../model/safetensors';

export const VALUE_HEAD_FILE = 'value_head.safetensors';
export const V_HEAD_WEIGHT = 'v_head.summary.weight';
export const V_HEAD_BIAS = 'v_head.summary.bias';

export class ValueHead {
  /** Moved into the optimizer's arena when trained (params()' relocate). */
  weight: Tensor;
  bias: Tensor;
  dWeight: Tensor;
  dBias: Tensor;
  /** Per row count R: gathered rows [R, D], scores / their gradients [R], d final rows [R, D]. */
  private readonly bufs = new Map<number, { sel: Tensor; r: Tensor; dSel: Tensor }>();
  /** Per token count T: d final [T, D] of the head alone, for addBackward. */
  private readonly dFinals = new Map<number, Tensor>();

  private constructor(readonly gpu: Gpu, readonly hidden: number, w: Float32Array, b: Float32Array) {
    this.weight = gpu.upload(w, [1, hidden], 'f32', V_HEAD_WEIGHT);
    this.bias = gpu.upload(b, [1], 'f32', V_HEAD_BIAS);
    this.dWeight = gpu.tensor([1, hidden], 'f32', `${V_HEAD_WEIGHT}.grad`);
    this.dBias = gpu.tensor([1], 'f32', `${V_HEAD_BIAS}.grad`);
    gpu.zero(this.dWeight);
    gpu.zero(this.dBias);
  }

  /** torch.nn.Linear's initialisation: weight and bias ~ U(-1/sqrt(hidden), 1/sqrt(hidden)). */
  static create(gpu: Gpu, hidden: number, random: () => number): ValueHead {
    const bound = 1 / Math.sqrt(hidden);
    const u = () => (2 * random() - 1) * bound;
    return new ValueHead(gpu, hidden, Float32Array.from({ length: hidden }, u), Float32Array.of(u()));
  }

  static fromValues(gpu: Gpu, weight: Float32Array, bias: number): ValueHead {
    return new ValueHead(gpu, weight.length, weight, Float32Array.of(bias));
  }

  /** HF Trainer's grouping: weight decay on the weight, not on the bias. */
  params(): TrainableTensor[] {
    return [
      {
        name: V_HEAD_WEIGHT, value: this.weight, grad: this.dWeight, decay: true, lrScale: 1,
        relocate: (v, g) => {
          this.gpu.release(this.weight, this.dWeight);
          [this.weight, this.dWeight] = [v, g];
        },
      },
      {
        name: V_HEAD_BIAS, value: this.bias, grad: this.dBias, decay: false, lrScale: 1,
        relocate: (v, g) => {
          this.gpu.release(this.bias, this.dBias);
          [this.bias, this.dBias] = [v, g];
        },
      },
    ];
  }

  private buffers(R: number): { sel: Tensor; r: Tensor; dSel: Tensor } {
    let b = this.bufs.get(R);
    if (!b) {
      const D = this.hidden;
      b = { sel: this.gpu.tensor([R, D], 'f32', 'value head rows'), r: this.gpu.tensor([R, 1], 'f32', 'value head scores'), dSel: this.gpu.tensor([R, D], 'f32', 'value head d rows') };
      this.bufs.set(R, b);
    }
    return b;
  }

  /** Rows of ws.final, one per token index, into sel [R, D]. */
  private gather(ws: Workspace, tokens: readonly number[], sel: Tensor): void {
    const D = this.hidden;
    tokens.forEach((t, i) => this.gpu.copy(ws.final, sel, D * 4, t * D * 4, i * D * 4));
  }

  /** r_i = v · final[tokens_i] + b for the forward already recorded in ws. */
  async scores(ws: Workspace, tokens: readonly number[]): Promise<Float32Array> {
    const gpu = this.gpu, R = tokens.length, D = this.hidden;
    this.check(ws, tokens);
    const { sel, r } = this.buffers(R);
    this.gather(ws, tokens, sel);
    for (let i = 0; i < R; i++) gpu.copy(this.bias, r, 4, 0, i * 4);
    gemm(gpu, { a: sel, b: this.weight, c: r, M: R, N: 1, K: D, transB: true, beta: 1 });
    return gpu.readF32(r);
  }

  /**
   * Given d loss / d r_i: accumulate the head's gradients and write d loss / d final into dFinal
   * (zero except at the scored tokens). For forwardBackward's `head` option.
   */
  backward(ws: Workspace, tokens: readonly number[], dScores: Float32Array, dFinal: Tensor): void {
    const gpu = this.gpu, R = tokens.length, D = this.hidden;
    this.check(ws, tokens);
    if (dScores.length !== R) throw new Error(`value head: ${dScores.length} score gradients for ${R} tokens`);
    const { sel, r: dS, dSel } = this.buffers(R);
    gpu.write(dS, dScores);
    this.gather(ws, tokens, sel);
    gemm(gpu, { a: dS, b: sel, c: this.dWeight, M: 1, N: D, K: R, transA: true, beta: 1 });
    gemm(gpu, { a: dS, b: ws.ones, c: this.dBias, M: 1, N: 1, K: R, transA: true, beta: 1 });
    gemm(gpu, { a: dS, b: this.weight, c: dSel, M: R, N: D, K: 1 });
    gpu.zero(dFinal);
    tokens.forEach((t, i) => gpu.copy(dSel, dFinal, D * 4, i * D * 4, t * D * 4));
  }

  /** As backward, but adds the head's d loss / d final into dFinal (PPO: beside the lm_head loss's). */
  addBackward(ws: Workspace, tokens: readonly number[], dScores: Float32Array, dFinal: Tensor): void {
    let own = this.dFinals.get(ws.T);
    if (!own) this.dFinals.set(ws.T, (own = this.gpu.tensor([ws.T, this.hidden], 'f32', 'value head d final')));
    this.backward(ws, tokens, dScores, own);
    add(this.gpu, dFinal, own, dFinal);
  }

  private check(ws: Workspace, tokens: readonly number[]): void {
    if (ws.model.spec.hidden !== this.hidden) throw new Error(`value head has ${this.hidden} inputs, the model's hidden size is ${ws.model.spec.hidden}`);
    if (new Set(tokens).size !== tokens.length) throw new Error('value head: a token is scored twice');
    for (const t of tokens) if (!(t >= 0 && t < ws.T)) throw new Error(`value head: token ${t} outside the batch's ${ws.T} tokens`);
  }

  async safetensors(): Promise<Uint8Array> {
    const gpu = this.gpu;
    return encodeSafetensors({
      [V_HEAD_WEIGHT]: { dtype: 'F32', shape: [1, this.hidden], data: await gpu.readF32(this.weight) },
      [V_HEAD_BIAS]: { dtype: 'F32', shape: [1], data: await gpu.readF32(this.bias) },
    }, { format: 'pt' });
  }

  /** Load value_head.safetensors (LLaMA-Factory's keys). */
  async load(source: ByteSource): Promise<void> {
    const file = await openSafetensors(source);
    for (const key of [V_HEAD_WEIGHT, V_HEAD_BIAS]) if (!file.tensors.has(key)) throw new Error(`${source.name}: no ${key}`);
    const w = await readF32(file, V_HEAD_WEIGHT), b = await readF32(file, V_HEAD_BIAS);
    if (w.length !== this.hidden || b.length !== 1) throw new Error(`${source.name}: value head [${w.length}] + [${b.length}] does not fit hidden size ${this.hidden}`);
    this.gpu.write(this.weight, w);
    this.gpu.write(this.bias, b);
  }

  release(): void {
    this.gpu.release(this.weight, this.bias, this.dWeight, this.dBias, ...[...this.bufs.values()].flatMap((b) => [b.sel, b.r, b.dSel]), ...this.dFinals.values());
    this.bufs.clear();
    this.dFinals.clear();
  }
}
