// Gated activations of the MLP (SwiGLU: silu(gate) * up; GeGLU: gelu(gate) * up with the tanh
// approximation or exact erf), and Qwen3.5's attention output gate (sigmoid(gate) * attn) with their backward, for separate gate/up tensors and for the fused
// [T, 2F] gate_up_proj layout (Phi-3); plain activations y = act(x) (vision MLPs, forward only).

import source from '../../shaders/act.wgsl';
import type { Gpu, Param } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';
import { distinctBuffers, requireF32 } from './checks';

/** identity: out = gate * up (LFM2's short-convolution gates). */
export type GatedActKind = 'silu' | 'gelu_tanh' | 'gelu' | 'sigmoid' | 'identity';

const WG = 256;
/** Activations of ungated MLPs (vision towers): quick_gelu is x * sigmoid(1.702 x). */
export type ActKind = 'silu' | 'gelu_tanh' | 'gelu' | 'quick_gelu';

const ACT: Record<GatedActKind | ActKind, number> = { silu: 0, gelu_tanh: 1, gelu: 2, sigmoid: 3, identity: 4, quick_gelu: 5 };

function checkKind<K extends GatedActKind | ActKind>(kind: K, fn: string): K {
  if (ACT[kind] === undefined) throw new Error(`${fn}: unknown activation "${String(kind)}" (silu, gelu_tanh, gelu, sigmoid, identity, quick_gelu)`);
  return kind;
}

function sameShape(fn: string, a: [string, Tensor], b: [string, Tensor]): void {
  const [na, ta] = a, [nb, tb] = b;
  if (ta.shape.length !== tb.shape.length || ta.shape.some((d, i) => d !== tb.shape[i])) {
    throw new Error(`${fn}: ${na} ${shapeStr(ta.shape)} and ${nb} ${shapeStr(tb.shape)} differ in shape`);
  }
}

type Entry = 'act_forward' | 'gated_act_forward' | 'gated_act_backward' | 'gated_act_backward_fused';

/** One invocation per element over n elements (grid-folded). */
function launch(gpu: Gpu, entry: Entry, kind: GatedActKind | ActKind, bindings: Tensor[], n: number, params: Param[]): void {
  if (n === 0) return;
  const pipeline = gpu.pipeline(`${entry}:${kind}`, () => shaderVariant(source, entry, { ACT: ACT[kind] }));
  gpu.dispatch(pipeline, bindings, gpu.grid(Math.ceil(n / WG)), params);
}

const lastDim = (t: Tensor): number => t.shape[t.shape.length - 1] ?? 1;

// ---- plain activations -------------------------------------------------------------------------

/** y = act(x), of the same shape (forward only). */
export function actForward(gpu: Gpu, x: Tensor, y: Tensor, kind: ActKind): void {
  const fn = 'actForward';
  requireF32(fn, ['x', x], ['y', y]);
  sameShape(fn, ['x', x], ['y', y]);
  distinctBuffers(fn, [['y', y]], [['x', x]]);
  const n = numel(x.shape);
  launch(gpu, 'act_forward', checkKind(kind, fn), [x, y], n, [n, Math.max(n, 1), 0, 0, 0, 0]);
}

// ---- gated activations -------------------------------------------------------------------------

/** out = act(gate) * up, all of the same shape. */
export function gatedActForward(gpu: Gpu, gate: Tensor, up: Tensor, out: Tensor, kind: GatedActKind): void {
  const fn = 'gatedActForward';
  requireF32(fn, ['gate', gate], ['up', up], ['out', out]);
  sameShape(fn, ['gate', gate], ['up', up]);
  sameShape(fn, ['gate', gate], ['out', out]);
  distinctBuffers(fn, [['out', out]], [['gate', gate], ['up', up]]);
  const n = numel(out.shape);
  launch(gpu, 'gated_act_forward', checkKind(kind, fn), [gate, up, out], n, [n, Math.max(n, 1), 0, 0, 0, 0]);
}

/** dGate = dOut * up * act'(gate), dUp = dOut * act(gate) (both overwritten). */
export function gatedActBackward(
  gpu: Gpu, dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor, kind: GatedActKind,
): void {
  const fn = 'gatedActBackward';
  requireF32(fn, ['dOut', dOut], ['gate', gate], ['up', up], ['dGate', dGate], ['dUp', dUp]);
  for (const t of [['gate', gate], ['up', up], ['dGate', dGate], ['dUp', dUp]] as [string, Tensor][]) sameShape(fn, ['dOut', dOut], t);
  distinctBuffers(fn, [['dGate', dGate], ['dUp', dUp]], [['dOut', dOut], ['gate', gate], ['up', up]]);
  if (dGate.buffer === dUp.buffer) throw new Error(`${fn}: dGate and dUp must not share a buffer (use gatedActFusedBackward)`);
  const n = numel(dOut.shape);
  launch(gpu, 'gated_act_backward', checkKind(kind, fn), [dOut, gate, up, dGate, dUp], n, [n, Math.max(n, 1), 0, 0, 0, 0]);
}

function fusedShape(fn: string, gateUp: Tensor, out: Tensor): { T: number; F: number } {
  const F = lastDim(out);
  const T = numel(out.shape) / Math.max(F, 1);
  const G = lastDim(gateUp);
  if (G !== 2 * F || numel(gateUp.shape) !== 2 * T * F) {
    throw new Error(`${fn}: gateUp ${shapeStr(gateUp.shape)} must be [T, 2F] for an output ${shapeStr(out.shape)} = [T, F]`);
  }
  return { T, F };
}

/** out[T, F] = act(gateUp[:, :F]) * gateUp[:, F:] (Phi-3's gate_up_proj layout: gate then up). */
export function gatedActFusedForward(gpu: Gpu, gateUp: Tensor, out: Tensor, kind: GatedActKind): void {
  const fn = 'gatedActFusedForward';
  requireF32(fn, ['gateUp', gateUp], ['out', out]);
  const { T, F } = fusedShape(fn, gateUp, out);
  distinctBuffers(fn, [['out', out]], [['gateUp', gateUp]]);
  launch(gpu, 'gated_act_forward', checkKind(kind, fn), [gateUp, gateUp, out], T * F, [T * F, F, 2 * F, 0, 2 * F, F]);
}

/** dGateUp[T, 2F] (overwritten): gate half dOut * up * act'(gate), up half dOut * act(gate). */
export function gatedActFusedBackward(gpu: Gpu, dOut: Tensor, gateUp: Tensor, dGateUp: Tensor, kind: GatedActKind): void {
  const fn = 'gatedActFusedBackward';
  requireF32(fn, ['dOut', dOut], ['gateUp', gateUp], ['dGateUp', dGateUp]);
  const { T, F } = fusedShape(fn, gateUp, dOut);
  sameShape(fn, ['gateUp', gateUp], ['dGateUp', dGateUp]);
  distinctBuffers(fn, [['dGateUp', dGateUp]], [['dOut', dOut], ['gateUp', gateUp]]);
  launch(gpu, 'gated_act_backward_fused', checkKind(kind, fn), [dOut, gateUp, dGateUp], T * F, [T * F, F, 2 * F, 0, 2 * F, F]);
}
