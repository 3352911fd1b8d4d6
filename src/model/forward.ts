// Forward and backward passes of the transformer for training, and the incremental forward with a
// KV cache for generation. Activations live in a Workspace sized for one micro-batch shape; with
// `recompute`, only each layer's input is kept and the layer is run again during backward
// (activation checkpointing), so memory no longer grows with the number of layers' activations.
// lora_dropout masks are regenerated from counters (kernels/lora.ts), so a recomputed layer and its
// backward see the forward's masks.

import type { Gpu } from '../gpu/runtime';
import type { Tensor } from '../gpu/tensor';
import { gatedActForward, gatedActBackward } from '../kernels/act';
import { conv1dBackward, conv1dForward } from '../kernels/conv1d';
import { deltaRuleBackward, deltaRuleForward, deltaRuleRecurrent, type DeltaRuleShape } from '../kernels/delta-rule';
import { add, axpy, copyInto, scale } from '../kernels/elementwise';
import { deltaGatesBackward, deltaGatesForward } from '../kernels/gates';
import { attentionForward, attentionBackward, type AttentionShape } from '../kernels/attention';
import { embeddingForward, embeddingBackward } from '../kernels/embedding';
import type { LoraDropout } from '../kernels/lora';
import type { Weight } from '../kernels/matmul';
import { lmHeadCrossEntropy, logitsForRows, type TokenLoss } from '../kernels/loss';
import { addRmsNormForward, l2NormBackward, l2NormForward, rmsNormForward, rmsNormBackward, rmsNormGatedBackward, rmsNormGatedForward } from '../kernels/norm';
import { ropeForward, ropeBackward, type RopeOptions } from '../kernels/rope';
import {
  attentionActivationShapes, blockActivationShapes, DELTA_RULE_CHUNK, decodeStateShapes, deltaNetActivationShapes, gradientShapes, mambaActivationShapes, shortConvActivationShapes,
  streamShapes,
  type ShapeTable,
} from './activations';
import { mambaBackward, mambaForward, type MambaActs, type MambaGrads } from './mamba';
import { allocSiteSaved, onesFor, siteBackward, siteForward, type SiteSaved } from './linear';
import { siteOf, type Layer, type Model, type Param, type SiteKind } from './model';
import { shortConvBackward, shortConvForward, type ShortConvGrads, type ShortConvShape } from './short-conv';
import type { Mixer } from './spec';
import type { ImageGrid } from './vision';

/** The images of a micro-batch, in the order of their <|image_pad|> runs (row by row). */
export interface BatchImages {
  /** The processor's pixel values of all images, [patches, C * T * P * P]. */
  pixels: Float32Array;
  grids: ImageGrid[];
}

