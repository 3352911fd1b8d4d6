// Qwen2-VL's vision tower on the GPU (transformers' Qwen2VisionTransformerPretrainedModel): patch
// embedding, ViT blocks and the patch merger, forward only (LLaMA-Factory's defaults freeze the
// tower and the projector, so nothing here needs a gradient). Its output rows are the image
// embeddings the text model puts in place of the <|image_pad|> tokens.
//
// The patches arrive as the image processor writes them (src/data/image/qwen2vl.ts): per image and
// frame, mergeSize x mergeSize windows of patches in row-major window order, each patch flattened
// as (channel, temporal, row, column). So the Conv3d whose kernel equals its stride is one GEMM
// with its weight viewed as [embed, C * T * P * P], and the merger's 2 x 2 windows are 4
// consecutive rows.

import type { Gpu } from '../gpu/runtime';
import type { Tensor } from '../gpu/tensor';
import { actForward } from '../kernels/act';
import { attentionForward } from '../kernels/attention';
import { add, copyInto } from '../kernels/elementwise';
import { layerNormForward } from '../kernels/norm';
import { ropeForward, ropeInvFreq } from '../kernels/rope';
import { onesFor, siteForward, type LinearSite } from './linear';
import type { VisionSpec } from './spec';
import { uploadTensor, type Checkpoint } from './weights';

/** image_grid_thw of one image: frames, rows and columns of patches. */
export type ImageGrid = readonly [number, number, number];

/** torch.nn.LayerNorm's parameters, eps 1e-6 in every Qwen2-VL vision norm. */
interface LayerNormParams {
  /** Module path ("model.visual.blocks.0.norm1"). */
  name: string;
  weight: Tensor;
  bias: Tensor;
}

interface VisionBlock {
  norm1: LayerNormParams;
  norm2: LayerNormParams;
  qkv: LinearSite;
  proj: LinearSite;
  fc1: LinearSite;
  fc2: LinearSite;
}

const LN_EPS = 1e-6;
/** VisionRotaryEmbedding's theta. */
const VISION_ROPE_THETA = 10000;

/** Vision-tower positions of each patch, [2, N] (row, column), in the processor's patch order. */
export function visionPositions(grids: readonly ImageGrid[], mergeSize: number): Int32Array {
  const n = grids.reduce((s, [t, h, w]) => s + t * h * w, 0);
  const out = new Int32Array(2 * n);
  let i = 0;
  for (const [t, h, w] of grids) {
    for (let f = 0; f < t; f++)
      for (let bh = 0; bh < h / mergeSize; bh++)
        for (let bw = 0; bw < w / mergeSize; bw++)
          for (let r = 0; r < mergeSize; r++)
            for (let c = 0; c < mergeSize; c++, i++) {
              out[i] = bh * mergeSize + r;
              out[n + i] = bw * mergeSize + c;
            }
  }
  return out;
}

export class VisionTower {
  private constructor(
    readonly gpu: Gpu,
    readonly spec: VisionSpec,
    readonly patchEmbed: LinearSite,
    readonly blocks: VisionBlock[],
    readonly mergerNorm: LayerNormParams,
    readonly mergerFc1: LinearSite,
    readonly mergerFc2: LinearSite,
    /** cat(f, f) of the per-axis frequencies: pairs [0, Dh/4) rotate by the row, the rest by the column. */
    readonly invFreq: Tensor,
  ) {}

