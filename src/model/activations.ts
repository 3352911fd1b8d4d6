// What training holds on the GPU besides the weights, as one table: every buffer of a Workspace
// (a micro-batch of B rows of S tokens) by name and shape, and the two per-step buffers the
// kernels keep beside it (LoRA's saved activations, the lm_head loss chunk). The Workspace
// allocates and releases from these shapes; activationBytes() sums them for the app's memory
// estimate and the bench's figure, before anything is allocated.

import { bufferSize, type DType } from '../gpu/tensor';
import { loraSavedShapes } from '../kernels/lora';
import { LOSS_WORKSPACE_BYTES, lossChunkFor, lossWorkspaceElements } from '../kernels/loss';
import type { Layer } from './model';
import type { Mixer, ModelSpec } from './spec';
import { deltaRuleSavedElements } from '../kernels/delta-rule';
import { ssdSavedElements } from '../kernels/ssd';

/** The model dimensions the sizes depend on. */
export type ActivationSpec = Pick<ModelSpec, 'hidden' | 'heads' | 'kvHeads' | 'headDim' | 'intermediate' | 'qkNorm' | 'sandwichNorms' | 'vocab'>
  & Partial<Pick<ModelSpec, 'attnOutputGate' | 'deltaNet' | 'mamba' | 'sharedMlp' | 'shortConv' | 'mrope' | 'postNormsOnly'>> & { layers: readonly { mixer?: Mixer }[] };

/** Buffer shapes by name; null where this model has no such buffer. */
export type ShapeTable = Record<string, number[] | null>;

/** Tokens per chunk of the chunked delta rule (transformers' chunk_size). */
export const DELTA_RULE_CHUNK = 64;

/** Tokens per chunk of the chunked SSD scan (the checkpoints' mamba_chunk_size is 256; the result does not depend on it). */
export const SSD_CHUNK = 64;

/** What every layer keeps around its token mixer: the norms, the residual and the MLP (f32). */
export function blockActivationShapes(s: ActivationSpec, B: number, S: number) {
  const T = B * S, D = s.hidden, I = s.intermediate;
  // (the norms after the mixer and the MLP: Gemma 2/3's sandwich, OLMo 2's)
  const sandwich = s.sandwichNorms || !!s.postNormsOnly;
  return {
    h1: [T, D], rstd1: [T],
    oOut: [T, D], oNormed: sandwich ? [T, D] : null, rstdPostAttn: sandwich ? [T] : null,
    xMid: [T, D], h2: [T, D], rstd2: [T],
    gateUp: s.sharedMlp ? [T, 2 * I] : null, gate: [T, I], up: [T, I], act: [T, I],
    down: [T, D], downNormed: sandwich ? [T, D] : null, rstdPostMlp: sandwich ? [T] : null,
  } satisfies ShapeTable;
}

/** An attention layer's token mixer: q, k, v before and after norm and rope, the output and its log-sum-exp; Qwen3.5's output gate. */
export function attentionActivationShapes(s: ActivationSpec, B: number, S: number) {
  const T = B * S, Q = s.heads * s.headDim, KV = s.kvHeads * s.headDim;
  const qk = s.qkNorm, gated = !!s.attnOutputGate;
  return {
    qGateRaw: gated ? [T, 2 * Q] : null, outGate: gated ? [T, Q] : null, attnGated: gated ? [T, Q] : null,
    qRaw: [T, Q], kRaw: [T, KV], qNormed: qk ? [T, Q] : null, kNormed: qk ? [T, KV] : null,
    rstdQ: qk ? [T * s.heads] : null, rstdK: qk ? [T * s.kvHeads] : null,
    q: [T, Q], k: [T, KV], v: [T, KV], attn: [T, Q], lse: [B, s.heads, S],
  } satisfies ShapeTable;
}

