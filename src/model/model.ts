// A decoder-only transformer on the GPU: the weights of one loaded checkpoint, arranged by layer,
// with every linear layer as a LinearSite (so LoRA, DoRA, quantized and trainable weights plug in
// the same way). Computation lives in forward.ts; this module owns structure and loading.

import type { Gpu } from '../gpu/runtime';
import type { Tensor } from '../gpu/tensor';
import { weightParts, type Weight } from '../kernels/matmul';
import { ropeInvFreq } from '../kernels/rope';
import { parseHfConfig } from './hf-config';
import type { LinearSite } from './linear';
import { specFromConfig, type Mixer, type ModelSpec } from './spec';
import { VisionTower } from './vision';
import { Checkpoint, finalNormName, layerNames, uploadMatrix, uploadTensor, type ModelFiles, type WeightFormat } from './weights';

/** A weight that is not a linear layer (norm, embedding), with its gradient when trainable. */
export interface Param {
  name: string;
  value: Tensor;
  grad: Tensor | null;
}

export type SiteKind =
  | 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj'
  | 'in_proj_qkv' | 'in_proj_z' | 'in_proj_b' | 'in_proj_a' | 'in_proj' | 'out_proj'
  | 'gate_proj' | 'up_proj' | 'down_proj' | 'input_linear' | 'output_linear';
/**
 * The roles of linear modules, in module order: attention, Gated DeltaNet (Qwen3.5), short
 * convolution (LFM2: in_proj, out_proj) or Mamba-2 (Granite 4: in_proj, out_proj), MLP (Granite 4's
 * shared_mlp: input_linear, output_linear). Most checkpoints name the modules so; LFM2 names its
 * attention output out_proj and its MLP w1 (gate), w3 (up), w2 (down): a site's `name` is the
 * checkpoint's (and PEFT's) module path either way.
 */
export const SITE_KINDS: readonly SiteKind[] = [
  'q_proj', 'k_proj', 'v_proj', 'o_proj', 'in_proj_qkv', 'in_proj_z', 'in_proj_b', 'in_proj_a', 'in_proj', 'out_proj', 'gate_proj', 'up_proj', 'down_proj',
  'input_linear', 'output_linear',
];
/** Phi-3 stores q/k/v as one qkv_proj (rows q, k, v) and gate/up as one gate_up_proj (gate rows first). */
export const FUSED_MODULE_KINDS = ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj'] as const;

/**
 * One linear module of the checkpoint: a single site, or a fused module (Phi-3's qkv_proj,
 * gate_up_proj) whose output rows are computed by several sites, split at load.
 */
export interface ModuleRef {
  /** HF module path, as in the checkpoint and in PEFT keys ("model.layers.0.self_attn.qkv_proj"). */
  name: string;
  /** Its last path component (q_proj ... down_proj, qkv_proj, gate_up_proj). */
  kind: string;
  layer: number;
  inFeatures: number;
  outFeatures: number;
  /** The sites computing its output rows, in row order, with the first row each one computes. */
  parts: { site: LinearSite; row: number }[];
}

/** The per-head and per-channel parameters of a Gated DeltaNet layer (its linear modules are sites). */
export interface DeltaNetParams {
  /** conv1d.weight [C, 1, K] as stored (the kernel reads it as [C, K]). */
  conv: Param;
  aLog: Param;
  dtBias: Param;
  /** RMSNormGated's weight [Dv] (plain w, not 1 + w). */
  norm: Param;
}

/** The per-head and per-channel parameters of a Mamba-2 layer (its in_proj and out_proj are sites). */
export interface MambaParams {
  /** conv1d.weight [C, 1, K] as stored (the kernel reads it as [C, K]), C = width + 2 * groups * stateDim. */
  conv: Param;
  convBias: Param | null;
  aLog: Param;
  dtBias: Param;
  D: Param;
  /** The gated RMSNorm's weight [width]. */
  norm: Param;
}

/** LFM2's short-convolution taps (its in_proj and out_proj are sites). */
export interface ShortConvParams {
  /** conv.weight [D, 1, K] as stored (the kernel reads it as [D, K]). */
  conv: Param;
}