  static async load(gpu: Gpu, ckpt: Checkpoint, spec: VisionSpec): Promise<VisionTower> {
    const { embedDim: E, mlpHidden: M, inChannels: C, temporalPatch: Tp, patchSize: P, mergeSize: m, outHidden, prefix } = spec;
    // f32 and one binding each: a tower's largest matrix (Qwen2-VL-7B's fc1, 5120 x 1280) is far below the binding limit
    const site = async (name: string, N: number, K: number, bias: boolean, stored: readonly number[] = [N, K]): Promise<LinearSite> => {
      // the patch embedding's Conv3d weight [E, C, T, P, P] is read as the matrix [E, C*T*P*P]
      const weight = gpu.upload(await ckpt.read(`${name}.weight`, stored), [N, K], 'f32', `${name}.weight`);
      const b = bias ? await uploadTensor(gpu, ckpt, `${name}.bias`, [N]) : null;
      return { name, inFeatures: K, outFeatures: N, weight, bias: b, lora: null, loraGrads: null, oft: null, oftGrads: null, weightGrad: null, biasGrad: null };
    };
    const layerNorm = async (name: string, D: number): Promise<LayerNormParams> => ({
      name,
      weight: await uploadTensor(gpu, ckpt, `${name}.weight`, [D]),
      bias: await uploadTensor(gpu, ckpt, `${name}.bias`, [D]),
    });
    const K = C * Tp * P * P;
    const patchEmbed = await site(`${prefix}.patch_embed.proj`, E, K, false, [E, C, Tp, P, P]);
    const blocks: VisionBlock[] = [];
    for (let i = 0; i < spec.depth; i++) {
      const b = `${prefix}.blocks.${i}`;
      blocks.push({
        norm1: await layerNorm(`${b}.norm1`, E),
        norm2: await layerNorm(`${b}.norm2`, E),
        qkv: await site(`${b}.attn.qkv`, 3 * E, E, true),
        proj: await site(`${b}.attn.proj`, E, E, true),
        fc1: await site(`${b}.mlp.fc1`, M, E, true),
        fc2: await site(`${b}.mlp.fc2`, E, M, true),
      });
    }
    const W = E * m * m;
    const Dh = E / spec.heads;
    const f = ropeInvFreq({ headDim: Dh / 2, theta: VISION_ROPE_THETA });
    return new VisionTower(
      gpu, spec, patchEmbed, blocks,
      await layerNorm(`${prefix}.merger.ln_q`, E),
      await site(`${prefix}.merger.mlp.0`, W, W, true),
      await site(`${prefix}.merger.mlp.2`, outHidden, W, true),
      gpu.upload(Float32Array.from([...f, ...f]), [Dh / 2], 'f32', `${prefix}.rotary_inv_freq`),
    );
  }

  /** Patches per image row of the pixel values: C * T * P * P. */
  get patchFeatures(): number {
    const s = this.spec;
    return s.inChannels * s.temporalPatch * s.patchSize * s.patchSize;
  }

