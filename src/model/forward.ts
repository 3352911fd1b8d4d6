// Forward and backward passes of the transformer for training, and the incremental forward with a
// KV cache for generation. Activations live in a Workspace sized for one micro-batch shape; with
// `recompute`, only each layer's input is kept and the layer is run again during backward
// (activation checkpointing), so memory no longer grows with the number of layers' activations.
// lora_dropout masks are regenerated from counters (kernels/lora.ts), so a recomputed layer and its
// backward see the forward's masks.

import type { Gpu } from '../gpu/runtime';
import type { Tensor } from '../gpu/tensor';
import { gatedActForward, gatedActBackward } from '../kernels/act';
import { add } from '../kernels/elementwise';
import { attentionForward, attentionBackward, type AttentionShape } from '../kernels/attention';
import { embeddingForward, embeddingBackward } from '../kernels/embedding';
import type { LoraDropout } from '../kernels/lora';
import { lmHeadCrossEntropy, logitsForRows, type TokenLoss } from '../kernels/loss';
import { rmsNormForward, rmsNormBackward } from '../kernels/norm';
import { ropeForward, ropeBackward } from '../kernels/rope';
import { gradientShapes, layerActivationShapes, streamShapes, type ShapeTable } from './activations';
import { allocSiteSaved, onesFor, siteBackward, siteForward, type SiteSaved } from './linear';
import { SITE_KINDS, type Layer, type Model, type Param, type SiteKind } from './model';

/** One micro-batch: B rows of S tokens. Labels are already shifted (labels[t] is the target after token t). */
export interface Batch {
  B: number;
  S: number;
  ids: Int32Array;
  labels: Int32Array;
  positions: Int32Array;
  /** Packed sequences (neat_packing): attention stays within equal segment ids. */
  segments?: Int32Array;
}

/** HF's causal-LM shift: the target of position t is labels[t + 1] of the same row; the last is ignored. */
export function shiftLabels(labels: Int32Array, B: number, S: number): Int32Array {
  const out = new Int32Array(B * S).fill(-100);
  for (let b = 0; b < B; b++) for (let t = 0; t + 1 < S; t++) out[b * S + t] = labels[b * S + t + 1]!;
  return out;
}

/** The tensors of a shape table (activations.ts): a tensor where the table has a shape, null where it has none. */
type Tensors<T extends ShapeTable> = { [K in keyof T]: null extends T[K] ? Tensor | null : Tensor };

function allocate<T extends ShapeTable>(gpu: Gpu, table: T, dtype: 'f32' | 'i32' = 'f32'): Tensors<T> {
  return Object.fromEntries(Object.entries(table).map(([name, shape]) => [name, shape ? gpu.tensor(shape, dtype, name) : null])) as Tensors<T>;
}

const allocated = (tensors: Record<string, Tensor | null>): Tensor[] => Object.values(tensors).filter((t): t is Tensor => t !== null);

type LayerActs = Tensors<ReturnType<typeof layerActivationShapes>> & {
  /** LoRA activations per site kind, allocated on first use (adapters come and go). */
  saved: Partial<Record<SiteKind, SiteSaved>>;
};

type Grads = Tensors<ReturnType<typeof gradientShapes>>;

export class Workspace {
  readonly T: number;
  /** resid[l] is the input of layer l; resid[L] feeds the final norm. */
  readonly resid: Tensor[];
  readonly acts: LayerActs[];
  readonly final: Tensor;
  readonly rstdFinal: Tensor;
  readonly loss: Tensor;
  readonly ids: Tensor;
  readonly labels: Tensor;
  readonly positions: Tensor;
  readonly segments: Tensor | null;
  readonly ones: Tensor;
  private grads: Grads | null = null;
  /** The loaded batch's ids on the host (the embedding gradient groups rows by id). */
  private hostIds: Int32Array = new Int32Array(0);