export interface Layer {
  index: number;
  mixer: Mixer;
  /** Null where the block has no norm before its mixer / MLP (OLMo 2). */
  attnNorm: Param | null;
  attnPostNorm: Param | null;
  mlpNorm: Param | null;
  mlpPostNorm: Param | null;
  qNorm: Param | null;
  kNorm: Param | null;
  /** q/k/v/o_proj on attention layers, in_proj_* and out_proj on Gated DeltaNet layers; the MLP's on all. */
  sites: Partial<Record<SiteKind, LinearSite>>;
  deltaNet: DeltaNetParams | null;
  mamba: MambaParams | null;
  shortConv: ShortConvParams | null;
  window: number | null;
  /** Rope frequencies of an attention layer; null on Gated DeltaNet layers. */
  invFreq: Tensor | null;
}

/** The site of a kind a layer must have. */
export function siteOf(layer: Layer, kind: SiteKind): LinearSite {
  const s = layer.sites[kind];
  if (!s) throw new Error(`layer ${layer.index} (${layer.mixer}) has no ${kind}`);
  return s;
}

/** A layer's non-linear parameters (norms, Gated DeltaNet's conv and gates, LFM2's conv taps), in checkpoint order. */
export function layerParams(l: Layer): Param[] {
  const d = l.deltaNet, m = l.mamba;
  const all = [
    l.attnNorm, l.qNorm, l.kNorm, l.attnPostNorm, l.mlpNorm, l.mlpPostNorm, ...(d ? [d.conv, d.aLog, d.dtBias, d.norm] : []),
    ...(m ? [m.conv, m.convBias, m.aLog, m.dtBias, m.D, m.norm] : []), ...(l.shortConv ? [l.shortConv.conv] : []),
  ];
  return all.filter((p): p is Param => p !== null);
}

export interface LoadOptions {
  /** Storage of the base linear weights: f32, f16 (packed pairs, any device), or quantized on upload. */
  format?: WeightFormat;
  onProgress?: (loadedTensors: number, totalTensors: number, name: string) => void;
}

export class Model {
  private kinds: readonly SiteKind[] | null = null;

  private constructor(
    readonly gpu: Gpu,
    readonly spec: ModelSpec,
    readonly config: Record<string, unknown>,
    readonly embed: Param,
    readonly layers: Layer[],
    readonly finalNorm: Param,
    /** The output projection; the same tensor as embed.value when embeddings are tied. */
    readonly lmHead: { weight: Weight; grad: Tensor | null; tied: boolean },
    readonly format: WeightFormat,
    /** A vision-language checkpoint's (frozen) vision tower and merger; null for text-only models. */
    readonly vision: VisionTower | null,
  ) {}

