// Fused lm_head + cross-entropy that never materializes the [T, V] logits.
//
// The vocabulary is walked in chunks of C columns (C * T * 4 bytes of workspace, 64 MiB by
// default and never above the storage binding limit). Each chunk's logits h W_cᵀ are computed by
// gemm() into the workspace and folded into a per-row online logsumexp (shaders/loss.wgsl
// `cross_entropy_forward`); after the last chunk, loss_t = lse_t - logit_t[label_t]. Gradients need the final
// lse, so they take a second walk: recompute the chunk's logits (skipped when the whole
// vocabulary fits in one chunk), turn them in place into dlogits = gradScale (softmax - onehot)
// (times the soft-cap derivative, and an optional per-row weight), then dH += dlogits W_c and
// dW_c += dlogitsᵀ h.
//
// The token loss can be plain cross-entropy, DFT (each token's loss and gradient weighted by its
// own probability, held constant: LLaMA-Factory's use_dft_loss), EAFT (weighted by the entropy of
// the 20 largest logits: use_eaft_loss), ASFT (DFT plus alpha times the KL divergence from a
// reference model's softmax: use_asft_loss) or label smoothing (HF Trainer's label_smoothing_factor);
// see the variant table in shaders/loss.wgsl. ASFT's reference logits come from the reference's
// final hidden states times the same lm_head, walked chunk by chunk beside the policy's (a first
// walk for their logsumexp), in a second workspace.
//
// Generation does not go through here: the engine computes the logits of the rows it samples
// from with logitsForRows() below (gemm on the selected rows, optional soft-cap), then
// sampleToken() from src/kernels/sample.ts.

import source from '../../shaders/loss.wgsl';
import { f32, GpuError, type Gpu, type Param } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';
import { gemm, GEMV_MAX_T, linear, linearDecode, weightParts, type Weight } from './matmul';
import { scratch } from './scratch';

export const IGNORE_INDEX = -100;

/** The token loss: cross-entropy, DFT, EAFT or ASFT with its alpha, or cross-entropy with label smoothing epsilon. */
export type TokenLoss = { kind: 'ce' } | { kind: 'dft' } | { kind: 'eaft'; alpha: number } | { kind: 'asft'; alpha: number } | { kind: 'label_smoothing'; epsilon: number };

const VARIANT: Record<TokenLoss['kind'], number> = { ce: 0, dft: 1, label_smoothing: 2, eaft: 3, asft: 4 };

export interface LossOutputs {
  /** f32 [T]: the token loss, -log p(label_t) for cross-entropy (= -logprob, usable for DPO), 0 where ignored. */
  loss: Tensor;
  /** [T, D]: d(sum_t gradScale * loss_t)/dh; overwritten unless opts.accumulateDH. */
  dH?: Tensor;
  /** [V, D] f32, one part: the lm_head weight gradient, accumulated (+=). */
  dW?: Tensor;
}

export interface LossOptions {
  /** Multiplies every gradient, e.g. 1 / number of non-ignored tokens. */
  gradScale: number;
  /** Gemma-2 final_logit_softcapping c: logits = c * tanh(logits / c). 0 or absent = off. */
  softcap?: number;
  /** Vocabulary columns per chunk; default from lossChunk(). */
  chunk?: number;
  /** f32 with at least lossWorkspaceElements(T, chunk) elements; default: a cached per-Gpu buffer. */
  workspace?: Tensor;
  /** Add into dH instead of overwriting it. */
  accumulateDH?: boolean;
  /**
   * f32 [T]: multiplies row t's gradient (dlogits = gradScale * tokenWeights[t] * (softmax - onehot)).
   * Preference losses put d loss / d log p(sequence) on the sequence's labelled tokens. The loss
   * output is unaffected.
   */
  tokenWeights?: Tensor;
  /** Default cross-entropy. */
  tokenLoss?: TokenLoss;
  /** ASFT: f32 [T, D], the reference model's final hidden states. */
  referenceH?: Tensor;
  /** ASFT: the reference's lm_head, split as w is (default w: a head that does not train). */
  referenceW?: Weight;
}

/** Default workspace budget for one chunk of logits. */
export const LOSS_WORKSPACE_BYTES = 64 * 1024 * 1024;

/** Columns per chunk for T rows: T * C * 4 bytes <= min(64 MiB, binding limit), a multiple of 64. */
export function lossChunk(gpu: Gpu, T: number, V: number, budgetBytes = LOSS_WORKSPACE_BYTES): number {
  return lossChunkFor(T, V, Math.min(budgetBytes, gpu.caps.limits.maxStorageBufferBindingSize));
}