/** A Gated DeltaNet layer's token mixer: projections, conv, l2-normed q/k, gates, the delta rule's record, the gated norm. */
export function deltaNetActivationShapes(s: ActivationSpec, B: number, S: number) {
  const d = s.deltaNet;
  if (!d) throw new Error('deltaNetActivationShapes: the model has no Gated DeltaNet layers');
  const T = B * S, K = d.keyHeads * d.keyDim, V = d.valueHeads * d.valueDim, C = 2 * K + V;
  const rule = { batch: B, len: S, keyHeads: d.keyHeads, valueHeads: d.valueHeads, keyDim: d.keyDim, valueDim: d.valueDim, scale: 1 };
  return {
    mixed: [T, C], conv: [T, C], qRaw: [T, K], kRaw: [T, K], q: [T, K], k: [T, K], rq: [T * d.keyHeads], rk: [T * d.keyHeads], v: [T, V],
    aProj: [T, d.valueHeads], bProj: [T, d.valueHeads], g: [T, d.valueHeads], beta: [T, d.valueHeads],
    core: [T, V], ruleSaved: [deltaRuleSavedElements(rule, DELTA_RULE_CHUNK)], z: [T, V], normed: [T, V], rstdGated: [T * d.valueHeads],
  } satisfies ShapeTable;
}

/** A Mamba-2 layer's token mixer: in_proj's output and its parts, the conv, the scan's inputs, output and record, the gated norm. */
export function mambaActivationShapes(s: ActivationSpec, B: number, S: number) {
  const m = s.mamba;
  if (!m) throw new Error('mambaActivationShapes: the model has no Mamba layers');
  const T = B * S, W = m.heads * m.headDim, GN = m.groups * m.stateDim, C = W + 2 * GN;
  const scan = { batch: B, len: S, heads: m.heads, groups: m.groups, stateDim: m.stateDim, headDim: m.headDim };
  return {
    proj: [T, W + C + m.heads], z: [T, W], xbcIn: [T, C], dt: [T, m.heads], xbc: [T, C], x: [T, W], Bm: [T, GN], Cm: [T, GN],
    y: [T, W], ssdSaved: [ssdSavedElements(scan, SSD_CHUNK)], gated: [T, W], normed: [T, W], rstdGated: [T],
  } satisfies ShapeTable;
}

/** An LFM2 short-convolution layer's token mixer: in_proj's B | C | x, each third, B * x, its convolution, C * conv. */
export function shortConvActivationShapes(s: ActivationSpec, B: number, S: number) {
  const T = B * S, D = s.hidden;
  return { bcx: [T, 3 * D], b: [T, D], c: [T, D], x: [T, D], bx: [T, D], conv: [T, D], y: [T, D] } satisfies ShapeTable;
}

/** The token mixer's activations of a layer of this kind. */
export function mixerActivationShapes(s: ActivationSpec, B: number, S: number, mixer: Mixer): ShapeTable {
  if (mixer === 'deltaNet') return deltaNetActivationShapes(s, B, S);
  if (mixer === 'mamba') return mambaActivationShapes(s, B, S);
  if (mixer === 'shortConv') return shortConvActivationShapes(s, B, S);
  return attentionActivationShapes(s, B, S);
}

/** All of one layer's forward activations kept for its backward. With recomputation one set per mixer kind is reused by all layers. */
export function layerActivationShapes(s: ActivationSpec, B: number, S: number, mixer: Mixer): ShapeTable {
  return { ...blockActivationShapes(s, B, S), ...mixerActivationShapes(s, B, S, mixer) };
}