/** One micro-batch: B rows of S tokens. Labels are already shifted (labels[t] is the target after token t). */
export interface Batch {
  B: number;
  S: number;
  ids: Int32Array;
  labels: Int32Array;
  /** [B * S], or [3, B * S] (temporal, height, width) for a model with M-RoPE (mrope.ts). */
  positions: Int32Array;
  /** Vision-language models: the images whose embeddings replace the image tokens. */
  images?: BatchImages;
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

type AttentionActs = Tensors<ReturnType<typeof attentionActivationShapes>>;
type DeltaNetActs = Tensors<ReturnType<typeof deltaNetActivationShapes>>;
type ShortConvActs = Tensors<ReturnType<typeof shortConvActivationShapes>>;

type LayerActs = Tensors<ReturnType<typeof blockActivationShapes>> & {
  /** The token mixer's activations: attention's, Gated DeltaNet's or Mamba's, by the layer's kind. */
  attention: AttentionActs | null;
  deltaNet: DeltaNetActs | null;
  mamba: MambaActs | null;
  /** LFM2's short convolution's, on its conv layers. */
  shortConv: ShortConvActs | null;
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
  /** The loaded batch's images and the runs of image-token rows their embeddings fill. */
  private images: { images: BatchImages; runs: { row: number; length: number }[] } | null = null;

  constructor(readonly model: Model, readonly B: number, readonly S: number, readonly recompute: boolean, packed = false) {
    const gpu = model.gpu;
    this.T = B * S;
    const stream = streamShapes(model.spec, B, S, packed);
    this.resid = stream.resid.map((shape, i) => gpu.tensor(shape, 'f32', i < model.layers.length ? `resid${i}` : 'residFinal'));
    const makeActs = (mixer: Mixer): LayerActs => ({
      ...allocate(gpu, blockActivationShapes(model.spec, B, S)),
      attention: mixer === 'attention' ? allocate(gpu, attentionActivationShapes(model.spec, B, S)) : null,
      deltaNet: mixer === 'deltaNet' ? allocate(gpu, deltaNetActivationShapes(model.spec, B, S)) : null,
      mamba: mixer === 'mamba' ? allocate(gpu, mambaActivationShapes(model.spec, B, S)) : null,
      shortConv: mixer === 'shortConv' ? allocate(gpu, shortConvActivationShapes(model.spec, B, S)) : null,
      saved: {},
    });
    // with recomputation, layers of one mixer kind share one set
    const shared = new Map<Mixer, LayerActs>();
    const actsOf = (mixer: Mixer): LayerActs => {
      if (!recompute) return makeActs(mixer);
      let a = shared.get(mixer);
      if (!a) shared.set(mixer, (a = makeActs(mixer)));
      return a;
    };
    this.acts = model.layers.map((l) => actsOf(l.mixer));
    ({ final: this.final, rstdFinal: this.rstdFinal, loss: this.loss } = allocate(gpu, stream.f32));
    ({ ids: this.ids, labels: this.labels, positions: this.positions, segments: this.segments } = allocate(gpu, stream.i32, 'i32'));
    this.ones = onesFor(gpu, this.T);
  }

  loadedIds(): Int32Array {
    return this.hostIds;
  }

  actsFor(layer: number): LayerActs {
    return this.acts[layer]!;
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
    const positions = this.positionsFor(batch);
    const limit = this.model.spec.positionLimit;
    if (limit !== undefined) {
      const past = positions.findIndex((p) => p >= limit);
      if (past >= 0) throw new Error(`position ${positions[past]} (batch position ${past}) is beyond ${limit}: this model's longrope runs its short range (original_max_position_embeddings) only; lower cutoff_len`);
    }
    this.images = imageRuns(this.model, batch);
    this.hostIds = batch.ids;
    gpu.write(this.ids, batch.ids);
    gpu.write(this.labels, batch.labels);
    gpu.write(this.positions, positions);
    if (this.segments) {
      if (!batch.segments) throw new Error('this workspace is for packed batches: segment ids are required');
      gpu.write(this.segments, batch.segments);
    }
  }

  /**
   * The batch's positions as the workspace holds them. M-RoPE: [3, B * S]; a batch without images
   * may give [B * S], since get_rope_index makes the three components of text tokens equal.
   */
  private positionsFor(batch: Batch): Int32Array {
    const T = this.T;
    const mrope = this.model.spec.mrope !== null;
    if (mrope && batch.positions.length === T && !batch.images?.grids.length) {
      const out = new Int32Array(3 * T);
      for (let c = 0; c < 3; c++) out.set(batch.positions, c * T);
      return out;
    }
    const count = (mrope ? 3 : 1) * T;
    if (batch.positions.length !== count) {
      throw new Error(`batch positions have ${batch.positions.length} entries; this model needs ${count}${mrope ? ' ([3, B * S]: M-RoPE, as mrope.ts computes them for images)' : ''}`);
    }
    return batch.positions;
  }

  /** resid[0]'s rows at the image tokens := the vision tower's embeddings of the loaded images (transformers' masked_scatter). */
  placeImages(): void {
    if (!this.images) return;
    const { model } = this;
    const embeds = model.vision!.forward(this.images.images.pixels, this.images.images.grids);
    let from = 0;
    for (const { row, length } of this.images.runs) {
      copyInto(model.gpu, embeds, this.resid[0]!, { rows: length, cols: model.spec.hidden, srcOffset: from * model.spec.hidden, dstOffset: row * model.spec.hidden });
      from += length;
    }
    model.gpu.releaseAtFlush(embeds);
  }

  release(): void {
    const all: Tensor[] = [...this.resid, this.final, this.rstdFinal, this.loss, this.ones, this.ids, this.labels, this.positions];
    if (this.segments) all.push(this.segments);
    for (const { saved, attention, deltaNet, mamba, shortConv, ...acts } of new Set(this.acts)) {
      all.push(...allocated(acts), ...[attention, deltaNet, mamba, shortConv].flatMap((m) => (m ? allocated(m) : [])));
      for (const s of Object.values(saved)) if (s) all.push(...(Object.values(s).filter(Boolean) as Tensor[]));
    }
    if (this.grads) all.push(...allocated(this.grads));
    this.model.gpu.release(...all);
  }
}

/** The runs of image-token rows of a batch, checked against its images' token counts. */
function imageRuns(model: Model, batch: Batch): { images: BatchImages; runs: { row: number; length: number }[] } | null {
  const v = model.spec.vision;
  const images = batch.images;
  if (!v) {
    if (images?.grids.length) throw new Error('this model has no vision tower: a batch with images needs a vision-language model');
    return null;
  }
  const runs: { row: number; length: number }[] = [];
  batch.ids.forEach((id, i) => {
    if (id !== v.imageTokenId) return;
    const last = runs[runs.length - 1];
    if (last && last.row + last.length === i && i % batch.S !== 0) last.length++;
    else runs.push({ row: i, length: 1 });
  });
  const tokens = runs.reduce((n, r) => n + r.length, 0);
  const expected = (images?.grids ?? []).reduce((n, [t, h, w]) => n + (t * h * w) / (v.mergeSize * v.mergeSize), 0);
  if (tokens !== expected) {
    throw new Error(`batch has ${tokens} image tokens but its ${images?.grids.length ?? 0} image(s) give ${expected} embeddings (truncated by cutoff_len?)`);
  }
  return tokens ? { images: images!, runs } : null;
}

const view = (t: Tensor, shape: number[]): Tensor => ({ ...t, shape });

/** Rope options of the text model: M-RoPE's sections where it has them. */
const ropeOptions = (model: Model, layer: Layer): RopeOptions => {
  const scaling = model.spec.layers[layer.index]!.rope.attentionScaling;
  return { ...(model.spec.mrope ? { sections: model.spec.mrope } : {}), ...(scaling !== 1 ? { attentionScaling: scaling } : {}) };
};

function sv(gpu: Gpu, a: LayerActs, layer: Layer, kind: SiteKind): SiteSaved {
  const site = siteOf(layer, kind);
  if (!site.lora && !site.oft) return null;
  return (a.saved[kind] ??= allocSiteSaved(gpu, site, a.h1.shape[0]!));
}

/** lora_dropout of one training forward: the counters of the step; each LoRA site adds its own. */
export type LoraDropoutStep = Omit<LoraDropout, 'site'>;

/** The site whose mask a site uses: PEFT has one lora_dropout per module, so a fused module's parts share it (as they share lora_A). */
const FUSED_MODULE_FIRST: Partial<Record<SiteKind, SiteKind>> = { k_proj: 'q_proj', v_proj: 'q_proj', up_proj: 'gate_proj' };

/** Each site's dropout in a layer (undefined for all without `step`: evaluation, generation). */
function siteDropouts(model: Model, layer: Layer, step: LoraDropoutStep | undefined): (kind: SiteKind) => LoraDropout | undefined {
  // numbered over the kinds this model has (a Llama's 7 per layer, Qwen3.5's 12)
  const kinds = model.siteKinds();
  return (kind) => {
    if (!step) return undefined;
    const module = model.spec.fusedProjections ? FUSED_MODULE_FIRST[kind] ?? kind : kind;
    return { ...step, site: layer.index * kinds.length + kinds.indexOf(module) };
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

// A null norm (OLMo 2's blocks have no pre-norms) is the identity: y = x, its gradient passes through.
function norm(gpu: Gpu, model: Model, x: Tensor, p: Param | null, y: Tensor, rstd: Tensor): void {
  if (!p) return copyInto(gpu, x, y);
  rmsNormForward(gpu, x, p.value, y, rstd, { eps: model.spec.rmsEps, offset: model.spec.normOffset });
}

/** s = a + b, y = norm(s) in one dispatch (its backward is normBack accumulating into the residual's gradient). */
function addNorm(gpu: Gpu, model: Model, a: Tensor, b: Tensor, p: Param | null, s: Tensor, y: Tensor, rstd: Tensor): void {
  if (!p) {
    add(gpu, a, b, s);
    return copyInto(gpu, s, y);
  }
  addRmsNormForward(gpu, a, b, p.value, s, y, rstd, { eps: model.spec.rmsEps, offset: model.spec.normOffset });
}

/**
 * What ends a layer: its residual add fused with the norm that reads the sum next (the next
 * layer's input norm or the final norm), or nothing when the output is already kept (a layer
 * recomputed in backward).
 */
type LayerEnd = { norm: Param | null; y: Tensor; rstd: Tensor } | 'kept';

/** The norm after layer l in a full forward: layer l + 1's input norm, or the final norm. */
function endOf(ws: Workspace, l: number): LayerEnd {
  const { model } = ws;
  const next = model.layers[l + 1];
  if (!next) return { norm: model.finalNorm, y: ws.final, rstd: ws.rstdFinal };
  const a = ws.actsFor(l + 1);
  return { norm: next.attnNorm, y: a.h1, rstd: a.rstd1 };
}

function normBack(gpu: Gpu, model: Model, dy: Tensor, x: Tensor, p: Param | null, rstd: Tensor, dx: Tensor, accumulateDx: boolean): void {
  if (!p) return accumulateDx ? axpy(gpu, dy, dx, 1) : copyInto(gpu, dy, dx);
  rmsNormBackward(gpu, dy, x, p.value, rstd, dx, p.grad, { offset: model.spec.normOffset, accumulateDx, accumulateDw: true });
}

/**
 * y = site(x) for one of the layer's sites, with its saved activations and lora_dropout;
 * `withBias` false leaves the site's bias to the next kernel (RoPE adds q/k's).
 */
function siteFwd(
  gpu: Gpu, model: Model, layer: Layer, a: LayerActs, kind: SiteKind, x: Tensor, y: Tensor, ones: Tensor, drop?: LoraDropoutStep, withBias = true,
): void {
  siteForward(gpu, siteOf(layer, kind), x, y, sv(gpu, a, layer, kind), ones, siteDropouts(model, layer, drop)(kind), withBias);
}

/** siteFwd for one layer's sites, as the short convolution and Mamba-2 call them. */
const siteRunner = (model: Model, layer: Layer, a: LayerActs, ones: Tensor, drop?: LoraDropoutStep) => (kind: SiteKind, x: Tensor, y: Tensor) =>
  siteFwd(model.gpu, model, layer, a, kind, x, y, ones, drop);

function shortConvShape(model: Model, B: number, S: number, segments: Tensor | null): ShortConvShape {
  return { B, S, hidden: model.spec.hidden, kernel: model.spec.shortConv!.convKernel, segments };
}

/**
 * Attention inputs for one layer: q, k (normed, roped) and v, from the normed hidden state; Qwen3.5's
 * output gate beside q. Where nothing reads the raw projections between them (no q/k norms, no
 * gate interleaved with q), RoPE adds the q/k biases in its pass instead of the projections.
 */
function qkv(gpu: Gpu, model: Model, layer: Layer, a: LayerActs, at: AttentionActs, ones: Tensor, positions: Tensor, drop?: LoraDropoutStep): void {
  const { heads: Hq, kvHeads: Hkv, headDim: Dh } = model.spec;
  const T = a.h1.shape[0]!;
  const qkNorm = !!(layer.qNorm && layer.kNorm);
  const gated = !!(at.qGateRaw && at.outGate);
  const kBiasByRope = !qkNorm;
  const qBiasByRope = !qkNorm && !gated;
  if (gated) {
    siteFwd(gpu, model, layer, a, 'q_proj', a.h1, at.qGateRaw!, ones, drop);
    // per head: Dh query values, then Dh gate values
    copyInto(gpu, at.qGateRaw!, at.qRaw, { rows: T * Hq, cols: Dh, srcStride: 2 * Dh });
    copyInto(gpu, at.qGateRaw!, at.outGate!, { rows: T * Hq, cols: Dh, srcOffset: Dh, srcStride: 2 * Dh });
  } else {
    siteFwd(gpu, model, layer, a, 'q_proj', a.h1, at.qRaw, ones, drop, !qBiasByRope);
  }
  siteFwd(gpu, model, layer, a, 'k_proj', a.h1, at.kRaw, ones, drop, !kBiasByRope);
  siteFwd(gpu, model, layer, a, 'v_proj', a.h1, at.v, ones, drop);
  let qIn = at.qRaw, kIn = at.kRaw;
  if (qkNorm) {
    const [q, k] = qkNormRows(model, T);
    norm(gpu, model, view(at.qRaw, q), layer.qNorm!, view(at.qNormed!, q), view(at.rstdQ!, [q[0]!]));
    norm(gpu, model, view(at.kRaw, k), layer.kNorm!, view(at.kNormed!, k), view(at.rstdK!, [k[0]!]));
    qIn = at.qNormed!;
    kIn = at.kNormed!;
  }
  const qBias = qBiasByRope ? siteOf(layer, 'q_proj').bias : null;
  const kBias = kBiasByRope ? siteOf(layer, 'k_proj').bias : null;
  ropeForward(gpu, view(qIn, [T, Hq, Dh]), view(at.q, [T, Hq, Dh]), positions, layer.invFreq!, { ...ropeOptions(model, layer), ...(qBias ? { bias: qBias } : {}) });
  ropeForward(gpu, view(kIn, [T, Hkv, Dh]), view(at.k, [T, Hkv, Dh]), positions, layer.invFreq!, { ...ropeOptions(model, layer), ...(kBias ? { bias: kBias } : {}) });
}

/** The rows q_norm and k_norm normalise: each head's ([T * H, Dh]), or OLMo 2's whole projections ([T, H * Dh]). */
function qkNormRows(model: Model, T: number): [number[], number[]] {
  const { heads: Hq, kvHeads: Hkv, headDim: Dh } = model.spec;
  return model.spec.qkNormWhole ? [[T, Hq * Dh], [T, Hkv * Dh]] : [[T * Hq, Dh], [T * Hkv, Dh]];
}

/** What o_proj reads: the attention output, times sigmoid(gate) on Qwen3.5. */
function gatedOutput(gpu: Gpu, at: AttentionActs): Tensor {
  if (!at.outGate || !at.attnGated) return at.attn;
  gatedActForward(gpu, at.outGate, at.attn, at.attnGated, 'sigmoid');
  return at.attnGated;
}

/** Gated DeltaNet's recurrent state for generation: the conv's last K - 1 inputs and the delta rule's [Hv, Dk, Dv] memory. */
interface DeltaNetState {
  conv: Tensor;
  rule: Tensor;
}

/** transformers' l2norm eps for q and k of the delta rule. */
const QK_L2_EPS = 1e-6;

function ruleShape(model: Model, B: number, S: number): DeltaRuleShape {
  const d = model.spec.deltaNet!;
  return { batch: B, len: S, keyHeads: d.keyHeads, valueHeads: d.valueHeads, keyDim: d.keyDim, valueDim: d.valueDim, scale: 1 / Math.sqrt(d.keyDim) };
}

/**
 * Qwen3_5GatedDeltaNet on the normed hidden state a.h1, into a.oOut: in_proj_qkv -> causal conv1d +
 * SiLU -> q | k | v; l2-normed q, k; gates from in_proj_a / in_proj_b; the delta rule; RMSNormGated
 * with in_proj_z; out_proj. With a state (generation) both the conv and the rule continue from it;
 * without, they start from zeros (and packed segments each start afresh).
 */
function deltaNetForward(
  gpu: Gpu, model: Model, layer: Layer, a: LayerActs, dn: DeltaNetActs, B: number, S: number, ones: Tensor,
  ctx: { segments: Tensor | null; state: DeltaNetState | null; drop?: LoraDropoutStep | undefined },
): void {
  const d = model.spec.deltaNet!, p = layer.deltaNet!;
  const T = B * S, K = d.keyHeads * d.keyDim, V = d.valueHeads * d.valueDim, C = 2 * K + V, Hv = d.valueHeads;
  const { state, drop } = ctx;
  const segments = state ? null : ctx.segments;
  siteFwd(gpu, model, layer, a, 'in_proj_qkv', a.h1, dn.mixed, ones, drop);
  conv1dForward(gpu, { batch: B, len: S, channels: C, kernel: d.convKernel, segments }, dn.mixed, view(p.conv.value, [C, d.convKernel]), dn.conv, state?.conv ?? null);
  copyInto(gpu, dn.conv, dn.qRaw, { rows: T, cols: K, srcStride: C });
  copyInto(gpu, dn.conv, dn.kRaw, { rows: T, cols: K, srcOffset: K, srcStride: C });
  copyInto(gpu, dn.conv, dn.v, { rows: T, cols: V, srcOffset: 2 * K, srcStride: C });
  l2NormForward(gpu, dn.qRaw, d.keyDim, dn.q, dn.rq, { eps: QK_L2_EPS });
  l2NormForward(gpu, dn.kRaw, d.keyDim, dn.k, dn.rk, { eps: QK_L2_EPS });
  siteFwd(gpu, model, layer, a, 'in_proj_a', a.h1, dn.aProj, ones, drop);
  siteFwd(gpu, model, layer, a, 'in_proj_b', a.h1, dn.bProj, ones, drop);
  deltaGatesForward(gpu, Hv, dn.aProj, dn.bProj, p.aLog.value, p.dtBias.value, dn.g, dn.beta);
  const inputs = { q: dn.q, k: dn.k, v: dn.v, g: dn.g, beta: dn.beta };
  if (state && S === 1) deltaRuleRecurrent(gpu, ruleShape(model, B, S), inputs, dn.core, state.rule);
  else deltaRuleForward(gpu, ruleShape(model, B, S), inputs, dn.core, { chunk: DELTA_RULE_CHUNK, state: state?.rule ?? null, saved: state ? null : dn.ruleSaved, segments });
  siteFwd(gpu, model, layer, a, 'in_proj_z', a.h1, dn.z, ones, drop);
  const heads = (t: Tensor) => view(t, [T * Hv, d.valueDim]);
  rmsNormGatedForward(gpu, heads(dn.core), heads(dn.z), p.norm.value, heads(dn.normed), dn.rstdGated, { eps: model.spec.rmsEps });
  siteFwd(gpu, model, layer, a, 'out_proj', dn.normed, a.oOut, ones, drop);
}

/** Everything after the token mixer's output a.oOut: residual + MLP norm, MLP, and (per `end`) the residual with the next norm. */
function residAndMlp(gpu: Gpu, model: Model, layer: Layer, a: LayerActs, xIn: Tensor, xOut: Tensor, end: LayerEnd, ones: Tensor, drop?: LoraDropoutStep): void {
  const rs = model.spec.residualScale;
  let r = a.oOut;
  if (layer.attnPostNorm) {
    norm(gpu, model, a.oOut, layer.attnPostNorm, a.oNormed!, a.rstdPostAttn!);
    r = a.oNormed!;
  }
  // Granite's residual_multiplier, in place: nothing reads the branch output again
  if (rs !== 1) scale(gpu, r, rs, r);
  addNorm(gpu, model, xIn, r, layer.mlpNorm, a.xMid, a.h2, a.rstd2);
  if (layer.sites.input_linear) {
    // Granite 4's shared_mlp: input_linear's rows are gate, then up
    const I = model.spec.intermediate, T = a.h2.shape[0]!;
    siteFwd(gpu, model, layer, a, 'input_linear', a.h2, a.gateUp!, ones, drop);
    copyInto(gpu, a.gateUp!, a.gate, { rows: T, cols: I, srcStride: 2 * I });
    copyInto(gpu, a.gateUp!, a.up, { rows: T, cols: I, srcOffset: I, srcStride: 2 * I });
  } else {
    siteFwd(gpu, model, layer, a, 'gate_proj', a.h2, a.gate, ones, drop);
    siteFwd(gpu, model, layer, a, 'up_proj', a.h2, a.up, ones, drop);
  }
  gatedActForward(gpu, a.gate, a.up, a.act, model.spec.act);
  siteFwd(gpu, model, layer, a, layer.sites.output_linear ? 'output_linear' : 'down_proj', a.act, a.down, ones, drop);
  let r2 = a.down;
  if (layer.mlpPostNorm) {
    norm(gpu, model, a.down, layer.mlpPostNorm, a.downNormed!, a.rstdPostMlp!);
    r2 = a.downNormed!;
  }
  if (rs !== 1) scale(gpu, r2, rs, r2);
  if (end !== 'kept') addNorm(gpu, model, a.xMid, r2, end.norm, xOut, end.y, end.rstd);
}

/** Layer l from its normed input (a.h1, a.rstd1: written by the previous layer's end, or the caller). */
function layerForward(ws: Workspace, l: number, drop: LoraDropoutStep | undefined, end: LayerEnd): void {
  const { model } = ws;
  const gpu = model.gpu;
  const layer = model.layers[l]!;
  const a = ws.actsFor(l);
  const xIn = ws.resid[l]!;
  const [B, S] = [ws.B, ws.S];
  if (a.deltaNet) {
    deltaNetForward(gpu, model, layer, a, a.deltaNet, B, S, ws.ones, { segments: ws.segments, state: null, drop });
  } else if (a.mamba) {
    mambaForward(gpu, model, layer, a.mamba, a.h1, a.oOut, B, S, { site: siteRunner(model, layer, a, ws.ones, drop), state: null, segments: ws.segments });
  } else if (a.shortConv) {
    shortConvForward(gpu, shortConvShape(model, B, S, ws.segments), layer.shortConv!, a.h1, a.shortConv, a.oOut, siteRunner(model, layer, a, ws.ones, drop), null);
  } else {
    const at = a.attention!;
    qkv(gpu, model, layer, a, at, ws.ones, ws.positions, drop);
    const { heads: Hq, kvHeads: Hkv, headDim: Dh } = model.spec;
    attentionForward(gpu, view(at.q, [B, S, Hq, Dh]), view(at.k, [B, S, Hkv, Dh]), view(at.v, [B, S, Hkv, Dh]), view(at.attn, [B, S, Hq, Dh]), at.lse,
      attnShape(model, layer, B, S, ws.segments));
    siteFwd(gpu, model, layer, a, 'o_proj', gatedOutput(gpu, at), a.oOut, ws.ones, drop);
  }
  residAndMlp(gpu, model, layer, a, xIn, ws.resid[l + 1]!, end, ws.ones, drop);
}

/** The norm that reads the embeddings in resid[0]: layer 0's input norm (the final norm without layers). */
function normEmbeddings(ws: Workspace): void {
  const { model } = ws;
  const first = model.layers[0];
  if (!first) return norm(model.gpu, model, ws.resid[0]!, model.finalNorm, ws.final, ws.rstdFinal);
  norm(model.gpu, model, ws.resid[0]!, first.attnNorm, ws.actsFor(0).h1, ws.actsFor(0).rstd1);
}

/** Every layer and the final norm, from the embeddings in resid[0]. */
function forwardLayers(ws: Workspace, drop: LoraDropoutStep | undefined): void {
  normEmbeddings(ws);
  for (let l = 0; l < ws.model.layers.length; l++) layerForward(ws, l, drop, endOf(ws, l));
}

/**
 * Granite's logits_scaling divides the logits: the final hidden state is divided instead, just
 * before the lm_head (a value head reads it undivided, as trl's does).
 */
function scaleForLogits(ws: Workspace): void {
  const s = ws.model.spec.logitsScale;
  if (s !== 1) scale(ws.model.gpu, ws.final, 1 / s, ws.final);
}

/** Layer l's activations again for its backward; its output is kept in resid[l + 1]. */
function recomputeLayer(ws: Workspace, l: number, drop: LoraDropoutStep | undefined): void {
  const { model } = ws;
  const a = ws.actsFor(l);
  norm(model.gpu, model, ws.resid[l]!, model.layers[l]!.attnNorm, a.h1, a.rstd1);
  layerForward(ws, l, drop, 'kept');
}

/** Gradient of the layer's output arrives in g.dResid; on return g.dResid holds the gradient of its input. */
function layerBackward(ws: Workspace, l: number, g: Grads, drop: LoraDropoutStep | undefined): void {
  const { model } = ws;
  const gpu = model.gpu;
  const layer = model.layers[l]!;
  const a = ws.actsFor(l);
  const xIn = ws.resid[l]!;
  const dropout = siteDropouts(model, layer, drop);
  const back = (kind: SiteKind, x: Tensor, dy: Tensor, dx: Tensor, accumulateDx: boolean) =>
    siteBackward(gpu, siteOf(layer, kind), x, dy, dx, sv(gpu, a, layer, kind), ws.ones, { accumulateDx, accumulateGrads: true, dropout: dropout(kind) });

  // MLP branch: xOut = xMid + post(down(act(gate(h2)) * up(h2)))
  // (Granite's residual_multiplier and the Gemma post-norms are never both present: both use dTmp)
  const rs = model.spec.residualScale;
  const dBranch = (): Tensor => {
    if (rs === 1) return g.dResid;
    scale(gpu, g.dResid, rs, g.dTmp);
    return g.dTmp;
  };
  let dDown = dBranch();
  if (layer.mlpPostNorm) {
    normBack(gpu, model, g.dResid, a.down, layer.mlpPostNorm, a.rstdPostMlp!, g.dTmp, false);
    dDown = g.dTmp;
  }
  back(layer.sites.output_linear ? 'output_linear' : 'down_proj', a.act, dDown, g.dAct, false);
  gatedActBackward(gpu, g.dAct, a.gate, a.up, g.dGate, g.dUp, model.spec.act);
  if (layer.sites.input_linear) {
    const I = model.spec.intermediate, T = ws.T;
    copyInto(gpu, g.dGate, g.dGateUp!, { rows: T, cols: I, dstStride: 2 * I });
    copyInto(gpu, g.dUp, g.dGateUp!, { rows: T, cols: I, dstOffset: I, dstStride: 2 * I });
    back('input_linear', a.h2, g.dGateUp!, g.dH, false);
  } else {
    back('gate_proj', a.h2, g.dGate, g.dH, false);
    back('up_proj', a.h2, g.dUp, g.dH, true);
  }
  normBack(gpu, model, g.dH, a.xMid, layer.mlpNorm, a.rstd2, g.dResid, true);

  // token mixer branch: xMid = xIn + post(mixer(h1)); the mixer's input gradient is summed into g.dH
  let dO = dBranch();
  if (layer.attnPostNorm) {
    normBack(gpu, model, g.dResid, a.oOut, layer.attnPostNorm, a.rstdPostAttn!, g.dTmp, false);
    dO = g.dTmp;
  }
  if (a.deltaNet) deltaNetBackward(ws, layer, a, a.deltaNet, g, dO, back);
  else if (a.mamba) mambaBackward(gpu, model, layer, a.mamba, a.h1, dO, g.dH, ws.B, ws.S, ws.segments, mambaGrads(g), back);
  else if (a.shortConv) shortConvBackward(gpu, shortConvShape(model, ws.B, ws.S, ws.segments), layer.shortConv!, a.h1, a.shortConv, dO, shortConvGrads(g), g.dH, back);
  else attentionBackwardOf(ws, layer, a, a.attention!, g, dO, back);
  normBack(gpu, model, g.dH, xIn, layer.attnNorm, a.rstd1, g.dResid, true);
}

/** The short convolution's part of the backward's working set (allocated when the model has such layers). */
const shortConvGrads = (g: Grads): ShortConvGrads => ({
  dScY: g.dScY!, dScConv: g.dScConv!, dScBx: g.dScBx!, dScB: g.dScB!, dScC: g.dScC!, dScX: g.dScX!, dScBcx: g.dScBcx!, dScW: g.dScW!,
});

type SiteBack = (kind: SiteKind, x: Tensor, dy: Tensor, dx: Tensor, accumulateDx: boolean) => void;

function mambaGrads(g: Grads): MambaGrads {
  return {
    proj: g.mdProj!, normed: g.mdNormed!, gated: g.mdGated!, y: g.mdY!, z: g.mdZ!, x: g.mdX!, dt: g.mdDt!, Bm: g.mdBm!, Cm: g.mdCm!,
    xbc: g.mdXbc!, xbcIn: g.mdXbcIn!, convW: g.mdConvW!, convBias: g.mdConvBias!, aLog: g.mdALog!, dtBias: g.mdDtBias!, D: g.mdD!,
  };
}

/** o_proj(gate · attention(rope(norm(q)), rope(norm(k)), v)) backward to g.dH (overwritten). */
function attentionBackwardOf(ws: Workspace, layer: Layer, a: LayerActs, at: AttentionActs, g: Grads, dO: Tensor, back: SiteBack): void {
  const { model } = ws;
  const gpu = model.gpu;
  const { heads: Hq, kvHeads: Hkv, headDim: Dh } = model.spec;
  const [B, S, T] = [ws.B, ws.S, ws.T];
  if (at.outGate && at.attnGated) {
    back('o_proj', at.attnGated, dO, g.dAttnGated!, false);
    gatedActBackward(gpu, g.dAttnGated!, at.outGate, at.attn, g.dOutGate!, g.dAttn, 'sigmoid');
  } else {
    back('o_proj', at.attn, dO, g.dAttn, false);
  }
  attentionBackward(gpu, view(g.dAttn, [B, S, Hq, Dh]), view(at.q, [B, S, Hq, Dh]), view(at.k, [B, S, Hkv, Dh]), view(at.v, [B, S, Hkv, Dh]),
    view(at.attn, [B, S, Hq, Dh]), at.lse, view(g.dQ, [B, S, Hq, Dh]), view(g.dK, [B, S, Hkv, Dh]), view(g.dV, [B, S, Hkv, Dh]),
    attnShape(model, layer, B, S, ws.segments));
  ropeBackward(gpu, view(g.dQ, [T, Hq, Dh]), view(g.dQ, [T, Hq, Dh]), ws.positions, layer.invFreq!, ropeOptions(model, layer));
  ropeBackward(gpu, view(g.dK, [T, Hkv, Dh]), view(g.dK, [T, Hkv, Dh]), ws.positions, layer.invFreq!, ropeOptions(model, layer));
  let dQ = g.dQ, dK = g.dK;
  if (layer.qNorm && layer.kNorm) {
    const [q, k] = qkNormRows(model, T);
    normBack(gpu, model, view(g.dQ, q), view(at.qRaw, q), layer.qNorm, view(at.rstdQ!, [q[0]!]), view(g.dQ2!, q), false);
    normBack(gpu, model, view(g.dK, k), view(at.kRaw, k), layer.kNorm, view(at.rstdK!, [k[0]!]), view(g.dK2!, k), false);
    dQ = g.dQ2!;
    dK = g.dK2!;
  }
  if (at.outGate) {
    // back into q_proj's layout: per head, Dh query rows then Dh gate rows
    copyInto(gpu, dQ, g.dQGate!, { rows: T * Hq, cols: Dh, dstStride: 2 * Dh });
    copyInto(gpu, g.dOutGate!, g.dQGate!, { rows: T * Hq, cols: Dh, dstOffset: Dh, dstStride: 2 * Dh });
    dQ = g.dQGate!;
  }
  back('q_proj', a.h1, dQ, g.dH, false);
  back('k_proj', a.h1, dK, g.dH, true);
  back('v_proj', a.h1, g.dV, g.dH, true);
}

/** deltaNetForward's backward to g.dH (overwritten); the conv, gate and norm parameters' gradients are added where they have them. */
function deltaNetBackward(ws: Workspace, layer: Layer, a: LayerActs, dn: DeltaNetActs, g: Grads, dO: Tensor, back: SiteBack): void {
  const { model } = ws;
  const gpu = model.gpu;
  const d = model.spec.deltaNet!, p = layer.deltaNet!;
  const T = ws.T, K = d.keyHeads * d.keyDim, V = d.valueHeads * d.valueDim, C = 2 * K + V, Hv = d.valueHeads;
  const heads = (t: Tensor) => view(t, [T * Hv, d.valueDim]);
  back('out_proj', dn.normed, dO, g.dNormed!, false);
  rmsNormGatedBackward(gpu, heads(g.dNormed!), heads(dn.core), heads(dn.z), p.norm.value, dn.rstdGated, heads(g.dCore!), heads(g.dZ!), p.norm.grad,
    { accumulateDw: true });
  back('in_proj_z', a.h1, g.dZ!, g.dH, false);
  deltaRuleBackward(gpu, ruleShape(model, ws.B, ws.S), { q: dn.q, k: dn.k, v: dn.v, g: dn.g, beta: dn.beta }, dn.ruleSaved, DELTA_RULE_CHUNK, g.dCore!,
    { dq: g.dDq!, dk: g.dDk!, dv: g.dDv!, dg: g.dG!, dbeta: g.dBeta! });
  const paramGrads = p.aLog.grad && p.dtBias.grad ? { dALog: p.aLog.grad, dDtBias: p.dtBias.grad, accumulate: true } : null;
  deltaGatesBackward(gpu, Hv, g.dG!, g.dBeta!, dn.aProj, dn.bProj, p.aLog.value, p.dtBias.value, g.dA!, g.dB!, paramGrads);
  back('in_proj_a', a.h1, g.dA!, g.dH, true);
  back('in_proj_b', a.h1, g.dB!, g.dH, true);
  l2NormBackward(gpu, g.dDq!, dn.qRaw, d.keyDim, dn.rq, g.dQRaw!);
  l2NormBackward(gpu, g.dDk!, dn.kRaw, d.keyDim, dn.rk, g.dKRaw!);
  copyInto(gpu, g.dQRaw!, g.dConv!, { rows: T, cols: K, dstStride: C });
  copyInto(gpu, g.dKRaw!, g.dConv!, { rows: T, cols: K, dstOffset: K, dstStride: C });
  copyInto(gpu, g.dDv!, g.dConv!, { rows: T, cols: V, dstOffset: 2 * K, dstStride: C });
  const convW = view(p.conv.value, [C, d.convKernel]);
  const shape = { batch: ws.B, len: ws.S, channels: C, kernel: d.convKernel, segments: ws.segments };
  conv1dBackward(gpu, shape, g.dConv!, dn.mixed, convW, g.dMixed!, p.conv.grad ? g.dConvW! : null);
  if (p.conv.grad) axpy(gpu, g.dConvW!, view(p.conv.grad, [C, d.convKernel]), 1);
  back('in_proj_qkv', a.h1, g.dMixed!, g.dH, true);
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
   * head on each sequence's last token). ws.final is then the final norm's output, not divided by
   * Granite's logits_scaling.
   */
  head?: (dFinal: Tensor) => void;
  /**
   * With backward: after the lm_head loss wrote its d loss / d ws.final, adds a second head's
   * gradient to it (PPO's value head beside the policy's token loss).
   */
  addHead?: (dFinal: Tensor) => void;
  /** The lm_head token loss (default cross-entropy): DFT, EAFT, ASFT, label smoothing. */
  tokenLoss?: TokenLoss;
  /** ASFT: the reference model's ws.final [T, D] for this batch (see referenceFinal()). */
  referenceFinal?: Tensor;
  /** ASFT: the reference's lm_head where the run trains the head (default: the model's). */
  referenceHead?: Weight;
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
    ws.placeImages();
    forwardLayers(ws, opts.loraDropout);
    if (!opts.head) scaleForLogits(ws);
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
      ...(opts.referenceFinal ? { referenceH: opts.referenceFinal } : {}),
      ...(opts.referenceHead ? { referenceW: opts.referenceHead } : {}),
    });
    if (g) opts.addHead?.(g.dFinal);
  }
  if (!g) return;
  if (!opts.head && s.logitsScale !== 1) scale(gpu, g.dFinal, 1 / s.logitsScale, g.dFinal);
  normBack(gpu, model, g.dFinal, ws.resid[model.layers.length]!, model.finalNorm, ws.rstdFinal, g.dResid, false);
  for (let l = model.layers.length - 1; l >= 0; l--) {
    if (ws.recompute) recomputeLayer(ws, l, opts.loraDropout);
    layerBackward(ws, l, g, opts.loraDropout);
  }
  if (model.embed.grad) embeddingBackward(gpu, ws.loadedIds(), g.dResid, model.embed.grad, s.embedScale, true);
}

