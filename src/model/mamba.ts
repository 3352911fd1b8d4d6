// Granite 4.0 H's Mamba-2 token mixer (transformers' GraniteMoeHybridMambaLayer), forward and
// backward on the normed hidden state: in_proj -> z | x, B, C | dt; causal conv1d (with bias) + SiLU
// over x, B, C; the SSD scan with dt_bias, A_log, D (kernels/ssd.ts); y * silu(z), then RMSNorm
// (Granite's gated norm multiplies before normalising, over the whole width); out_proj. The layer's
// linear sites run through the caller's callbacks (LoRA, dropout and saved activations are theirs).

import type { Gpu } from '../gpu/runtime';
import type { Tensor } from '../gpu/tensor';
import { gatedActBackward, gatedActForward } from '../kernels/act';
import { conv1dBackward, conv1dForward } from '../kernels/conv1d';
import { axpy, copyInto } from '../kernels/elementwise';
import { rmsNormBackward, rmsNormForward } from '../kernels/norm';
import { ssdBackward, ssdForward, ssdRecurrent, type SsdShape } from '../kernels/ssd';
import { SSD_CHUNK, type mambaActivationShapes } from './activations';
import type { Layer, MambaParams, Model } from './model';
import type { MambaSpec } from './spec';

export type MambaActs = { [K in keyof ReturnType<typeof mambaActivationShapes>]: Tensor };

/** The backward's working set of a Mamba layer (activations.ts gradientShapes' md* buffers). */
export interface MambaGrads {
  proj: Tensor; normed: Tensor; gated: Tensor; y: Tensor; z: Tensor; x: Tensor; dt: Tensor; Bm: Tensor; Cm: Tensor;
  xbc: Tensor; xbcIn: Tensor; convW: Tensor; convBias: Tensor; aLog: Tensor; dtBias: Tensor; D: Tensor;
}

/** What generation keeps of a Mamba layer: the conv's last K - 1 inputs [K - 1, C] and the scan's state [H, N, P]. */
export interface MambaState {
  conv: Tensor;
  ssd: Tensor;
}

/** y = site(x) for one of the layer's linear modules (in_proj, out_proj). */
export type SiteForward = (kind: 'in_proj' | 'out_proj', x: Tensor, y: Tensor) => void;
/** The site's backward: dx (=|+= per accumulateDx) and its own gradients. */
export type SiteBackward = (kind: 'in_proj' | 'out_proj', x: Tensor, dy: Tensor, dx: Tensor, accumulateDx: boolean) => void;

const view = (t: Tensor, shape: number[]): Tensor => ({ ...t, shape });

function widths(m: MambaSpec) {
  const W = m.heads * m.headDim, GN = m.groups * m.stateDim, C = W + 2 * GN;
  return { W, GN, C, F: W + C + m.heads };
}

export function ssdShapeOf(m: MambaSpec, B: number, S: number): SsdShape {
  return { batch: B, len: S, heads: m.heads, groups: m.groups, stateDim: m.stateDim, headDim: m.headDim, dtMin: m.dtMin, dtMax: m.dtMax };
}

const scanParams = (p: MambaParams) => ({ dtBias: p.dtBias.value, aLog: p.aLog.value, D: p.D.value });
const scanInputs = (acts: MambaActs) => ({ x: acts.x, dt: acts.dt, Bm: acts.Bm, Cm: acts.Cm });

/**
 * The mixer on h1 [B * S, hidden] into out. With a state (generation) the conv and the scan continue
 * from it; without, they start from zeros (each packed segment afresh) and the scan keeps its
 * record for the backward.
 */