  constructor(readonly model: Model, readonly B: number, readonly S: number, readonly recompute: boolean, packed = false) {
    const gpu = model.gpu;
    this.T = B * S;
    const stream = streamShapes(model.spec, B, S, packed);
    this.resid = stream.resid.map((shape, i) => gpu.tensor(shape, 'f32', i < model.layers.length ? `resid${i}` : 'residFinal'));
    const makeActs = (): LayerActs => ({ ...allocate(gpu, layerActivationShapes(model.spec, B, S)), saved: {} });
    this.acts = recompute ? [makeActs()] : model.layers.map(() => makeActs());
    ({ final: this.final, rstdFinal: this.rstdFinal, loss: this.loss } = allocate(gpu, stream.f32));
    ({ ids: this.ids, labels: this.labels, positions: this.positions, segments: this.segments } = allocate(gpu, stream.i32, 'i32'));
    this.ones = onesFor(gpu, this.T);
  }

  loadedIds(): Int32Array {
    return this.hostIds;
  }

  actsFor(layer: number): LayerActs {
    return this.acts[this.recompute ? 0 : layer]!;
  }

  gradBuffers(): Grads {
    this.grads ??= allocate(this.model.gpu, gradientShapes(this.model.spec, this.T));
    return this.grads;
  }

  load(batch: Batch): void {
    if (batch.B !== this.B || batch.S !== this.S) throw new Error(`batch ${batch.B}x${batch.S} does not fit a ${this.B}x${this.S} workspace`);
    const gpu = this.model.gpu;
    const V = this.model.spec.vocab;
    for (let i = 0; i < batch.ids.length; i++) {
      const id = batch.ids[i]!;
      if (id < 0 || id >= V) throw new Error(`token id ${id} at batch position ${i} is outside the vocabulary (0..${V - 1})`);
    }
    this.hostIds = batch.ids;
    gpu.write(this.ids, batch.ids);
    gpu.write(this.labels, batch.labels);
    gpu.write(this.positions, batch.positions);
    if (this.segments) {
      if (!batch.segments) throw new Error('this workspace is for packed batches: segment ids are required');
      gpu.write(this.segments, batch.segments);
    }
  }

  release(): void {
    const all: Tensor[] = [...this.resid, this.final, this.rstdFinal, this.loss, this.ones, this.ids, this.labels, this.positions];
    if (this.segments) all.push(this.segments);
    for (const { saved, ...acts } of this.acts) {
      all.push(...allocated(acts));
      for (const s of Object.values(saved)) if (s) all.push(...(Object.values(s).filter(Boolean) as Tensor[]));
    }
    if (this.grads) all.push(...allocated(this.grads));
    this.model.gpu.release(...all);
  }
}

const view = (t: Tensor, shape: number[]): Tensor => ({ ...t, shape });

function sv(gpu: Gpu, a: LayerActs, layer: Layer, kind: SiteKind): SiteSaved {
  const site = layer.sites[kind];
  if (!site.lora) return null;
  return (a.saved[kind] ??= allocSiteSaved(gpu, site, a.h1.shape[0]!));
}

/** lora_dropout of one training forward: the counters of the step; each LoRA site adds its own. */
export type LoraDropoutStep = Omit<LoraDropout, 'site'>;

/** The site whose mask a site uses: PEFT has one lora_dropout per module, so a fused module's parts share it (as they share lora_A). */
const FUSED_MODULE_FIRST: Record<SiteKind, SiteKind> = {
  q_proj: 'q_proj', k_proj: 'q_proj', v_proj: 'q_proj', o_proj: 'o_proj', gate_proj: 'gate_proj', up_proj: 'gate_proj', down_proj: 'down_proj',
};

/** Each site's dropout in a layer (undefined for all without `step`: evaluation, generation). */
function siteDropouts(model: Model, layer: Layer, step: LoraDropoutStep | undefined): (kind: SiteKind) => LoraDropout | undefined {
  return (kind) => {
    if (!step) return undefined;
    const module = model.spec.fusedProjections ? FUSED_MODULE_FIRST[kind] : kind;
    return { ...step, site: layer.index * SITE_KINDS.length + SITE_KINDS.indexOf(module) };
  };
}

function attnShape(model: Model, layer: Layer, B: number, S: number, segments: Tensor | null): AttentionShape {
  const s = model.spec;
  return {
    batch: B, qLen: S, kvLen: S, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim, scale: s.attnScale,
    ...(s.attnSoftcap ? { softcap: s.attnSoftcap } : {}),
    ...(layer.window ? { window: layer.window } : {}),
    ...(segments ? { segments } : {}),
  };
}