/**
 * The final hidden states [T, D] the lm_head reads (scaled for the logits) of a forward of the
 * loaded batch, copied out: ASFT's reference (run it with the adapter switched off). The caller
 * releases the tensor.
 */
export function referenceFinal(ws: Workspace): Tensor {
  const gpu = ws.model.gpu;
  embeddingForward(gpu, ws.ids, ws.model.embed.value, ws.resid[0]!, ws.model.spec.embedScale);
  ws.placeImages();
  forwardLayers(ws, undefined);
  scaleForLogits(ws);
  const out = gpu.tensor([...ws.final.shape], 'f32', 'reference_final');
  gpu.copy(ws.final, out);
  return out;
}

/** Logits [T, V] for every position (tests, evaluation on small vocabularies). */
export function fullLogits(ws: Workspace, out: Tensor): void {
  const { model } = ws;
  const gpu = model.gpu;
  embeddingForward(gpu, ws.ids, model.embed.value, ws.resid[0]!, model.spec.embedScale);
  ws.placeImages();
  forwardLayers(ws, undefined);
  scaleForLogits(ws);
  const softcap = model.spec.finalSoftcap;
  logitsForRows(gpu, ws.final, model.lmHead.weight, out, softcap ? { softcap } : {});
}

/**
 * What generation keeps of one sequence: keys and values of each attention layer ([capacity,
 * Hkv * Dh] each), the conv and recurrent state of each Gated DeltaNet or Mamba layer, the conv
 * state of each LFM2 short-convolution layer (null where the layer has another kind).
 */