  static async load(gpu: Gpu, files: ModelFiles, opts: LoadOptions = {}): Promise<Model> {
    const config = parseHfConfig(await files.readText('config.json'), `${files.name}/config.json`);
    const spec = specFromConfig(config, `${files.name}/config.json`);
    const ckpt = await Checkpoint.open(files);
    const format = baseFormat(opts.format ?? 'f32', ckpt);
    const { hidden: D, heads: Hq, kvHeads: Hkv, headDim: Dh, intermediate: I, vocab: V } = spec;
    const mixerTensors = { attention: 6, deltaNet: 11, mamba: 8, shortConv: 5 };
    const total = 3 + spec.layers.reduce((n, l) => n + mixerTensors[l.mixer] + (spec.sharedMlp ? 2 : 3), 0);
    let done = 0;
    const tick = (name: string) => opts.onProgress?.(++done, total, name);

    const param = async (name: string, shape: number[]): Promise<Param> => {
      const value = await uploadTensor(gpu, ckpt, name, shape);
      tick(name);
      return { name, value, grad: null };
    };
    const site = async (name: string, N: number, K: number, bias: boolean): Promise<LinearSite> => {
      const weight = await uploadMatrix(gpu, ckpt, `${name}.weight`, [N, K], format);
      const b = bias ? await uploadTensor(gpu, ckpt, `${name}.bias`, [N]) : null;
      tick(name);
      return { name, inFeatures: K, outFeatures: N, weight, bias: b, lora: null, loraGrads: null, oft: null, oftGrads: null, weightGrad: null, biasGrad: null };
    };
    // Rows [row, row + N) of a fused module's [total, K] weight (and bias) as a site of its own.
    const part = async (fused: string, name: string, row: number, N: number, fusedRows: number, K: number): Promise<LinearSite> => {
      const weight = await uploadMatrix(gpu, ckpt, `${fused}.weight`, [fusedRows, K], format, [row, row + N]);
      const b = ckpt.has(`${fused}.bias`)
        ? gpu.upload((await ckpt.read(`${fused}.bias`, [fusedRows])).subarray(row, row + N), [N], 'f32', `${fused}.bias`)
        : null;
      tick(name);
      return { name, inFeatures: K, outFeatures: N, weight, bias: b, lora: null, loraGrads: null, oft: null, oftGrads: null, weightGrad: null, biasGrad: null };
    };

    const embedName = `${spec.textPrefix}.embed_tokens.weight`;
    const embed: Param = { name: embedName, value: (await uploadMatrix(gpu, ckpt, embedName, [V, D], 'f32')) as Tensor, grad: null };
    tick(embedName);
    const layers: Layer[] = [];
    for (let i = 0; i < spec.layers.length; i++) {
      const n = layerNames(spec, i);
      const a = `${n.prefix}.self_attn`;
      const m = `${n.prefix}.mlp`;
      const ls = spec.layers[i]!;
      const bias = (kind: string) => spec.qkvBias && ckpt.has(`${a}.${kind}.bias`);
      const mlp = async (): Promise<Layer['sites']> => {
        if (spec.sharedMlp) {
          const sm = `${n.prefix}.shared_mlp`;
          return { input_linear: await site(`${sm}.input_linear`, 2 * I, D, false), output_linear: await site(`${sm}.output_linear`, D, I, false) };
        }
        return {
          gate_proj: await site(n.gate, I, D, ckpt.has(`${n.gate}.bias`)),
          up_proj: await site(n.up, I, D, ckpt.has(`${n.up}.bias`)),
          down_proj: await site(n.down, D, I, ckpt.has(`${n.down}.bias`)),
        };
      };
      const norms = {
        attnNorm: n.attnNorm ? await param(n.attnNorm, [D]) : null,
        attnPostNorm: n.attnPostNorm ? await param(n.attnPostNorm, [D]) : null,
        mlpNorm: n.mlpNorm ? await param(n.mlpNorm, [D]) : null,
        mlpPostNorm: n.mlpPostNorm ? await param(n.mlpPostNorm, [D]) : null,
      };
      if (ls.mixer === 'shortConv') {
        // Lfm2ShortConv: in_proj rows are B | C | x
        const c = `${n.prefix}.conv`;
        layers.push({
          index: i, mixer: 'shortConv', ...norms, qNorm: null, kNorm: null,
          sites: { in_proj: await site(`${c}.in_proj`, 3 * D, D, false), out_proj: await site(`${c}.out_proj`, D, D, false), ...(await mlp()) },
          deltaNet: null,
          mamba: null,
          shortConv: { conv: await param(`${c}.conv.weight`, [D, 1, spec.shortConv!.convKernel]) },
          window: null,
          invFreq: null,
        });
        continue;
      }
      if (ls.mixer === 'deltaNet') {
        // Qwen3_5GatedDeltaNet: in_proj_qkv rows are q | k | v (conv channels in that order)
        const { keyHeads: Hk, valueHeads: Hv, keyDim: Dk, valueDim: Dv, convKernel } = spec.deltaNet!;
        const la = `${n.prefix}.linear_attn`;
        const C = 2 * Hk * Dk + Hv * Dv;
        layers.push({
          index: i, mixer: 'deltaNet', ...norms, qNorm: null, kNorm: null,
          sites: {
            in_proj_qkv: await site(`${la}.in_proj_qkv`, C, D, false),
            in_proj_z: await site(`${la}.in_proj_z`, Hv * Dv, D, false),
            in_proj_b: await site(`${la}.in_proj_b`, Hv, D, false),
            in_proj_a: await site(`${la}.in_proj_a`, Hv, D, false),
            out_proj: await site(`${la}.out_proj`, D, Hv * Dv, false),
            ...(await mlp()),
          },
          deltaNet: {
            conv: await param(`${la}.conv1d.weight`, [C, 1, convKernel]),
            aLog: await param(`${la}.A_log`, [Hv]),
            dtBias: await param(`${la}.dt_bias`, [Hv]),
            norm: await param(`${la}.norm.weight`, [Dv]),
          },
          mamba: null,
          shortConv: null,
          window: null,
          invFreq: null,
        });
        continue;
      }
      if (ls.mixer === 'mamba') {
        // GraniteMoeHybridMambaLayer: in_proj rows are z | x, B, C (the conv channels) | dt
        const { heads: H, headDim: P, groups: G, stateDim: N, convKernel, convBias, projBias } = spec.mamba!;
        const mp = `${n.prefix}.mamba`;
        const W = H * P, C = W + 2 * G * N;
        layers.push({
          index: i, mixer: 'mamba', ...norms, qNorm: null, kNorm: null,
          sites: {
            in_proj: await site(`${mp}.in_proj`, W + C + H, D, projBias),
            out_proj: await site(`${mp}.out_proj`, D, W, projBias),
            ...(await mlp()),
          },
          deltaNet: null,
          mamba: {
            conv: await param(`${mp}.conv1d.weight`, [C, 1, convKernel]),
            convBias: convBias ? await param(`${mp}.conv1d.bias`, [C]) : null,
            aLog: await param(`${mp}.A_log`, [H]),
            dtBias: await param(`${mp}.dt_bias`, [H]),
            D: await param(`${mp}.D`, [H]),
            norm: await param(`${mp}.norm.weight`, [W]),
          },
          shortConv: null,
          window: null,
          invFreq: null,
        });
        continue;
      }
      // Qwen3.5's q_proj: per head, Dh query rows then Dh gate rows
      const qRows = (spec.attnOutputGate ? 2 : 1) * Hq * Dh;
      layers.push({
        index: i,
        mixer: 'attention',
        ...norms,
        qNorm: n.qNorm ? await param(n.qNorm, [spec.qkNormWhole ? Hq * Dh : Dh]) : null,
        kNorm: n.kNorm ? await param(n.kNorm, [spec.qkNormWhole ? Hkv * Dh : Dh]) : null,
        sites: spec.fusedProjections
          ? {
            // Phi3Attention: q = qkv[..., :Hq·Dh], k and v the next Hkv·Dh each; Phi3MLP: gate, up = gate_up.chunk(2)
            q_proj: await part(`${a}.qkv_proj`, `${a}.q_proj`, 0, Hq * Dh, (Hq + 2 * Hkv) * Dh, D),
            k_proj: await part(`${a}.qkv_proj`, `${a}.k_proj`, Hq * Dh, Hkv * Dh, (Hq + 2 * Hkv) * Dh, D),
            v_proj: await part(`${a}.qkv_proj`, `${a}.v_proj`, (Hq + Hkv) * Dh, Hkv * Dh, (Hq + 2 * Hkv) * Dh, D),
            o_proj: await site(`${a}.o_proj`, D, Hq * Dh, ckpt.has(`${a}.o_proj.bias`)),
            gate_proj: await part(`${m}.gate_up_proj`, `${m}.gate_proj`, 0, I, 2 * I, D),
            up_proj: await part(`${m}.gate_up_proj`, `${m}.up_proj`, I, I, 2 * I, D),
            down_proj: await site(`${m}.down_proj`, D, I, ckpt.has(`${m}.down_proj.bias`)),
          }
          : {
            q_proj: await site(`${a}.q_proj`, qRows, D, bias('q_proj')),
            k_proj: await site(`${a}.k_proj`, Hkv * Dh, D, bias('k_proj')),
            v_proj: await site(`${a}.v_proj`, Hkv * Dh, D, bias('v_proj')),
            o_proj: await site(n.attnOut, D, Hq * Dh, ckpt.has(`${n.attnOut}.bias`)),
            ...(await mlp()),
          },
        deltaNet: null,
        mamba: null,
        shortConv: null,
        window: ls.window,
        invFreq: gpu.upload(
          ropeInvFreq({ headDim: Dh, theta: ls.rope.theta, partialRotaryFactor: ls.rope.partialRotaryFactor, scaling: ls.rope.scaling }),
          [Math.floor((Dh * ls.rope.partialRotaryFactor) / 2)],
        ),
      });
    }
    const finalNorm = await param(finalNormName(spec), [D]);
    const tied = spec.tiedEmbeddings || !ckpt.has('lm_head.weight');
    const lmHead = tied
      ? { weight: embed.value as Weight, grad: null, tied: true }
      : { weight: await uploadMatrix(gpu, ckpt, 'lm_head.weight', [V, D], 'f32'), grad: null, tied: false };
    tick('lm_head');
    const vision = spec.vision ? await VisionTower.load(gpu, ckpt, spec.vision) : null;
    return new Model(gpu, spec, config, embed, layers, finalNorm, lmHead, format, vision);
  }