/** The backward's working set (f32), allocated on the first backward: one layer's gradients, reused by every layer. */
export function gradientShapes(s: ActivationSpec, T: number) {
  const D = s.hidden, Q = s.heads * s.headDim, KV = s.kvHeads * s.headDim, I = s.intermediate;
  const gated = !!s.attnOutputGate, d = s.deltaNet ?? null;
  const sc = s.shortConv ?? null;
  const K = d ? d.keyHeads * d.keyDim : 0, V = d ? d.valueHeads * d.valueDim : 0, Hv = d?.valueHeads ?? 0;
  const m = s.mamba ?? null;
  const mW = m ? m.heads * m.headDim : 0, mGN = m ? m.groups * m.stateDim : 0, mC = mW + 2 * mGN, mH = m?.heads ?? 0;
  return {
    dResid: [T, D], dTmp: [T, D], dH: [T, D],
    dAct: [T, I], dGate: [T, I], dUp: [T, I],
    dAttn: [T, Q], dQ: [T, Q], dK: [T, KV], dV: [T, KV], dQ2: s.qkNorm ? [T, Q] : null, dK2: s.qkNorm ? [T, KV] : null,
    dAttnGated: gated ? [T, Q] : null, dOutGate: gated ? [T, Q] : null, dQGate: gated ? [T, 2 * Q] : null,
    dNormed: d ? [T, V] : null, dCore: d ? [T, V] : null, dZ: d ? [T, V] : null,
    dDq: d ? [T, K] : null, dDk: d ? [T, K] : null, dDv: d ? [T, V] : null, dG: d ? [T, Hv] : null, dBeta: d ? [T, Hv] : null,
    dA: d ? [T, Hv] : null, dB: d ? [T, Hv] : null, dQRaw: d ? [T, K] : null, dKRaw: d ? [T, K] : null,
    dConv: d ? [T, 2 * K + V] : null, dMixed: d ? [T, 2 * K + V] : null, dConvW: d ? [2 * K + V, d.convKernel] : null,
    dGateUp: s.sharedMlp ? [T, 2 * I] : null,
    mdProj: m ? [T, mW + mC + mH] : null, mdNormed: m ? [T, mW] : null, mdGated: m ? [T, mW] : null, mdY: m ? [T, mW] : null, mdZ: m ? [T, mW] : null,
    mdX: m ? [T, mW] : null, mdDt: m ? [T, mH] : null, mdBm: m ? [T, mGN] : null, mdCm: m ? [T, mGN] : null, mdXbc: m ? [T, mC] : null,
    mdXbcIn: m ? [T, mC] : null, mdConvW: m ? [mC, m.convKernel] : null, mdConvBias: m ? [mC] : null,
    mdALog: m ? [mH] : null, mdDtBias: m ? [mH] : null, mdD: m ? [mH] : null,
    // LFM2's short convolution: d(C * conv), d conv, d(B * x), dB, dC, dx, d in_proj's output, the taps' gradient
    dScY: sc ? [T, D] : null, dScConv: sc ? [T, D] : null, dScBx: sc ? [T, D] : null, dScB: sc ? [T, D] : null, dScC: sc ? [T, D] : null,
    dScX: sc ? [T, D] : null, dScBcx: sc ? [T, 3 * D] : null, dScW: sc ? [D, sc.convKernel] : null,
    dFinal: [T, D],
  } satisfies ShapeTable;
}

/** The buffers around the layers: every layer's input (resid, L + 1 of them), the final norm, the loss, the batch's tokens. */
export function streamShapes(s: ActivationSpec, B: number, S: number, packed: boolean) {
  const T = B * S, D = s.hidden;
  return {
    f32: { final: [T, D], rstdFinal: [T], loss: [T] } satisfies ShapeTable,
    // M-RoPE (Qwen2-VL): (temporal, height, width) positions, [3, T]
    i32: { ids: [T], labels: [T], positions: s.mrope ? [3, T] : [T], segments: packed ? [T] : null } satisfies ShapeTable,
    /** resid[l] is the input of layer l; resid[L] feeds the final norm. */
    resid: Array.from({ length: s.layers.length + 1 }, () => [T, D]),
    /** Ones for bias broadcasts and sums as products (linear.ts's onesFor). */
    ones: [T, 1],
  };
}

/**
 * What generation keeps per layer (forward.ts's KVCache): keys and values of an attention layer for
 * `capacity` positions of each of `sequences` sequences; a recurrent layer keeps a fixed-size state
 * instead, whatever the length: the conv's last K - 1 inputs (Gated DeltaNet's q/k/v channels,
 * Mamba-2's x, B, C, LFM2's B * x) and the delta rule's [Hv, Dk, Dv] memory or Mamba-2's [H, N, P]
 * scan state.
 */
export function decodeStateShapes(s: ActivationSpec, capacity: number, sequences = 1) {
  const { deltaNet: d, mamba: m, shortConv: sc } = s;
  const kv = [sequences * capacity, s.kvHeads * s.headDim];
  return s.layers.map(({ mixer = 'attention' }) => ({
    k: mixer === 'attention' ? kv : null,
    v: mixer === 'attention' ? kv : null,
    conv: mixer === 'deltaNet' ? [d!.convKernel - 1, 2 * d!.keyHeads * d!.keyDim + d!.valueHeads * d!.valueDim]
      : mixer === 'mamba' ? [m!.convKernel - 1, m!.heads * m!.headDim + 2 * m!.groups * m!.stateDim]
      : mixer === 'shortConv' ? [sc!.convKernel - 1, s.hidden] : null,
    rule: mixer === 'deltaNet' ? [d!.valueHeads, d!.keyDim, d!.valueDim] : mixer === 'mamba' ? [m!.heads, m!.stateDim, m!.headDim] : null,
  } satisfies ShapeTable));
}