export interface KVCache {
  k: (Tensor | null)[];
  v: (Tensor | null)[];
  /** [K - 1, C]: the conv's last inputs (Gated DeltaNet's q/k/v channels, Mamba-2's x, B, C, or LFM2's B * x). */
  conv: (Tensor | null)[];
  /** [Hv, Dk, Dv]: the delta rule's memory; [H, N, P]: Mamba-2's scan state. */
  rule: (Tensor | null)[];
  capacity: number;
  /** Positions filled so far. */
  length: number;
}

/** A cache of `capacity` positions for each of `sequences` sequences (several: attention layers only). */
export function allocKVCache(model: Model, capacity: number, sequences = 1): KVCache {
  const gpu = model.gpu;
  if (sequences > 1 && model.layers.some((l) => l.mixer !== 'attention')) throw new Error('a key/value cache for several sequences needs a model of attention layers only (this one has recurrent layers)');
  const shapes = decodeStateShapes(model.spec, capacity, sequences);
  const buffers = (part: 'k' | 'v' | 'conv' | 'rule', name: string) =>
    shapes.map((l, i) => (l[part] ? gpu.tensor(l[part], 'f32', `${name}${i}`) : null));
  const cache: KVCache = {
    k: buffers('k', 'kcache'),
    v: buffers('v', 'vcache'),
    conv: buffers('conv', 'convstate'),
    rule: buffers('rule', 'rulestate'),
    capacity,
    length: 0,
  };
  clearRecurrentState(model, cache);
  return cache;
}