  sites(): LinearSite[] {
    return this.layers.flatMap((l) => SITE_KINDS.flatMap((k) => l.sites[k] ?? []));
  }

  /** The checkpoint's linear modules (what PEFT adapts), in module order; fused ones list their parts. */
  modules(): ModuleRef[] {
    return this.layers.flatMap((l) => {
      const s = l.sites;
      const one = (site: LinearSite): ModuleRef => ({
        name: site.name, kind: site.name.slice(site.name.lastIndexOf('.') + 1), layer: l.index,
        inFeatures: site.inFeatures, outFeatures: site.outFeatures, parts: [{ site, row: 0 }],
      });
      if (!this.spec.fusedProjections) return SITE_KINDS.flatMap((k) => (s[k] ? [one(s[k])] : []));
      const fused = (name: string, sites: LinearSite[]): ModuleRef => {
        let row = 0;
        const parts = sites.map((site) => ({ site, row: (row += site.outFeatures) - site.outFeatures }));
        return { name, kind: name.slice(name.lastIndexOf('.') + 1), layer: l.index, inFeatures: sites[0]!.inFeatures, outFeatures: row, parts };
      };
      const prefix = `${this.spec.textPrefix}.layers.${l.index}`;
      const at = (k: SiteKind) => siteOf(l, k);
      return [
        fused(`${prefix}.self_attn.qkv_proj`, [at('q_proj'), at('k_proj'), at('v_proj')]),
        one(at('o_proj')),
        fused(`${prefix}.mlp.gate_up_proj`, [at('gate_proj'), at('up_proj')]),
        one(at('down_proj')),
      ];
    });
  }