/** Bytes of generation's cache and recurrent state (decodeStateShapes), summed. */
export function decodeStateBytes(s: ActivationSpec, capacity: number, sequences = 1): { kv: number; recurrent: number } {
  const shapes = decodeStateShapes(s, capacity, sequences);
  return {
    kv: shapes.reduce((a, l) => a + tableBytes([l.k, l.v]), 0),
    recurrent: shapes.reduce((a, l) => a + tableBytes([l.conv, l.rule]), 0),
  };
}

/** A trained LoRA site of one layer: its output features (DoRA keeps more). */
export interface LoraSiteSize {
  outFeatures: number;
  rank: number;
  dora: boolean;
}

/** The LoRA sites of a loaded layer (each keeps its saved activations), as activationBytes takes them. */
export function loraSites(layer: Layer): LoraSiteSize[] {
  return Object.values(layer.sites).flatMap(({ lora, outFeatures }) => (lora ? [{ outFeatures, rank: lora.A.shape[0]!, dora: !!lora.magnitude }] : []));
}

/** The LoRA sites of the first layer of each mixer kind (a hybrid model's attention and Gated DeltaNet layers differ). */
export function loraSitesByMixer(layers: readonly Layer[]): Partial<Record<Mixer, LoraSiteSize[]>> {
  const out: Partial<Record<Mixer, LoraSiteSize[]>> = {};
  for (const l of layers) out[l.mixer] ??= loraSites(l);
  return out;
}

export interface ActivationOptions {
  B: number;
  S: number;
  /** Activation checkpointing: layer inputs kept, one layer's activations recomputed at a time. */
  recompute: boolean;
  /** neat_packing batches carry segment ids. */
  packed?: boolean;
  /** The LoRA sites of one layer, the same on every layer or by mixer kind (none: no adapter). */
  lora?: readonly LoraSiteSize[] | Partial<Record<Mixer, readonly LoraSiteSize[]>>;
  /** Workspace budget of the lm_head loss chunk (kernels/loss.ts). */
  lossBytes?: number;
}

export interface ActivationBytes {
  /** Layer inputs, final norm, loss and the batch's tokens. */
  stream: number;
  /** Per-layer activations kept for backward: every layer's, or one layer's per mixer kind with recompute. */
  layers: number;
  /** LoRA's saved activations, kept with the layer activations. */
  lora: number;
  /** The backward's working set. */
  gradients: number;
  /** The lm_head loss chunk's logits and per-row state. */
  lossChunk: number;
  total: number;
}

/** Bytes of the buffers in a table, as the GPU allocates them. */
export function tableBytes(table: ShapeTable | readonly (number[] | null)[], dtype: DType = 'f32'): number {
  return Object.values(table).reduce((a: number, shape) => a + (shape ? bufferSize(shape, dtype) : 0), 0);
}

/** The training buffers of one micro-batch shape, summed. */
export function activationBytes(s: ActivationSpec, o: ActivationOptions): ActivationBytes {
  const T = o.B * o.S;
  const mixers = s.layers.map((l) => l.mixer ?? 'attention');
  // with recomputation one set per mixer kind
  const keptMixers = o.recompute ? [...new Set(mixers)] : mixers;
  const streams = streamShapes(s, o.B, o.S, o.packed ?? false);
  const stream = tableBytes(streams.f32) + tableBytes(streams.i32, 'i32') + tableBytes(streams.resid) + bufferSize(streams.ones, 'f32');
  const layers = keptMixers.reduce((a, m) => a + tableBytes(layerActivationShapes(s, o.B, o.S, m)), 0);
  const sitesOf = (m: Mixer): readonly LoraSiteSize[] => (Array.isArray(o.lora) ? o.lora : (o.lora as Partial<Record<Mixer, readonly LoraSiteSize[]>> | undefined)?.[m] ?? []);
  const lora = keptMixers.reduce((a, m) => a + sitesOf(m).reduce((b, site) => b + tableBytes(loraSavedShapes(T, site.outFeatures, site.rank, site.dora)), 0), 0);
  const gradients = tableBytes(gradientShapes(s, T));
  const lossChunk = 4 * lossWorkspaceElements(T, lossChunkFor(T, s.vocab, o.lossBytes ?? LOSS_WORKSPACE_BYTES));
  return { stream, layers, lora, gradients, lossChunk, total: stream + layers + lora + gradients + lossChunk };
}