/** Rows of the cache's key/value buffers (sequences * capacity). */
const cacheRows = (cache: KVCache): number => cache.k.find((t) => t !== null)?.shape[0] ?? cache.capacity;

/** Whether the cache holds recurrent state, which cannot be rewound to an earlier position. */
export const hasRecurrentState = (cache: KVCache): boolean => cache.conv.some((t) => t !== null);

/** Zeroes the Gated DeltaNet, short-convolution and Mamba layers' state (a sequence starting from position 0). */
export function clearRecurrentState(model: Model, cache: KVCache): void {
  for (const t of [...cache.conv, ...cache.rule]) if (t) model.gpu.zero(t);
}

/** Every buffer of the cache. */
export const cacheTensors = (cache: KVCache): Tensor[] => [...cache.k, ...cache.v, ...cache.conv, ...cache.rule].filter((t): t is Tensor => t !== null);

/**
 * Incremental forward for generation: the S tokens of each of the ws.B sequences loaded in `ws`
 * (positions cache.length ...) attend to their sequence's cache and to each other; their keys and
 * values are appended, and the recurrent (Gated DeltaNet, short-convolution, Mamba) layers carry their
 * state on (one sequence only).
 * With B sequences the cache holds B * capacity rows, sequence b's from b * capacity (beam search
 * runs its beams so). The final hidden states land in ws.final.
 */