  /** The module kinds a LoRA target list may name for this architecture: the modules' last name parts, in SITE_KINDS order. */
  moduleKinds(): readonly string[] {
    if (this.spec.fusedProjections) return FUSED_MODULE_KINDS;
    const last = (name: string) => name.slice(name.lastIndexOf('.') + 1);
    return [...new Set(this.siteKinds().flatMap((k) => this.layers.flatMap((l) => (l.sites[k] ? [last(l.sites[k].name)] : []))))];
  }

  /** The site kinds some layer of this model has, in SITE_KINDS order. */
  siteKinds(): readonly SiteKind[] {
    this.kinds ??= SITE_KINDS.filter((k) => this.layers.some((l) => l.sites[k]));
    return this.kinds;
  }

  /** Frees every buffer the model owns (weights, biases, gradients, rope tables); adapters are released by their owners. */
  release(): void {
    const own: Tensor[] = [];
    // the embedding may be split across bindings like a linear weight (uploadMatrix)
    for (const p of this.params()) own.push(...weightParts(p.value as Weight), ...(p.grad ? [p.grad] : []));
    for (const l of this.layers) if (l.invFreq) own.push(l.invFreq);
    for (const s of this.sites()) {
      own.push(...weightParts(s.weight));
      for (const t of [s.bias, s.weightGrad, s.biasGrad]) if (t) own.push(t);
    }
    if (!this.lmHead.tied) own.push(...weightParts(this.lmHead.weight));
    if (this.lmHead.grad) own.push(this.lmHead.grad);
    if (this.vision) own.push(...this.vision.tensors());
    this.gpu.release(...new Set(own));
  }

  /** Non-linear parameters (embedding, norms, Gated DeltaNet's conv and gates), in checkpoint order. */
  params(): Param[] {
    return [this.embed, ...this.layers.flatMap(layerParams), this.finalNorm];
  }
}

/**
 * A GPTQ/AWQ base stays quantized, as it does in LLaMA-Factory: its matrices are re-blocked into
 * Crucible's q8 (8-bit checkpoints) or q4 unless a quantized format was asked for.
 */
function baseFormat(requested: WeightFormat, ckpt: Checkpoint): WeightFormat {
  if (!ckpt.prequantized || requested === 'q4' || requested === 'q8') return requested;
  return ckpt.prequantized.bits === 8 ? 'q8' : 'q4';
}
