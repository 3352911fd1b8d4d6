// The Gated DeltaNet kernels composed into one Qwen3.5 linear-attention token mixer (the recipe the
// model wiring follows) against the f64 reference layer of tests/reference/transformer.ts:
//   in_proj_qkv -> conv1d + SiLU -> q | k | v columns -> l2norm(q), l2norm(k); in_proj_a/b -> gates;
//   delta rule (chunked) -> RMSNormGated(core, in_proj_z) -> out_proj
// and the backward through all of it to the input, against a finite difference of the reference.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Tensor } from '../src/gpu/tensor';
import { conv1dBackward, conv1dForward } from '../src/kernels/conv1d';
import { deltaRuleBackward, deltaRuleForward, deltaRuleRecurrent, deltaRuleSavedElements } from '../src/kernels/delta-rule';
import { copyInto } from '../src/kernels/elementwise';
import { deltaGatesBackward, deltaGatesForward } from '../src/kernels/gates';
import { linear, linearBackwardInput } from '../src/kernels/matmul';
import { l2NormBackward, l2NormForward, rmsNormGatedBackward, rmsNormGatedForward } from '../src/kernels/norm';
import { expectClose, makeRng, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { refArch, refGatedDeltaNet, refParameters } from './reference/transformer';

const config = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/synthetic/qwen3_5_text/config.json'), 'utf8')) as Record<string, unknown>;
const m = 'model.layers.0.linear_attn';

/** Random weights of layer 0's token mixer, around the values a trained model has. */
function mixerWeights(rng: Rng): Map<string, Float32Array> {
  const host = new Map<string, Float32Array>();
  for (const [name, shape] of refParameters(config)) {
    if (!name.startsWith(m)) continue;
    const n = shape.reduce((x, y) => x * y, 1);
    let v: Float32Array;
    if (name.endsWith('A_log')) v = rng.uniform(n, -1, 1);
    else if (name.endsWith('norm.weight')) v = rng.uniform(n, 0.8, 1.2);
    else if (name.endsWith('conv1d.weight') || shape.length === 1) v = rng.randn(n, 0.5);
    else v = rng.randn(n, 1 / Math.sqrt(shape[1]!));
    host.set(name, v);
  }
  return host;
}

describe('Gated DeltaNet token mixer from the kernels', () => {
  it('matches the reference layer on two rows of 13 tokens (chunks of 4), forward and input gradient', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const a = refArch(config);
    const { Hk, Hv, Dk, Dv, kernel: K } = a.deltaNet!;
    const [B, S, D] = [2, 13, a.hidden];
    const T = B * S, keyDim = Hk * Dk, valueDim = Hv * Dv, convDim = 2 * keyDim + valueDim;
    const host = mixerWeights(rng);
    const x = rng.randn(T * D);
    const ref = refGatedDeltaNet(a, host, undefined, m, Float64Array.from(x), B, S);

    const w = (name: string, shape: number[]) => gpu.upload(host.get(`${m}.${name}`)!, shape);
    const t = (rows: number, cols: number) => gpu.tensor([rows, cols]);
    const tx = gpu.upload(x, [T, D]);
    const mixed = t(T, convDim), conv = t(T, convDim);
    linear(gpu, tx, w('in_proj_qkv.weight', [convDim, D]), mixed);
    conv1dForward(gpu, { batch: B, len: S, channels: convDim, kernel: K }, mixed, w('conv1d.weight', [convDim, K]), conv);
    const split = (from: number, n: number): Tensor => {
      const out = t(T, n);
      copyInto(gpu, conv, out, { rows: T, cols: n, srcOffset: from, srcStride: convDim });
      return out;
    };
    const q = t(T, keyDim), k = t(T, keyDim), rq = gpu.tensor([T * Hk]), rk = gpu.tensor([T * Hk]);
    const qRaw = split(0, keyDim), kRaw = split(keyDim, keyDim);
    l2NormForward(gpu, qRaw, Dk, q, rq, { eps: 1e-6 });
    l2NormForward(gpu, kRaw, Dk, k, rk, { eps: 1e-6 });
    const v = split(2 * keyDim, valueDim);
    const ta = t(T, Hv), tb = t(T, Hv), g = t(T, Hv), beta = t(T, Hv);
    linear(gpu, tx, w('in_proj_a.weight', [Hv, D]), ta);
    linear(gpu, tx, w('in_proj_b.weight', [Hv, D]), tb);
    deltaGatesForward(gpu, Hv, ta, tb, w('A_log', [Hv]), w('dt_bias', [Hv]), g, beta);
    const core = t(T, valueDim);
    const shape = { batch: B, len: S, keyHeads: Hk, valueHeads: Hv, keyDim: Dk, valueDim: Dv, scale: 1 / Math.sqrt(Dk) };
    const saved = gpu.tensor([deltaRuleSavedElements(shape, 4)]);
    deltaRuleForward(gpu, shape, { q, k, v, g, beta }, core, { chunk: 4, saved });
    const z = t(T, valueDim), normed = gpu.tensor([T * Hv, Dv]), rstd = gpu.tensor([T * Hv]), out = t(T, D);
    linear(gpu, tx, w('in_proj_z.weight', [valueDim, D]), z);
    rmsNormGatedForward(gpu, { ...core, shape: [T * Hv, Dv] }, z, w('norm.weight', [Dv]), normed, rstd, { eps: a.eps });
    const wOut = w('out_proj.weight', [D, valueDim]);
    linear(gpu, { ...normed, shape: [T, valueDim] }, wOut, out);
    expectClose(await gpu.readF32(out), ref, 1e-4, 'token mixer output', rng.seed);

    // backward of sum(dout * out) to x, every path summed into dx
    const dout = rng.randn(T * D);
    const dNormed = t(T, valueDim), dCore = gpu.tensor([T * Hv, Dv]), dz = gpu.tensor([T * Hv, Dv]);
    linearBackwardInput(gpu, gpu.upload(dout, [T, D]), wOut, dNormed);
    rmsNormGatedBackward(gpu, { ...dNormed, shape: [T * Hv, Dv] }, { ...core, shape: [T * Hv, Dv] }, z, w('norm.weight', [Dv]), rstd, dCore, dz, null);
    const dx = t(T, D);
    linearBackwardInput(gpu, { ...dz, shape: [T, valueDim] }, w('in_proj_z.weight', [valueDim, D]), dx);
    const grads = { dq: t(T, keyDim), dk: t(T, keyDim), dv: t(T, valueDim), dg: t(T, Hv), dbeta: t(T, Hv) };
    deltaRuleBackward(gpu, shape, { q, k, v, g, beta }, saved, 4, { ...dCore, shape: [T, valueDim] }, grads);
    const da = t(T, Hv), db = t(T, Hv);
    deltaGatesBackward(gpu, Hv, grads.dg, grads.dbeta, ta, tb, w('A_log', [Hv]), w('dt_bias', [Hv]), da, db);
    linearBackwardInput(gpu, da, w('in_proj_a.weight', [Hv, D]), dx, true);
    linearBackwardInput(gpu, db, w('in_proj_b.weight', [Hv, D]), dx, true);
    // the conv output's gradient, column block by column block
    const dConv = t(T, convDim), dqRaw = t(T, keyDim), dkRaw = t(T, keyDim);
    l2NormBackward(gpu, grads.dq, qRaw, Dk, rq, dqRaw);
    l2NormBackward(gpu, grads.dk, kRaw, Dk, rk, dkRaw);
    for (const [src, from, n] of [[dqRaw, 0, keyDim], [dkRaw, keyDim, keyDim], [grads.dv, 2 * keyDim, valueDim]] as const) {
      copyInto(gpu, src, dConv, { rows: T, cols: n, dstOffset: from, dstStride: convDim });
    }
    const dMixed = t(T, convDim);
    conv1dBackward(gpu, { batch: B, len: S, channels: convDim, kernel: K }, dConv, mixed, w('conv1d.weight', [convDim, K]), dMixed, null);
    linearBackwardInput(gpu, dMixed, w('in_proj_qkv.weight', [convDim, D]), dx, true);
    const got = await gpu.readF32(dx);

    // d/de sum(dout * layer(x + e u)) at 0, by central differences of the f64 reference
    const u = rng.randn(T * D), h = 1e-5;
    const at = (e: number) => {
      const y = refGatedDeltaNet(a, host, undefined, m, Float64Array.from(x, (xi, i) => xi + e * u[i]!), B, S);
      return y.reduce((acc, yi, i) => acc + yi * dout[i]!, 0);
    };
    const fd = (at(h) - at(-h)) / (2 * h);
    const dot = got.reduce((acc, gi, i) => acc + gi * u[i]!, 0);
    expect(Math.abs(dot - fd) / Math.abs(fd), `dx . u ${dot} vs finite difference ${fd} (SEED=${rng.seed})`).toBeLessThan(1e-3);
  });

  it('a prefill with the conv and delta states, then one token at a time, equals one pass', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const a = refArch(config);
    const { Hk, Hv, Dk, Dv, kernel: K } = a.deltaNet!;
    const [B, S, D, P] = [2, 9, a.hidden, 5];
    const keyDim = Hk * Dk, valueDim = Hv * Dv, convDim = 2 * keyDim + valueDim;
    const host = mixerWeights(rng);
    const x = rng.randn(B * S * D);
    const whole = refGatedDeltaNet(a, host, undefined, m, Float64Array.from(x), B, S);
    const w = (name: string, shape: number[]) => gpu.upload(host.get(`${m}.${name}`)!, shape);
    const W = {
      qkv: w('in_proj_qkv.weight', [convDim, D]), conv: w('conv1d.weight', [convDim, K]), a: w('in_proj_a.weight', [Hv, D]), b: w('in_proj_b.weight', [Hv, D]),
      aLog: w('A_log', [Hv]), dt: w('dt_bias', [Hv]), z: w('in_proj_z.weight', [valueDim, D]), norm: w('norm.weight', [Dv]), out: w('out_proj.weight', [D, valueDim]),
    };
    const convState = gpu.tensor([B, K - 1, convDim]), deltaState = gpu.tensor([B, Hv, Dk, Dv]);
    gpu.zero(convState);
    gpu.zero(deltaState);
    // the token mixer for tokens [t0, t1) of each row, carrying both states
    const run = async (t0: number, t1: number): Promise<Float32Array> => {
      const L = t1 - t0, T = B * L;
      const rows = new Float32Array(T * D);
      for (let b = 0; b < B; b++) rows.set(x.subarray((b * S + t0) * D, (b * S + t1) * D), b * L * D);
      const t = (r: number, c: number) => gpu.tensor([r, c]);
      const tx = gpu.upload(rows, [T, D]), mixed = t(T, convDim), conv = t(T, convDim);
      linear(gpu, tx, W.qkv, mixed);
      conv1dForward(gpu, { batch: B, len: L, channels: convDim, kernel: K }, mixed, W.conv, conv, convState);
      const split = (from: number, n: number): Tensor => {
        const out = t(T, n);
        copyInto(gpu, conv, out, { rows: T, cols: n, srcOffset: from, srcStride: convDim });
        return out;
      };
      const q = t(T, keyDim), k = t(T, keyDim), v = split(2 * keyDim, valueDim), r = gpu.tensor([T * Hk]);
      l2NormForward(gpu, split(0, keyDim), Dk, q, r, { eps: 1e-6 });
      l2NormForward(gpu, split(keyDim, keyDim), Dk, k, r, { eps: 1e-6 });
      const ta = t(T, Hv), tb = t(T, Hv), g = t(T, Hv), beta = t(T, Hv);
      linear(gpu, tx, W.a, ta);
      linear(gpu, tx, W.b, tb);
      deltaGatesForward(gpu, Hv, ta, tb, W.aLog, W.dt, g, beta);
      const core = t(T, valueDim), shape = { batch: B, len: L, keyHeads: Hk, valueHeads: Hv, keyDim: Dk, valueDim: Dv, scale: 1 / Math.sqrt(Dk) };
      if (L > 1) deltaRuleForward(gpu, shape, { q, k, v, g, beta }, core, { chunk: 4, state: deltaState });
      else deltaRuleRecurrent(gpu, shape, { q, k, v, g, beta }, core, deltaState);
      const z = t(T, valueDim), normed = gpu.tensor([T * Hv, Dv]), rstd = gpu.tensor([T * Hv]), out = t(T, D);
      linear(gpu, tx, W.z, z);
      rmsNormGatedForward(gpu, { ...core, shape: [T * Hv, Dv] }, z, W.norm, normed, rstd, { eps: a.eps });
      linear(gpu, { ...normed, shape: [T, valueDim] }, W.out, out);
      const y = await gpu.readF32(out);
      gpu.release(tx, mixed, conv, q, k, v, r, ta, tb, g, beta, core, z, normed, rstd, out);
      return y;
    };
    const want = (t0: number, t1: number) => {
      const L = t1 - t0, o = new Float64Array(B * L * D);
      for (let b = 0; b < B; b++) o.set(whole.subarray((b * S + t0) * D, (b * S + t1) * D), b * L * D);
      return o;
    };
    expectClose(await run(0, P), want(0, P), 1e-4, 'prefill', rng.seed);
    for (let t = P; t < S; t++) expectClose(await run(t, t + 1), want(t, t + 1), 1e-4, `decode token ${t}`, rng.seed);
    gpu.release(...Object.values(W), convState, deltaState);
  });
});
