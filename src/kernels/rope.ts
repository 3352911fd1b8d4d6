// Rotary position embedding in HF's rotate_half layout (pairs (i, i + rotaryDim/2) in each head),
// with partial rotary (dims >= rotaryDim pass through). cos/sin are computed on the GPU from the
// f32 angle position * invFreq[i] (HF's order), see shaders/rope.wgsl. The backward is the
// rotation by the negated angle (dx = R^T dy). ropeInvFreq() reproduces transformers' inverse
// frequencies (default, linear, llama3) bit for bit in f32. An empty invFreq (rotary dim 0:
// SmolLM3's NoPE layers) rotates nothing: y = x. The forward can add the q/k projection's bias
// first (out of place), which saves the projection its bias dispatch. With `sections` (Qwen2-VL's
// M-RoPE, its vision tower's 2-D rope) each token has several positions and consecutive runs of
// pairs use one each; the bias composes with them.

import source from '../../shaders/rope.wgsl';
import { f32, type Gpu } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';

export interface RopeOptions {
  /** Multiplies cos and sin (transformers' attention_scaling; 1 for default/linear/llama3). */
  attentionScaling?: number;
  /**
   * Pairs per position component, summing to rotaryDim / 2 (at most 3 components): positions are
   * then i32 [C, T], component c rotating the c-th run of pairs (Qwen2-VL's mrope_section).
   */
  sections?: readonly number[];
}

export interface RopeForwardOptions extends RopeOptions {
  /** [H * Dh] added to x before the rotation (a projection's bias); y must not be x. */
  bias?: Tensor;
}

const WG = 256;

type Direction = 'forward' | 'backward';

/**
 * y = rope(x) for x [T, H, Dh] (or [B, S, H, Dh]); y may be x itself (in place). positions: i32
 * [T]; invFreq: f32 [rotaryDim / 2] with rotaryDim <= Dh.
 */
export function ropeForward(gpu: Gpu, x: Tensor, y: Tensor, positions: Tensor, invFreq: Tensor, opts: RopeForwardOptions = {}): void {
  rotate(gpu, 'forward', x, y, positions, invFreq, opts);
}

/** dx = R^T dy: the rotation by the negated angle (dx may be dy itself). */
export function ropeBackward(gpu: Gpu, dy: Tensor, dx: Tensor, positions: Tensor, invFreq: Tensor, opts: RopeOptions = {}): void {
  rotate(gpu, 'backward', dy, dx, positions, invFreq, opts);
}

function rotate(gpu: Gpu, direction: Direction, x: Tensor, y: Tensor, positions: Tensor, invFreq: Tensor, opts: RopeForwardOptions): void {
  const fn = direction === 'forward' ? 'ropeForward' : 'ropeBackward';
  if (x.dtype !== 'f32' || y.dtype !== 'f32') throw new Error(`${fn}: x and y must be f32 (got ${x.dtype}, ${y.dtype})`);
  if (positions.dtype !== 'i32') throw new Error(`${fn}: positions must be i32, not ${positions.dtype}`);
  if (invFreq.dtype !== 'f32') throw new Error(`${fn}: invFreq must be f32, not ${invFreq.dtype}`);
  if (x.shape.length < 3) throw new Error(`${fn}: x ${shapeStr(x.shape)} must be [T, H, Dh]`);
  const Dh = x.shape[x.shape.length - 1]!, H = x.shape[x.shape.length - 2]!;
  const T = numel(x.shape) / Math.max(1, H * Dh);
  if (numel(y.shape) !== numel(x.shape)) throw new Error(`${fn}: y ${shapeStr(y.shape)} and x ${shapeStr(x.shape)} differ in size`);
  const half = numel(invFreq.shape);
  if (2 * half > Dh) throw new Error(`${fn}: invFreq ${shapeStr(invFreq.shape)} gives rotary dim ${2 * half} > head dim ${Dh}`);
  const sections = opts.sections ?? [half];
  if (sections.length > 3 || sections.some((n) => !Number.isInteger(n) || n < 0) || sections.reduce((a, b) => a + b, 0) !== half) {
    throw new Error(`${fn}: sections [${sections.join(', ')}] must be at most 3 counts of pairs summing to rotaryDim / 2 = ${half}`);
  }
  const C = sections.length;
  if (numel(positions.shape) !== C * T) {
    throw new Error(`${fn}: positions ${shapeStr(positions.shape)} must have ${C === 1 ? 'one entry' : `${C} entries ([${C}, T])`} per token (${T}) of x ${shapeStr(x.shape)}`);
  }
  const inPlace = x.buffer === y.buffer && x.offset === y.offset;
  const bias = opts.bias;
  if (bias) {
    if (bias.dtype !== 'f32' || numel(bias.shape) !== H * Dh) throw new Error(`${fn}: bias ${bias.dtype} ${shapeStr(bias.shape)} must be f32 with ${H} x ${Dh} elements`);
    if (inPlace) throw new Error(`${fn}: with a bias, y must not be x`);
  }
  for (const [name, t] of [['positions', positions], ['invFreq', invFreq], ...(bias ? [['bias', bias]] : []), ...(inPlace ? [] : [['x', x]])] as [string, Tensor][]) {
    if (t.buffer === y.buffer) throw new Error(`${fn}: y must not share a buffer with ${name}${name === 'x' ? ' unless it is x itself' : ''}`);
  }
  const scaling = opts.attentionScaling ?? 1;
  const sectioned = C > 1;
  // first pair of the second and third components (past the end where there is none)
  const s1 = sectioned ? sections[0]! : half, s2 = C > 2 ? sections[0]! + sections[1]! : half;
  const launch = (entry: string, bindings: Tensor[], n: number, P: number): void => {
    const pipeline = gpu.pipeline(`${entry}${sectioned ? ':sections' : ''}`, () => shaderVariant(source, entry, { SECTIONS: sectioned }));
    gpu.dispatch(pipeline, bindings, gpu.grid(Math.ceil(n / WG)), [n, H, Dh, half, P, f32(scaling), T, s1, s2]);
  };
  if (bias) {
    // every dim is written: pairs below half, the rest (pass-through and, without rope, all) added
    const P = Dh - half;
    const n = T * H * P;
    if (n === 0) return;
    // without rotary dims invFreq is empty and unread, but WebGPU refuses an empty binding
    const inv = half === 0 ? bias : invFreq;
    launch('rope_forward_bias', [x, positions, inv, bias, y], n, P);
    return;
  }
  if (half === 0) {
    if (!inPlace) gpu.copy(x, y);
    return;
  }
  // pass-through dims are untouched in place, copied otherwise
  const P = inPlace ? half : half + (Dh - 2 * half);
  const n = T * H * P;
  if (n === 0) return;
  launch(`rope_${direction}${inPlace ? '_in_place' : ''}`, inPlace ? [y, positions, invFreq] : [x, positions, invFreq, y], n, P);
}