/** Columns per chunk for T rows within `bytes` of workspace. */
export function lossChunkFor(T: number, V: number, bytes: number): number {
  let c = Math.floor((bytes / 4 - ROW_STATE * T) / T);
  if (c >= 64) c -= c % 64;
  return Math.max(1, Math.min(c, V));
}

/** Floats of per-row state after the logits (shaders/loss.wgsl): 5, and 21 more for EAFT's top 20 and weight, or 1 for ASFT's KL sum. */
const rowState = (kind: TokenLoss['kind']): number => (kind === 'eaft' ? 26 : kind === 'asft' ? 6 : 5);
const ROW_STATE = rowState('eaft');

/** Elements of workspace the loss needs: T * chunk logits + the per-row state (room for every token loss). */
export const lossWorkspaceElements = (T: number, chunk: number): number => T * chunk + ROW_STATE * T;

interface Chunk {
  part: Tensor;
  /** first row inside the part */
  r0: number;
  /** first vocabulary index */
  v0: number;
  n: number;
}

function chunks(parts: readonly Tensor[], C: number): Chunk[] {
  const out: Chunk[] = [];
  let v0 = 0;
  for (const part of parts) {
    const rows = part.shape[0]!;
    for (let r0 = 0; r0 < rows; r0 += C) out.push({ part, r0, v0: v0 + r0, n: Math.min(C, rows - r0) });
    v0 += rows;
  }
  return out;
}

/** logits[:, chunk] = h · W[chunk]ᵀ into the workspace (leading dimension C). */
function chunkLogits(gpu: Gpu, h: Tensor, c: Chunk, T: number, D: number, ws: Tensor, C: number): void {
  // The single place that reads W: a quantized lm_head would plug in its own product here.
  gemm(gpu, { a: h, b: c.part, c: ws, M: T, N: c.n, K: D, transB: true, offB: c.r0 * D, ldc: C });
}

type Entry = 'cross_entropy_forward' | 'cross_entropy_topk' | 'cross_entropy_backward' | 'cross_entropy_backward_weighted' | 'logit_softcap'
  | 'cross_entropy_asft_kl' | 'cross_entropy_backward_asft';

const pipeline = (gpu: Gpu, entry: Entry): GPUComputePipeline => gpu.pipeline(entry, () => shaderVariant(source, entry));

/** A view of `count` f32 elements of t starting at element `start`, bound from a 256-byte aligned offset. */
function window(t: Tensor, start: number, count: number): { view: Tensor; off: number } {
  const byte = t.offset + start * 4;
  const aligned = byte - (byte % 256);
  const off = (byte - aligned) / 4;
  return { view: { buffer: t.buffer, shape: [off + count], dtype: t.dtype, offset: aligned }, off };
}

const isQuantized = (t: Tensor): boolean => t.dtype === 'q4' || t.dtype === 'q8';
const rowsOf = (x: Tensor): number => numel(x.shape.slice(0, -1));
const colsOf = (x: Tensor): number => x.shape[x.shape.length - 1]!;