function norm(gpu: Gpu, model: Model, x: Tensor, p: Param, y: Tensor, rstd: Tensor): void {
  rmsNormForward(gpu, x, p.value, y, rstd, { eps: model.spec.rmsEps, offset: model.spec.normOffset });
}

function normBack(gpu: Gpu, model: Model, dy: Tensor, x: Tensor, p: Param, rstd: Tensor, dx: Tensor, accumulateDx: boolean): void {
  rmsNormBackward(gpu, dy, x, p.value, rstd, dx, p.grad, { offset: model.spec.normOffset, accumulateDx, accumulateDw: true });
}

/** Attention inputs for one layer: q, k (normed, roped) and v, from the normed hidden state. */
function qkv(gpu: Gpu, model: Model, layer: Layer, a: LayerActs, ones: Tensor, positions: Tensor, drop?: LoraDropoutStep): void {
  const { heads: Hq, kvHeads: Hkv, headDim: Dh } = model.spec;
  const T = a.h1.shape[0]!;
  const dropout = siteDropouts(model, layer, drop);
  siteForward(gpu, layer.sites.q_proj, a.h1, a.qRaw, sv(gpu, a, layer, 'q_proj'), ones, dropout('q_proj'));
  siteForward(gpu, layer.sites.k_proj, a.h1, a.kRaw, sv(gpu, a, layer, 'k_proj'), ones, dropout('k_proj'));
  siteForward(gpu, layer.sites.v_proj, a.h1, a.v, sv(gpu, a, layer, 'v_proj'), ones, dropout('v_proj'));
  let qIn = a.qRaw, kIn = a.kRaw;
  if (layer.qNorm && layer.kNorm) {
    norm(gpu, model, view(a.qRaw, [T * Hq, Dh]), layer.qNorm, view(a.qNormed!, [T * Hq, Dh]), a.rstdQ!);
    norm(gpu, model, view(a.kRaw, [T * Hkv, Dh]), layer.kNorm, view(a.kNormed!, [T * Hkv, Dh]), a.rstdK!);
    qIn = a.qNormed!;
    kIn = a.kNormed!;
  }
  ropeForward(gpu, view(qIn, [T, Hq, Dh]), view(a.q, [T, Hq, Dh]), positions, layer.invFreq);
  ropeForward(gpu, view(kIn, [T, Hkv, Dh]), view(a.k, [T, Hkv, Dh]), positions, layer.invFreq);
}

/** Everything after attention: o_proj, residual, MLP, residual. */
function attnOutAndMlp(gpu: Gpu, model: Model, layer: Layer, a: LayerActs, xIn: Tensor, xOut: Tensor, ones: Tensor, drop?: LoraDropoutStep): void {
  const dropout = siteDropouts(model, layer, drop);
  siteForward(gpu, layer.sites.o_proj, a.attn, a.oOut, sv(gpu, a, layer, 'o_proj'), ones, dropout('o_proj'));
  let r = a.oOut;
  if (layer.attnPostNorm) {
    norm(gpu, model, a.oOut, layer.attnPostNorm, a.oNormed!, a.rstdPostAttn!);
    r = a.oNormed!;
  }
  add(gpu, xIn, r, a.xMid);
  norm(gpu, model, a.xMid, layer.mlpNorm, a.h2, a.rstd2);
  siteForward(gpu, layer.sites.gate_proj, a.h2, a.gate, sv(gpu, a, layer, 'gate_proj'), ones, dropout('gate_proj'));
  siteForward(gpu, layer.sites.up_proj, a.h2, a.up, sv(gpu, a, layer, 'up_proj'), ones, dropout('up_proj'));
  gatedActForward(gpu, a.gate, a.up, a.act, model.spec.act);
  siteForward(gpu, layer.sites.down_proj, a.act, a.down, sv(gpu, a, layer, 'down_proj'), ones, dropout('down_proj'));
  let r2 = a.down;
  if (layer.mlpPostNorm) {
    norm(gpu, model, a.down, layer.mlpPostNorm, a.downNormed!, a.rstdPostMlp!);
    r2 = a.downNormed!;
  }
  add(gpu, a.xMid, r2, xOut);
}

