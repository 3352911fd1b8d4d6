// Gated DeltaNet's gates (shaders/gates.wgsl): the log decay g = -exp(A_log) * softplus(a + dt_bias)
// and the write strength beta = sigmoid(b), per token and value head, from the in_proj_a / in_proj_b
// outputs a, b [N, Hv] and the per-head parameters A_log, dt_bias [Hv].

import source from '../../shaders/gates.wgsl';
import type { Gpu, Param } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';
import { distinctBuffers, requireF32 } from './checks';

const WG = 256;

type Entry = 'delta_gates_forward' | 'delta_gates_backward' | 'delta_gates_backward_params';

function launch(gpu: Gpu, entry: Entry, bindings: Tensor[], n: number, params: Param[]): void {
  if (n === 0) return;
  gpu.dispatch(gpu.pipeline(entry, () => shaderVariant(source, entry)), bindings, gpu.grid(Math.ceil(n / WG)), params);
}

function check(fn: string, tokens: number, heads: number, perToken: [string, Tensor][], perHead: [string, Tensor][]): void {
  for (const [name, t, n] of [...perToken.map(([a, b]) => [a, b, tokens * heads] as const), ...perHead.map(([a, b]) => [a, b, heads] as const)]) {
    requireF32(fn, [name, t]);
    if (numel(t.shape) !== n) throw new Error(`${fn}: ${name} ${shapeStr(t.shape)} must have ${n} elements (${n === heads ? '[Hv]' : '[N, Hv]'} for N ${tokens}, Hv ${heads})`);
  }
}

/** g and beta [N, Hv] (overwritten). */
export function deltaGatesForward(gpu: Gpu, heads: number, a: Tensor, b: Tensor, aLog: Tensor, dtBias: Tensor, g: Tensor, beta: Tensor): void {
  const fn = 'deltaGatesForward';
  const N = numel(a.shape) / heads;
  if (!Number.isInteger(N)) throw new Error(`${fn}: a ${shapeStr(a.shape)} is not [N, ${heads}]`);
  check(fn, N, heads, [['a', a], ['b', b], ['g', g], ['beta', beta]], [['A_log', aLog], ['dt_bias', dtBias]]);
  const read: [string, Tensor][] = [['a', a], ['b', b], ['A_log', aLog], ['dt_bias', dtBias]];
  distinctBuffers(fn, [['g', g], ['beta', beta]], read);
  distinctBuffers(fn, [['g', g]], [['beta', beta]]);
  launch(gpu, 'delta_gates_forward', [a, b, aLog, dtBias, g, beta], N * heads, [N, heads, 0]);
}

export interface DeltaGatesParamGrads {
  dALog: Tensor;
  dDtBias: Tensor;
  /** Add into them instead of overwriting. */
  accumulate?: boolean;
}

/** da, db [N, Hv] (overwritten); the per-head parameters' gradients when asked (full fine-tuning). */
export function deltaGatesBackward(
  gpu: Gpu, heads: number, dg: Tensor, dbeta: Tensor, a: Tensor, b: Tensor, aLog: Tensor, dtBias: Tensor, da: Tensor, db: Tensor,
  params: DeltaGatesParamGrads | null = null,
): void {
  const fn = 'deltaGatesBackward';
  const N = numel(a.shape) / heads;
  if (!Number.isInteger(N)) throw new Error(`${fn}: a ${shapeStr(a.shape)} is not [N, ${heads}]`);
  const perHead: [string, Tensor][] = [['A_log', aLog], ['dt_bias', dtBias]];
  if (params) perHead.push(['dA_log', params.dALog], ['ddt_bias', params.dDtBias]);
  check(fn, N, heads, [['dg', dg], ['dbeta', dbeta], ['a', a], ['b', b], ['da', da], ['db', db]], perHead);
  const read: [string, Tensor][] = [['dg', dg], ['dbeta', dbeta], ['a', a], ['b', b], ['A_log', aLog], ['dt_bias', dtBias]];
  distinctBuffers(fn, [['da', da], ['db', db]], read);
  distinctBuffers(fn, [['da', da]], [['db', db]]);
  launch(gpu, 'delta_gates_backward', [dg, dbeta, a, b, aLog, dtBias, da, db], N * heads, [N, heads, 0]);
  if (!params) return;
  distinctBuffers(fn, [['dA_log', params.dALog], ['ddt_bias', params.dDtBias]], read);
  distinctBuffers(fn, [['dA_log', params.dALog]], [['ddt_bias', params.dDtBias]]);
  launch(gpu, 'delta_gates_backward_params', [dg, a, aLog, dtBias, params.dALog, params.dDtBias], heads, [N, heads, params.accumulate ? 1 : 0]);
}