export interface RopeScaling {
  rope_type: 'default' | 'linear' | 'llama3' | 'longrope';
  /** longrope's frequency divisors of its short range (cos/sin scaling is RopeOptions.attentionScaling). */
  short_factor?: readonly number[];
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}

export interface RopeInvFreqOptions {
  headDim: number;
  theta: number;
  partialRotaryFactor?: number;
  scaling?: RopeScaling;
}

const fr = Math.fround;

/**
 * transformers' inverse frequencies, [rotaryDim / 2] with rotaryDim = int(headDim * partial):
 * `_compute_default_rope_parameters` (1 / base ** (arange(0, dim, 2).float() / dim)), linear
 * scaling (inv_freq / factor) and `_compute_llama3_parameters`, each torch f32 operation emulated
 * by an f64 operation rounded to f32 (python scalars are cast to f32; `scalar / tensor` is torch's
 * `tensor.reciprocal() * scalar`).
 */
export function ropeInvFreq(opts: RopeInvFreqOptions): Float32Array {
  const fn = 'ropeInvFreq';
  const partial = opts.partialRotaryFactor ?? 1;
  const dim = Math.trunc(opts.headDim * partial);
  // 0 only on purpose: a layer without rope (SmolLM3's NoPE layers)
  if (!(dim > 0 || partial === 0) || dim % 2 !== 0 || dim > opts.headDim) {
    throw new Error(`${fn}: rotary dim int(${opts.headDim} * ${partial}) = ${dim} must be even, positive (unless the factor is 0) and at most the head dim`);
  }
  if (!(opts.theta > 0)) throw new Error(`${fn}: theta = ${opts.theta} must be positive`);
  const base = fr(opts.theta);
  const inv = new Float32Array(dim / 2);
  for (let k = 0; k < dim / 2; k++) inv[k] = fr(1 / fr(base ** fr((2 * k) / dim)));

  const s = opts.scaling ?? { rope_type: 'default' };
  switch (s.rope_type) {
    case 'default':
      return inv;
    case 'linear': {
      const factor = need(s.factor, 'factor');
      for (let k = 0; k < inv.length; k++) inv[k] = fr(inv[k]! / fr(factor));
      return inv;
    }
    case 'llama3': {
      const factor = fr(need(s.factor, 'factor'));
      const lowF = need(s.low_freq_factor, 'low_freq_factor');
      const highF = need(s.high_freq_factor, 'high_freq_factor');
      const oldCtx = need(s.original_max_position_embeddings, 'original_max_position_embeddings');
      const lowWavelen = fr(oldCtx / lowF), highWavelen = fr(oldCtx / highF); // python floats, compared as f32
      const twoPi = fr(2 * Math.PI);
      const out = new Float32Array(inv.length);
      for (let k = 0; k < inv.length; k++) {
        const f = inv[k]!;
        const wavelen = fr(fr(1 / f) * twoPi);
        let llama = wavelen > lowWavelen ? fr(f / factor) : f;
        const smooth = fr(fr(fr(fr(1 / wavelen) * fr(oldCtx)) - fr(lowF)) / fr(highF - lowF));
        const smoothed = fr(fr(fr(fr(1 - smooth) * llama) / factor) + fr(smooth * llama));
        if (!(wavelen < highWavelen) && !(wavelen > lowWavelen)) llama = smoothed;
        out[k] = llama;
      }
      return out;
    }
    case 'longrope': {
      // 1.0 / (ext_factors * base ** inv_freq_shape), ext_factors = short_factor in f32
      const ext = s.short_factor;
      if (!ext || ext.length !== inv.length) throw new Error(`${fn}: longrope needs short_factor of ${inv.length} values`);
      for (let k = 0; k < inv.length; k++) inv[k] = fr(1 / fr(fr(ext[k]!) * fr(base ** fr((2 * k) / dim))));
      return inv;
    }
    default:
      throw new Error(`${fn}: rope scaling "${String((s as { rope_type: unknown }).rope_type)}" is not supported (default, linear, llama3)`);
  }

  function need(v: number | undefined, name: string): number {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${fn}: ${s.rope_type} scaling needs a numeric ${name}`);
    return v;
  }
}