function layerForward(ws: Workspace, l: number, drop: LoraDropoutStep | undefined): void {
  const { model } = ws;
  const gpu = model.gpu;
  const layer = model.layers[l]!;
  const a = ws.actsFor(l);
  const xIn = ws.resid[l]!;
  norm(gpu, model, xIn, layer.attnNorm, a.h1, a.rstd1);
  qkv(gpu, model, layer, a, ws.ones, ws.positions, drop);
  const { heads: Hq, kvHeads: Hkv, headDim: Dh } = model.spec;
  const [B, S] = [ws.B, ws.S];
  attentionForward(gpu, view(a.q, [B, S, Hq, Dh]), view(a.k, [B, S, Hkv, Dh]), view(a.v, [B, S, Hkv, Dh]), view(a.attn, [B, S, Hq, Dh]), a.lse,
    attnShape(model, layer, B, S, ws.segments));
  attnOutAndMlp(gpu, model, layer, a, xIn, ws.resid[l + 1]!, ws.ones, drop);
}

/** Gradient of the layer's output arrives in g.dResid; on return g.dResid holds the gradient of its input. */
function layerBackward(ws: Workspace, l: number, g: Grads, drop: LoraDropoutStep | undefined): void {
  const { model } = ws;
  const gpu = model.gpu;
  const layer = model.layers[l]!;
  const a = ws.actsFor(l);
  const xIn = ws.resid[l]!;
  const { heads: Hq, kvHeads: Hkv, headDim: Dh } = model.spec;
  const [B, S, T] = [ws.B, ws.S, ws.T];
  const dropout = siteDropouts(model, layer, drop);
  const once = (kind: SiteKind) => ({ accumulateDx: false, accumulateGrads: true, dropout: dropout(kind) });
  const more = (kind: SiteKind) => ({ accumulateDx: true, accumulateGrads: true, dropout: dropout(kind) });

  // MLP branch: xOut = xMid + post(down(act(gate(h2)) * up(h2)))
  let dDown = g.dResid;
  if (layer.mlpPostNorm) {
    normBack(gpu, model, g.dResid, a.down, layer.mlpPostNorm, a.rstdPostMlp!, g.dTmp, false);
    dDown = g.dTmp;
  }
  siteBackward(gpu, layer.sites.down_proj, a.act, dDown, g.dAct, sv(gpu, a, layer, 'down_proj'), ws.ones, once('down_proj'));
  gatedActBackward(gpu, g.dAct, a.gate, a.up, g.dGate, g.dUp, model.spec.act);
  siteBackward(gpu, layer.sites.gate_proj, a.h2, g.dGate, g.dH, sv(gpu, a, layer, 'gate_proj'), ws.ones, once('gate_proj'));
  siteBackward(gpu, layer.sites.up_proj, a.h2, g.dUp, g.dH, sv(gpu, a, layer, 'up_proj'), ws.ones, more('up_proj'));
  normBack(gpu, model, g.dH, a.xMid, layer.mlpNorm, a.rstd2, g.dResid, true);

  // Attention branch: xMid = xIn + post(o(attention(rope(q), rope(k), v)))
  let dO = g.dResid;
  if (layer.attnPostNorm) {
    normBack(gpu, model, g.dResid, a.oOut, layer.attnPostNorm, a.rstdPostAttn!, g.dTmp, false);
    dO = g.dTmp;
  }
  siteBackward(gpu, layer.sites.o_proj, a.attn, dO, g.dAttn, sv(gpu, a, layer, 'o_proj'), ws.ones, once('o_proj'));
  attentionBackward(gpu, view(g.dAttn, [B, S, Hq, Dh]), view(a.q, [B, S, Hq, Dh]), view(a.k, [B, S, Hkv, Dh]), view(a.v, [B, S, Hkv, Dh]),
    view(a.attn, [B, S, Hq, Dh]), a.lse, view(g.dQ, [B, S, Hq, Dh]), view(g.dK, [B, S, Hkv, Dh]), view(g.dV, [B, S, Hkv, Dh]),
    attnShape(model, layer, B, S, ws.segments));
  ropeBackward(gpu, view(g.dQ, [T, Hq, Dh]), view(g.dQ, [T, Hq, Dh]), ws.positions, layer.invFreq);
  ropeBackward(gpu, view(g.dK, [T, Hkv, Dh]), view(g.dK, [T, Hkv, Dh]), ws.positions, layer.invFreq);
  let dQ = g.dQ, dK = g.dK;
  if (layer.qNorm && layer.kNorm) {
    normBack(gpu, model, view(g.dQ, [T * Hq, Dh]), view(a.qRaw, [T * Hq, Dh]), layer.qNorm, a.rstdQ!, view(g.dQ2!, [T * Hq, Dh]), false);
    normBack(gpu, model, view(g.dK, [T * Hkv, Dh]), view(a.kRaw, [T * Hkv, Dh]), layer.kNorm, a.rstdK!, view(g.dK2!, [T * Hkv, Dh]), false);
    dQ = g.dQ2!;
    dK = g.dK2!;
  }
  siteBackward(gpu, layer.sites.q_proj, a.h1, dQ, g.dH, sv(gpu, a, layer, 'q_proj'), ws.ones, once('q_proj'));
  siteBackward(gpu, layer.sites.k_proj, a.h1, dK, g.dH, sv(gpu, a, layer, 'k_proj'), ws.ones, more('k_proj'));
  siteBackward(gpu, layer.sites.v_proj, a.h1, g.dV, g.dH, sv(gpu, a, layer, 'v_proj'), ws.ones, more('v_proj'));
  normBack(gpu, model, g.dH, xIn, layer.attnNorm, a.rstd1, g.dResid, true);
}