export function forwardCached(ws: Workspace, cache: KVCache): void {
  const { model } = ws;
  const gpu = model.gpu;
  const { heads: Hq, kvHeads: Hkv, headDim: Dh } = model.spec;
  const [B, T] = [ws.B, ws.S];
  if (B > 1 && hasRecurrentState(cache)) throw new Error('forwardCached: recurrent (Gated DeltaNet, short-convolution, Mamba) layers run one sequence at a time');
  if (cacheRows(cache) < B * cache.capacity) throw new Error(`forwardCached: a cache of ${cacheRows(cache)} rows does not hold ${B} sequences of ${cache.capacity}`);
  if (cache.length + T > cache.capacity) throw new Error(`KV cache full: ${cache.length} + ${T} > ${cache.capacity} positions`);
  embeddingForward(gpu, ws.ids, model.embed.value, ws.resid[0]!, model.spec.embedScale);
  ws.placeImages();
  const rowBytes = Hkv * Dh * 4;
  normEmbeddings(ws);
  for (let l = 0; l < model.layers.length; l++) {
    const layer = model.layers[l]!;
    const a = ws.actsFor(l);
    if (a.deltaNet) {
      deltaNetForward(gpu, model, layer, a, a.deltaNet, 1, T, ws.ones, { segments: null, state: { conv: cache.conv[l]!, rule: cache.rule[l]! } });
    } else if (a.mamba) {
      mambaForward(gpu, model, layer, a.mamba, a.h1, a.oOut, 1, T, { site: siteRunner(model, layer, a, ws.ones), state: { conv: cache.conv[l]!, ssd: cache.rule[l]! }, segments: null });
    } else if (a.shortConv) {
      shortConvForward(gpu, shortConvShape(model, 1, T, null), layer.shortConv!, a.h1, a.shortConv, a.oOut, siteRunner(model, layer, a, ws.ones), cache.conv[l]!);
    } else {
      const at = a.attention!;
      const kc = cache.k[l]!, vc = cache.v[l]!;
      qkv(gpu, model, layer, a, at, ws.ones, ws.positions);
      for (let b = 0; b < B; b++) {
        const at0 = (b * cache.capacity + cache.length) * rowBytes;
        gpu.copy(at.k, kc, T * rowBytes, b * T * rowBytes, at0);
        gpu.copy(at.v, vc, T * rowBytes, b * T * rowBytes, at0);
      }
      const kvShape = [B, cache.capacity, Hkv, Dh];
      attentionForward(gpu, view(at.q, [B, T, Hq, Dh]), view(kc, kvShape), view(vc, kvShape), view(at.attn, [B, T, Hq, Dh]), null, {
        ...attnShape(model, layer, B, T, null),
        kvLen: cache.length + T,
        kvCapacity: cache.capacity,
        qOffset: cache.length,
      });
      siteFwd(gpu, model, layer, a, 'o_proj', gatedOutput(gpu, at), a.oOut, ws.ones);
    }
    residAndMlp(gpu, model, layer, a, ws.resid[l]!, ws.resid[l + 1]!, endOf(ws, l), ws.ones);
  }
  scaleForLogits(ws);
  cache.length += T;
}
