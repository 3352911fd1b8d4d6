// The Gated DeltaNet kernels composed into one Qwen3.5 linear-attention token mixer (the recipe the
// model wiring follows) against the f64 reference layer of tests/reference/transformer.ts:
//   in_proj_qkv -> conv1d + SiLU -> q | k | v columns -> l2norm(q), l2norm(k); in_proj_a/b -> gates;
//   delta rule (chunked) -> RMSNormGated(core, in_proj_z) -> out_proj
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import type { Tensor } from '../src/gpu/tensor';
import { conv1dForward } from '../src/kernels/conv1d';
import { deltaRuleForward } from '../src/kernels/delta-rule';
import { copyInto } from '../src/kernels/elementwise';
import { deltaGatesForward } from '../src/kernels/gates';
import { linear } from '../src/kernels/matmul';
import { l2NormForward, rmsNormGatedForward } from '../src/kernels/norm';
import { expectClose, makeRng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { refArch, refGatedDeltaNet, refParameters } from './reference/transformer';

const config = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/synthetic/qwen3_5_text/config.json'), 'utf8')) as Record<string, unknown>;

describe('Gated DeltaNet token mixer from the kernels', () => {
  it('matches the reference layer on two rows of 13 tokens (chunks of 4)', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const a = refArch(config);
    const { Hk, Hv, Dk, Dv, kernel: K } = a.deltaNet!;
    const [B, S, D] = [2, 13, a.hidden];
    const T = B * S, keyDim = Hk * Dk, valueDim = Hv * Dv, convDim = 2 * keyDim + valueDim;
    const m = 'model.layers.0.linear_attn';
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
    l2NormForward(gpu, split(0, keyDim), Dk, q, rq, { eps: 1e-6 });
    l2NormForward(gpu, split(keyDim, keyDim), Dk, k, rk, { eps: 1e-6 });
    const v = split(2 * keyDim, valueDim);
    const ta = t(T, Hv), tb = t(T, Hv), g = t(T, Hv), beta = t(T, Hv);
    linear(gpu, tx, w('in_proj_a.weight', [Hv, D]), ta);
    linear(gpu, tx, w('in_proj_b.weight', [Hv, D]), tb);
    deltaGatesForward(gpu, Hv, ta, tb, w('A_log', [Hv]), w('dt_bias', [Hv]), g, beta);
    const core = t(T, valueDim);
    deltaRuleForward(gpu, { batch: B, len: S, keyHeads: Hk, valueHeads: Hv, keyDim: Dk, valueDim: Dv, scale: 1 / Math.sqrt(Dk) }, { q, k, v, g, beta }, core, { chunk: 4 });
    const z = t(T, valueDim), normed = gpu.tensor([T * Hv, Dv]), rstd = gpu.tensor([T * Hv]), out = t(T, D);
    linear(gpu, tx, w('in_proj_z.weight', [valueDim, D]), z);
    rmsNormGatedForward(gpu, { ...core, shape: [T * Hv, Dv] }, z, w('norm.weight', [Dv]), normed, rstd, { eps: a.eps });
    linear(gpu, { ...normed, shape: [T, valueDim] }, w('out_proj.weight', [D, valueDim]), out);
    expectClose(await gpu.readF32(out), ref, 1e-4, 'token mixer output', rng.seed);
  });
});