export interface StepOptions {
  backward: boolean;
  /** Multiplies the gradient of the summed token losses (1 / tokens of the whole optimizer step). */
  gradScale: number;
  /** NEFTune: a [T, D] noise tensor added to the embeddings (training only). */
  embedNoise?: Tensor;
  /**
   * f32 [T]: multiplies each token's loss gradient (on top of gradScale). Preference losses put
   * d loss / d log p(sequence) on each sequence's labelled tokens.
   */
  tokenWeights?: Tensor;
  /**
   * lora_dropout (training forwards of pt / sft): the step's mask counters. Absent: no dropout
   * (evaluation, reference model). With reuseForward, pass the forward call's value again.
   */
  loraDropout?: LoraDropoutStep;
  /**
   * The activations in ws come from a forward of the loaded batch with the current weights (a
   * forward-only call just before): skip the forward, run only the head and the backward.
   */
  reuseForward?: boolean;
  /**
   * Replaces the lm_head cross-entropy (ws.loss is left alone): the forward ends at ws.final,
   * and with backward, head(dFinal) must write d loss / d ws.final [T, D] (a reward model's value
   * head on each sequence's last token).
   */
  head?: (dFinal: Tensor) => void;
  /** The lm_head token loss (default cross-entropy): DFT, EAFT, label smoothing. */
  tokenLoss?: TokenLoss;
}

/**
 * Records forward (and backward) for the batch loaded in the workspace. Per-token losses land in
 * ws.loss (0 where ignored). Gradients are added into the grad tensors (the trainer zeroes them
 * at the start of an optimizer step).
 */
export function forwardBackward(ws: Workspace, opts: StepOptions): void {
  const { model } = ws;
  const gpu = model.gpu;
  const s = model.spec;
  if (!opts.reuseForward) {
    embeddingForward(gpu, ws.ids, model.embed.value, ws.resid[0]!, s.embedScale);
    if (opts.embedNoise) add(gpu, ws.resid[0]!, opts.embedNoise, ws.resid[0]!);
    for (let l = 0; l < model.layers.length; l++) layerForward(ws, l, opts.loraDropout);
    norm(gpu, model, ws.resid[model.layers.length]!, model.finalNorm, ws.final, ws.rstdFinal);
  }
  const g = opts.backward ? ws.gradBuffers() : null;
  if (opts.head) {
    if (g) opts.head(g.dFinal);
  } else {
    lmHeadCrossEntropy(gpu, ws.final, model.lmHead.weight, ws.labels, {
      loss: ws.loss,
      ...(g ? { dH: g.dFinal } : {}),
      ...(g && model.lmHead.grad ? { dW: model.lmHead.grad } : {}),
    }, {
      gradScale: opts.gradScale,
      ...(s.finalSoftcap ? { softcap: s.finalSoftcap } : {}),
      ...(opts.tokenWeights ? { tokenWeights: opts.tokenWeights } : {}),
      ...(opts.tokenLoss ? { tokenLoss: opts.tokenLoss } : {}),
    });
  }
  if (!g) return;
  normBack(gpu, model, g.dFinal, ws.resid[model.layers.length]!, model.finalNorm, ws.rstdFinal, g.dResid, false);
  for (let l = model.layers.length - 1; l >= 0; l--) {
    if (ws.recompute) layerForward(ws, l, opts.loraDropout);
    layerBackward(ws, l, g, opts.loraDropout);
  }
  if (model.embed.grad) embeddingBackward(gpu, ws.loadedIds(), g.dResid, model.embed.grad, s.embedScale, true);
}