export function lmHeadCrossEntropy(gpu: Gpu, h: Tensor, w: Weight, labels: Tensor, out: LossOutputs, opts: LossOptions): void {
  const T = rowsOf(h), D = colsOf(h);
  const parts = weightParts(w);
  if (h.dtype !== 'f32') throw new GpuError(`lmHeadCrossEntropy: h must be f32, not ${h.dtype}`);
  let V = 0;
  for (const part of parts) {
    if (part.shape.length !== 2 || part.shape[1] !== D)
      throw new GpuError(`lmHeadCrossEntropy: weight part ${shapeStr(part.shape)} does not have ${D} columns like h ${shapeStr(h.shape)}`);
    if (isQuantized(part))
      throw new GpuError(`lmHeadCrossEntropy: a ${part.dtype} lm_head is not supported (no row-range quantized product yet); keep it f32/f16`);
    V += part.shape[0]!;
  }
  if (labels.dtype !== 'i32' || numel(labels.shape) !== T)
    throw new GpuError(`lmHeadCrossEntropy: labels must be i32 with ${T} elements, got ${labels.dtype} ${shapeStr(labels.shape)}`);
  if (out.loss.dtype !== 'f32' || numel(out.loss.shape) !== T)
    throw new GpuError(`lmHeadCrossEntropy: loss must be f32 [${T}], got ${out.loss.dtype} ${shapeStr(out.loss.shape)}`);
  if (out.dH && (out.dH.dtype !== 'f32' || numel(out.dH.shape) !== T * D))
    throw new GpuError(`lmHeadCrossEntropy: dH must be f32 [${T}, ${D}], got ${out.dH.dtype} ${shapeStr(out.dH.shape)}`);
  if (out.dW && (out.dW.dtype !== 'f32' || numel(out.dW.shape) !== V * D))
    throw new GpuError(`lmHeadCrossEntropy: dW must be one f32 [${V}, ${D}] tensor, got ${out.dW.dtype} ${shapeStr(out.dW.shape)}`);
  const tw = opts.tokenWeights;
  if (tw && (tw.dtype !== 'f32' || numel(tw.shape) !== T))
    throw new GpuError(`lmHeadCrossEntropy: tokenWeights must be f32 [${T}], got ${tw.dtype} ${shapeStr(tw.shape)}`);
  if (T === 0) return;

  const maxRows = Math.max(...parts.map((p) => p.shape[0]!));
  let C: number;
  let ws: Tensor;
  if (opts.workspace) {
    ws = opts.workspace;
    const have = numel(ws.shape);
    C = opts.chunk ?? Math.min(maxRows, Math.floor((have - ROW_STATE * T) / T));
    if (ws.dtype !== 'f32' || C < 1 || have < lossWorkspaceElements(T, C))
      throw new GpuError(`lmHeadCrossEntropy: workspace ${ws.dtype} ${shapeStr(ws.shape)} is too small for ${T} rows x ${Math.max(C, 1)} columns (+${ROW_STATE * T} state)`);
  } else {
    C = Math.min(opts.chunk ?? lossChunk(gpu, T, maxRows), maxRows);
    ws = scratch(gpu, 'loss', lossWorkspaceElements(T, C));
  }
  if (!Number.isInteger(C) || C < 1) throw new GpuError(`lmHeadCrossEntropy: bad chunk ${C}`);

  const tokenLoss = opts.tokenLoss ?? { kind: 'ce' };
  const epsilon = tokenLoss.kind === 'label_smoothing' ? tokenLoss.epsilon : tokenLoss.kind === 'eaft' || tokenLoss.kind === 'asft' ? tokenLoss.alpha : 0;
  if (tokenLoss.kind === 'label_smoothing' && !(epsilon >= 0 && epsilon < 1)) throw new GpuError(`lmHeadCrossEntropy: label smoothing epsilon must be in [0, 1), got ${epsilon}`);
  if ((tokenLoss.kind === 'eaft' || tokenLoss.kind === 'asft') && !(epsilon >= 0 && Number.isFinite(epsilon)))
    throw new GpuError(`lmHeadCrossEntropy: ${tokenLoss.kind.toUpperCase()} alpha must be a finite number >= 0, got ${epsilon}`);
  const eaft = tokenLoss.kind === 'eaft';
  const hRef = tokenLoss.kind === 'asft' ? opts.referenceH : undefined;
  if (tokenLoss.kind === 'asft') {
    if (!hRef || hRef.dtype !== 'f32' || numel(hRef.shape) !== T * D)
      throw new GpuError(`lmHeadCrossEntropy: ASFT needs referenceH, f32 [${T}, ${D}]${hRef ? `, got ${hRef.dtype} ${shapeStr(hRef.shape)}` : ''}`);
    if (tw) throw new GpuError('lmHeadCrossEntropy: ASFT takes no tokenWeights');
    const refParts = weightParts(opts.referenceW ?? w);
    if (refParts.length !== parts.length || refParts.some((p, i) => shapeStr(p.shape) !== shapeStr(parts[i]!.shape) || isQuantized(p)))
      throw new GpuError(`lmHeadCrossEntropy: referenceW must be split and shaped as the lm_head (${parts.map((p) => shapeStr(p.shape)).join(', ')})`);
  }
  const variant = [VARIANT[tokenLoss.kind], f32(epsilon), rowState(tokenLoss.kind)];
  const list = chunks(parts, C);
  const state = T * C;
  const softcap = opts.softcap ?? 0;
  const rowGrid = gpu.grid(T);
  const forward = pipeline(gpu, 'cross_entropy_forward');
  const params = (c: Chunk, i: number): Param[] =>
    [T, c.n, C, c.v0, V, i === 0 ? 1 : 0, i === list.length - 1 ? 1 : 0, state, f32(softcap), f32(opts.gradScale), ...variant];
  // ASFT: the reference's logsumexp first (plain cross-entropy on its logits; that loss is dropped)
  const rws = hRef ? scratch(gpu, 'lossReference', lossWorkspaceElements(T, C)) : null;
  // the reference head's chunks, row for row the policy's
  const refList = hRef ? chunks(weightParts(opts.referenceW ?? w), C) : list;
  if (hRef && rws) {
    const dropped = scratch(gpu, 'lossReferenceCe', T);
    list.forEach((c, i) => {
      chunkLogits(gpu, hRef, refList[i]!, T, D, rws, C);
      gpu.dispatch(forward, [rws, labels, dropped], rowGrid, [...params(c, i).slice(0, 10), VARIANT.ce, 0, rowState('ce')]);
    });
  }
  list.forEach((c, i) => {
    chunkLogits(gpu, h, c, T, D, ws, C);
    if (hRef && rws) {
      if (list.length > 1) chunkLogits(gpu, hRef, refList[i]!, T, D, rws, C);
      gpu.dispatch(pipeline(gpu, 'cross_entropy_asft_kl'), [ws, labels, rws], rowGrid, params(c, i));
    }
    if (eaft) {
      gpu.dispatch(pipeline(gpu, 'cross_entropy_topk'), [ws], rowGrid, params(c, i));
    }
    gpu.dispatch(forward, [ws, labels, out.loss], rowGrid, params(c, i));
  });
  if (!out.dH && !out.dW) return;

  const backward = pipeline(gpu, rws ? 'cross_entropy_backward_asft' : tw ? 'cross_entropy_backward_weighted' : 'cross_entropy_backward');
  list.forEach((c, i) => {
    if (list.length > 1) chunkLogits(gpu, h, c, T, D, ws, C);
    if (hRef && rws && list.length > 1) chunkLogits(gpu, hRef, refList[i]!, T, D, rws, C);
    gpu.dispatch(backward, rws ? [ws, labels, rws] : tw ? [ws, labels, tw] : [ws, labels], gpu.grid(Math.ceil((T * c.n) / 256)),
      [T, c.n, C, c.v0, V, 0, 0, state, f32(softcap), f32(opts.gradScale), ...variant]);
    if (out.dH) {
      gemm(gpu, { a: ws, b: c.part, c: out.dH, M: T, N: D, K: c.n, lda: C, offB: c.r0 * D, beta: i === 0 && !opts.accumulateDH ? 0 : 1 });
    }
    if (out.dW) {
      const { view, off } = window(out.dW, c.v0 * D, c.n * D);
      gemm(gpu, { a: ws, b: h, c: view, M: c.n, N: D, K: T, transA: true, lda: C, offC: off, beta: 1 });
    }
  });
}