export function mambaForward(
  gpu: Gpu, model: Model, layer: Layer, acts: MambaActs, h1: Tensor, out: Tensor, B: number, S: number,
  ctx: { site: SiteForward; state: MambaState | null; segments: Tensor | null },
): void {
  const m = model.spec.mamba!, p = layer.mamba!;
  const T = B * S, { W, GN, C, F } = widths(m), H = m.heads;
  const { state } = ctx;
  const segments = state ? null : ctx.segments;
  ctx.site('in_proj', h1, acts.proj);
  copyInto(gpu, acts.proj, acts.z, { rows: T, cols: W, srcStride: F });
  copyInto(gpu, acts.proj, acts.xbcIn, { rows: T, cols: C, srcOffset: W, srcStride: F });
  copyInto(gpu, acts.proj, acts.dt, { rows: T, cols: H, srcOffset: W + C, srcStride: F });
  conv1dForward(gpu, { batch: B, len: S, channels: C, kernel: m.convKernel, bias: p.convBias?.value ?? null, segments }, acts.xbcIn,
    view(p.conv.value, [C, m.convKernel]), acts.xbc, state?.conv ?? null);
  copyInto(gpu, acts.xbc, acts.x, { rows: T, cols: W, srcStride: C });
  copyInto(gpu, acts.xbc, acts.Bm, { rows: T, cols: GN, srcOffset: W, srcStride: C });
  copyInto(gpu, acts.xbc, acts.Cm, { rows: T, cols: GN, srcOffset: W + GN, srcStride: C });
  const shape = ssdShapeOf(m, B, S);
  if (state && S === 1) ssdRecurrent(gpu, shape, scanInputs(acts), scanParams(p), acts.y, state.ssd);
  else ssdForward(gpu, shape, scanInputs(acts), scanParams(p), acts.y, { chunk: SSD_CHUNK, state: state?.ssd ?? null, saved: state ? null : acts.ssdSaved, segments });
  gatedActForward(gpu, acts.z, acts.y, acts.gated, 'silu');
  rmsNormForward(gpu, acts.gated, p.norm.value, acts.normed, acts.rstdGated, { eps: model.spec.rmsEps });
  ctx.site('out_proj', acts.normed, out);
}

/** mambaForward's backward from dOut to dH (overwritten); the conv, scan and norm parameters' gradients are added where they have them. */
export function mambaBackward(
  gpu: Gpu, model: Model, layer: Layer, acts: MambaActs, h1: Tensor, dOut: Tensor, dH: Tensor, B: number, S: number, segments: Tensor | null,
  g: MambaGrads, back: SiteBackward,
): void {
  const m = model.spec.mamba!, p = layer.mamba!;
  const T = B * S, { W, GN, C, F } = widths(m), H = m.heads;
  back('out_proj', acts.normed, dOut, g.normed, false);
  rmsNormBackward(gpu, g.normed, acts.gated, p.norm.value, acts.rstdGated, g.gated, p.norm.grad, { accumulateDw: true });
  gatedActBackward(gpu, g.gated, acts.z, acts.y, g.z, g.y, 'silu');
  const trainScan = !!(p.aLog.grad && p.dtBias.grad && p.D.grad);
  ssdBackward(gpu, ssdShapeOf(m, B, S), scanInputs(acts), scanParams(p), acts.ssdSaved, SSD_CHUNK, g.y, {
    dx: g.x, ddt: g.dt, dBm: g.Bm, dCm: g.Cm, params: trainScan ? { dtBias: g.dtBias, aLog: g.aLog, D: g.D } : null,
  });
  if (trainScan) {
    axpy(gpu, g.dtBias, p.dtBias.grad!, 1);
    axpy(gpu, g.aLog, p.aLog.grad!, 1);
    axpy(gpu, g.D, p.D.grad!, 1);
  }
  copyInto(gpu, g.x, g.xbc, { rows: T, cols: W, dstStride: C });
  copyInto(gpu, g.Bm, g.xbc, { rows: T, cols: GN, dstOffset: W, dstStride: C });
  copyInto(gpu, g.Cm, g.xbc, { rows: T, cols: GN, dstOffset: W + GN, dstStride: C });
  const convW = view(p.conv.value, [C, m.convKernel]);
  const biasGrad = p.convBias?.grad ? g.convBias : null;
  conv1dBackward(gpu, { batch: B, len: S, channels: C, kernel: m.convKernel, bias: p.convBias?.value ?? null, segments }, g.xbc, acts.xbcIn, convW, g.xbcIn,
    p.conv.grad ? g.convW : null, biasGrad);
  if (p.conv.grad) axpy(gpu, g.convW, view(p.conv.grad, [C, m.convKernel]), 1);
  if (biasGrad) axpy(gpu, biasGrad, p.convBias!.grad!, 1);
  copyInto(gpu, g.z, g.proj, { rows: T, cols: W, dstStride: F });
  copyInto(gpu, g.xbcIn, g.proj, { rows: T, cols: C, dstOffset: W, dstStride: F });
  copyInto(gpu, g.dt, g.proj, { rows: T, cols: H, dstOffset: W + C, dstStride: F });
  back('in_proj', h1, g.proj, dH, false);
}