/** Logits [T, V] for every position (tests, evaluation on small vocabularies). */
export function fullLogits(ws: Workspace, out: Tensor): void {
  const { model } = ws;
  const gpu = model.gpu;
  embeddingForward(gpu, ws.ids, model.embed.value, ws.resid[0]!, model.spec.embedScale);
  for (let l = 0; l < model.layers.length; l++) layerForward(ws, l, undefined);
  norm(gpu, model, ws.resid[model.layers.length]!, model.finalNorm, ws.final, ws.rstdFinal);
  const softcap = model.spec.finalSoftcap;
  logitsForRows(gpu, ws.final, model.lmHead.weight, out, softcap ? { softcap } : {});
}

/** Keys and values of every layer for one sequence, [capacity, Hkv * Dh] each. */
export interface KVCache {
  k: Tensor[];
  v: Tensor[];
  capacity: number;
  /** Positions filled so far. */
  length: number;
}

export function allocKVCache(model: Model, capacity: number): KVCache {
  const { kvHeads: Hkv, headDim: Dh } = model.spec;
  const gpu = model.gpu;
  return {
    k: model.layers.map((_, i) => gpu.tensor([capacity, Hkv * Dh], 'f32', `kcache${i}`)),
    v: model.layers.map((_, i) => gpu.tensor([capacity, Hkv * Dh], 'f32', `vcache${i}`)),
    capacity,
    length: 0,
  };
}

/**
 * Incremental forward for generation: the T tokens loaded in `ws` (B = 1, positions
 * cache.length ...) attend to the cache and to each other; their keys and values are appended.
 * The final hidden states land in ws.final.
 */
export function forwardCached(ws: Workspace, cache: KVCache): void {
  const { model } = ws;
  const gpu = model.gpu;
  const { heads: Hq, kvHeads: Hkv, headDim: Dh } = model.spec;
  const T = ws.T;
  if (ws.B !== 1) throw new Error('forwardCached runs one sequence at a time');
  if (cache.length + T > cache.capacity) throw new Error(`KV cache full: ${cache.length} + ${T} > ${cache.capacity} positions`);
  embeddingForward(gpu, ws.ids, model.embed.value, ws.resid[0]!, model.spec.embedScale);
  const rowBytes = Hkv * Dh * 4;
  for (let l = 0; l < model.layers.length; l++) {
    const layer = model.layers[l]!;
    const a = ws.actsFor(l);
    norm(gpu, model, ws.resid[l]!, layer.attnNorm, a.h1, a.rstd1);
    qkv(gpu, model, layer, a, ws.ones, ws.positions);
    gpu.copy(a.k, cache.k[l]!, T * rowBytes, 0, cache.length * rowBytes);
    gpu.copy(a.v, cache.v[l]!, T * rowBytes, 0, cache.length * rowBytes);
    const kvShape = [1, cache.capacity, Hkv, Dh];
    attentionForward(gpu, view(a.q, [1, T, Hq, Dh]), view(cache.k[l]!, kvShape), view(cache.v[l]!, kvShape), view(a.attn, [1, T, Hq, Dh]), null, {
      ...attnShape(model, layer, 1, T, null),
      kvLen: cache.length + T,
      kvCapacity: cache.capacity,
      qOffset: cache.length,
    });
    attnOutAndMlp(gpu, model, layer, a, ws.resid[l]!, ws.resid[l + 1]!, ws.ones);
  }
  norm(gpu, model, ws.resid[model.layers.length]!, model.finalNorm, ws.final, ws.rstdFinal);
  cache.length += T;
}