export interface LogitsOptions {
  /** First row of h to use (default 0). */
  row?: number;
  /** Number of rows (default: all rows from `row`). */
  rows?: number;
  /** Gemma-2 final logit soft-capping. */
  softcap?: number;
}

/**
 * out[rows, V] = h[row .. row+rows) · Wᵀ (soft-capped when asked): the logits generation samples
 * from, e.g. the last position of a prompt. W may be split in row parts.
 */
export function logitsForRows(gpu: Gpu, h: Tensor, w: Weight, out: Tensor, opts: LogitsOptions = {}): void {
  const D = colsOf(h);
  const row = opts.row ?? 0;
  const rows = opts.rows ?? rowsOf(h) - row;
  const parts = weightParts(w);
  const V = parts.reduce((s, p) => s + p.shape[0]!, 0);
  if (row < 0 || rows < 1 || row + rows > rowsOf(h))
    throw new GpuError(`logitsForRows: rows ${row}..${row + rows} outside h ${shapeStr(h.shape)}`);
  if (out.dtype !== 'f32' || numel(out.shape) !== rows * V)
    throw new GpuError(`logitsForRows: out must be f32 [${rows}, ${V}], got ${out.dtype} ${shapeStr(out.shape)}`);
  for (const part of parts)
    if (part.shape[1] !== D) throw new GpuError(`logitsForRows: weight part ${shapeStr(part.shape)} does not have ${D} columns like h`);
  if (parts.some(isQuantized)) {
    // quantized products take whole inputs: copy the rows out, let linear() route each part
    const x: Tensor = { ...scratch(gpu, 'logitsRows', rows * D), shape: [rows, D] };
    gpu.copy(h, x, rows * D * 4, row * D * 4, 0);
    linear(gpu, x, w, { ...out, shape: [rows, V] });
  } else {
    let n0 = 0;
    for (const part of parts) {
      const n = part.shape[0]!;
      if (rows <= GEMV_MAX_T) linearDecode(gpu, h, part, out, { T: rows, row, n, K: D, ldc: V, offC: n0, scale: 1, accumulate: false });
      else gemm(gpu, { a: h, b: part, c: out, M: rows, N: n, K: D, transB: true, offA: row * D, ldc: V, offC: n0 });
      n0 += n;
    }
  }
  if (opts.softcap) {
    gpu.dispatch(pipeline(gpu, 'logit_softcap'), [out], gpu.grid(Math.ceil((rows * V) / 256)),
      [0, rows * V, 0, 0, 0, 0, 0, 0, f32(opts.softcap), f32(1), 0, f32(0), 0]);
  }
}