  /**
   * Image embeddings [N / mergeSize², outHidden] for the pixel values [N, C*T*P*P] of the images
   * with these grids, in order (the caller releases the tensor). Attention stays within each frame
   * of each image (transformers' cu_seqlens).
   */
  forward(pixels: Float32Array, grids: readonly ImageGrid[]): Tensor {
    const { gpu, spec } = this;
    const { embedDim: E, heads: H, mlpHidden: M, mergeSize: m, outHidden } = spec;
    const Dh = E / H, F = this.patchFeatures;
    for (const [i, g] of grids.entries()) {
      if (g.some((d) => !Number.isInteger(d) || d < 1) || g[1] % m !== 0 || g[2] % m !== 0) {
        throw new Error(`vision tower: image ${i} has grid [${g.join(', ')}]; rows and columns must be positive multiples of the merge size ${m}`);
      }
    }
    const N = grids.reduce((s, [t, h, w]) => s + t * h * w, 0);
    if (pixels.length !== N * F) {
      throw new Error(`vision tower: pixel values have ${pixels.length} numbers; the grids [${grids.map((g) => g.join('x')).join(', ')}] need ${N} patches of ${F}`);
    }
    const frames = grids.flatMap(([t, h, w]) => Array.from({ length: t }, () => h * w));
    const longest = Math.max(...frames);
    const mine: Tensor[] = [];
    const t = (shape: number[], name: string, dtype: 'f32' | 'i32' = 'f32') => {
      const x = gpu.tensor(shape, dtype, `vision.${name}`);
      mine.push(x);
      return x;
    };
    const x = gpu.upload(pixels, [N, F], 'f32', 'vision.pixels');
    const positions = gpu.upload(visionPositions(grids, m), [2, N], 'i32', 'vision.positions');
    const ones = onesFor(gpu, N);
    mine.push(x, positions, ones);
    const h = t([N, E], 'hidden'), normed = t([N, E], 'normed'), qkv = t([N, 3 * E], 'qkv');
    const q = t([N, E], 'q'), k = t([N, E], 'k'), v = t([N, E], 'v'), attn = t([N, E], 'attn'), out = t([N, E], 'out');
    const up = t([N, M], 'fc1'), act = t([N, M], 'act');
    const split = frames.length > 1;
    const fq = split ? t([longest, E], 'frameQ') : q, fk = split ? t([longest, E], 'frameK') : k;
    const fv = split ? t([longest, E], 'frameV') : v, fo = split ? t([longest, E], 'frameOut') : attn;

    siteForward(gpu, this.patchEmbed, x, h, null, ones);
    const ln = (p: LayerNormParams, src: Tensor, dst: Tensor) => layerNormForward(gpu, src, p.weight, p.bias, dst, { eps: LN_EPS });
    for (const b of this.blocks) {
      ln(b.norm1, h, normed);
      siteForward(gpu, b.qkv, normed, qkv, null, ones);
      // qkv rows are (q | k | v), each heads x Dh
      copyInto(gpu, qkv, q, { rows: N, cols: E, srcStride: 3 * E });
      copyInto(gpu, qkv, k, { rows: N, cols: E, srcOffset: E, srcStride: 3 * E });
      copyInto(gpu, qkv, v, { rows: N, cols: E, srcOffset: 2 * E, srcStride: 3 * E });
      const rope = { sections: [Dh / 4, Dh / 4] };
      ropeForward(gpu, { ...q, shape: [N, H, Dh] }, { ...q, shape: [N, H, Dh] }, positions, this.invFreq, rope);
      ropeForward(gpu, { ...k, shape: [N, H, Dh] }, { ...k, shape: [N, H, Dh] }, positions, this.invFreq, rope);
      let row = 0;
      for (const n of frames) {
        const rows = { rows: n, cols: E, srcOffset: row * E };
        if (split) for (const [src, dst] of [[q, fq], [k, fk], [v, fv]] as const) copyInto(gpu, src, dst, rows);
        // qOffset n - 1 lets every query see all n keys: bidirectional attention within the frame
        // a frame's rows are the first n of the frame buffers (capacity `longest`)
        attentionForward(gpu, { ...fq, shape: [n, E] }, fk, fv, { ...fo, shape: [n, E] }, null, {
          batch: 1, qLen: n, kvLen: n, kvCapacity: split ? longest : n, qOffset: n - 1, heads: H, kvHeads: H, headDim: Dh, scale: 1 / Math.sqrt(Dh),
        });
        if (split) copyInto(gpu, fo, attn, { rows: n, cols: E, dstOffset: row * E });
        row += n;
      }
      siteForward(gpu, b.proj, attn, out, null, ones);
      add(gpu, h, out, h);
      ln(b.norm2, h, normed);
      siteForward(gpu, b.fc1, normed, up, null, ones);
      actForward(gpu, up, act, spec.act);
      siteForward(gpu, b.fc2, act, out, null, ones);
      add(gpu, h, out, h);
    }
    ln(this.mergerNorm, h, normed);
    const Nm = N / (m * m), W = E * m * m;
    const merged = t([Nm, W], 'merged'), mergedAct = t([Nm, W], 'mergedAct');
    const embeds = gpu.tensor([Nm, outHidden], 'f32', 'vision.embeds');
    const onesM = onesFor(gpu, Nm);
    mine.push(onesM);
    siteForward(gpu, this.mergerFc1, { ...normed, shape: [Nm, W] }, merged, null, onesM);
    actForward(gpu, merged, mergedAct, 'gelu');
    siteForward(gpu, this.mergerFc2, mergedAct, embeds, null, onesM);
    for (const tensor of mine) gpu.releaseAtFlush(tensor);
    return embeds;
  }

  /** The tower's weights under their checkpoint names and stored shapes (a merged export writes them back unchanged). */
  namedTensors(): { name: string; shape: number[]; tensor: Tensor }[] {
    const s = this.spec;
    const sites = [this.patchEmbed, ...this.blocks.flatMap((b) => [b.qkv, b.proj, b.fc1, b.fc2]), this.mergerFc1, this.mergerFc2];
    const norms = [...this.blocks.flatMap((b) => [b.norm1, b.norm2]), this.mergerNorm];
    return [
      ...sites.flatMap((site) => [
        {
          name: `${site.name}.weight`, tensor: site.weight as Tensor,
          shape: site === this.patchEmbed ? [s.embedDim, s.inChannels, s.temporalPatch, s.patchSize, s.patchSize] : [site.outFeatures, site.inFeatures],
        },
        ...(site.bias ? [{ name: `${site.name}.bias`, shape: [site.outFeatures], tensor: site.bias }] : []),
      ]),
      ...norms.flatMap((n) => [{ name: `${n.name}.weight`, shape: [...n.weight.shape], tensor: n.weight }, { name: `${n.name}.bias`, shape: [...n.bias.shape], tensor: n.bias }]),
    ];
  }

  /** Every buffer the tower owns. */
  tensors(): Tensor[] {
    return [...this.namedTensors().map((t) => t.tensor), this.invFreq];
  }
}
