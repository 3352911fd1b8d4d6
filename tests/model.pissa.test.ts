// PiSSA (pissa_init / pissa_iter / pissa_convert): the randomized SVD against an exact f64 one,
// W_res + s·B0·A0 = W, the base model's logits at step 0 and with the adapter off, the converted
// rank-2r adapter on the original base after training, resume on the same loss curve, and the
// configurations LLaMA-Factory refuses.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfig, parseConfig, ConfigError } from '../src/config';
import { trainOptionsFromConfig } from '../src/engine/options';
import { numel } from '../src/gpu/tensor';
import { addToF16 } from '../src/kernels/f16';
import { Adapter } from '../src/model/adapter';
import { dequantizeWeight } from '../src/model/dequant';
import { dirFiles } from '../src/model/files-node';
import { fullLogits, Workspace, type Batch } from '../src/model/forward';
import { svdLowRank, type MatrixOps } from '../src/model/lowrank-svd';
import { Model } from '../src/model/model';
import type { PissaOptions } from '../src/model/pissa';
import { floatToHalf } from '../src/model/safetensors';
import { Trainer, type LogRecord, type TrainOptions } from '../src/train/trainer';
import { makeRng, relErr, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { memoryStore } from './helpers/run-store';

const LLAMA = join(import.meta.dirname, 'fixtures/models/llama');

// ---- exact f64 reference: eigen-decomposition of AᵀA by cyclic Jacobi rotations ---------------

/** Singular values (descending) and right singular vectors (rows) of A [m, n], m >= n. */
function referenceSvd(A: Float64Array, m: number, n: number): { S: number[]; V: number[][] } {
  const G = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => {
    let s = 0;
    for (let k = 0; k < m; k++) s += A[k * n + i]! * A[k * n + j]!;
    return s;
  }));
  const E: number[][] = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += G[p]![q]! ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        if (Math.abs(G[p]![q]!) < 1e-300) continue;
        const theta = (G[q]![q]! - G[p]![p]!) / (2 * G[p]![q]!);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) {
          const gp = G[k]![p]!, gq = G[k]![q]!;
          G[k]![p] = c * gp - s * gq;
          G[k]![q] = s * gp + c * gq;
        }
        for (let k = 0; k < n; k++) {
          const gp = G[p]![k]!, gq = G[q]![k]!;
          G[p]![k] = c * gp - s * gq;
          G[q]![k] = s * gp + c * gq;
        }
        for (let k = 0; k < n; k++) {
          const ep = E[k]![p]!, eq = E[k]![q]!;
          E[k]![p] = c * ep - s * eq;
          E[k]![q] = s * ep + c * eq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => G[b]![b]! - G[a]![a]!);
  return { S: order.map((i) => Math.sqrt(Math.max(0, G[i]![i]!))), V: order.map((i) => E.map((row) => row[i]!)) };
}

const transpose = (A: Float64Array, m: number, n: number) => Float64Array.from({ length: m * n }, (_, e) => A[(e % m) * n + Math.floor(e / m)]!);

/** A [m, n] = Σ σ_i u_i v_iᵀ (orthonormal random u, v) + noise. */
function lowRankPlusNoise(rng: Rng, m: number, n: number, sigmas: number[], noise: number): Float64Array {
  const A = Float64Array.from({ length: m * n }, () => noise * rng.normal());
  const unit = (len: number, prev: Float64Array[]) => {
    const v = Float64Array.from({ length: len }, () => rng.normal());
    for (const p of prev) {
      const c = v.reduce((s, x, i) => s + x * p[i]!, 0);
      for (let i = 0; i < len; i++) v[i]! -= c * p[i]!;
    }
    const norm = Math.hypot(...v);
    return v.map((x) => x / norm);
  };
  const us: Float64Array[] = [], vs: Float64Array[] = [];
  sigmas.forEach((sigma) => {
    const u = unit(m, us), v = unit(n, vs);
    us.push(u);
    vs.push(v);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) A[i * n + j]! += sigma * u[i]! * v[j]!;
  });
  return A;
}

/** A host matrix as MatrixOps (f64 products). */
function hostOps(A: Float64Array, m: number, n: number): MatrixOps {
  return {
    rows: m,
    cols: n,
    times: async (x, q) => Float64Array.from({ length: q * m }, (_, e) => {
      const i = Math.floor(e / m), r = e % m;
      let s = 0;
      for (let k = 0; k < n; k++) s += A[r * n + k]! * x[i * n + k]!;
      return s;
    }),
    timesT: async (y, q) => Float64Array.from({ length: q * n }, (_, e) => {
      const i = Math.floor(e / n), c = e % n;
      let s = 0;
      for (let k = 0; k < m; k++) s += A[k * n + c]! * y[i * m + k]!;
      return s;
    }),
  };
}

/** Largest sine of the angles between span(rows of X) and span(ref vectors), both orthonormal. */
function subspaceSine(X: Float64Array, ref: number[][], r: number, len: number): number {
  let worst = 0;
  for (let i = 0; i < r; i++) {
    const v = Float64Array.from(X.subarray(i * len, (i + 1) * len));
    for (const p of ref.slice(0, r)) {
      const c = v.reduce((s, x, k) => s + x * p[k]!, 0);
      for (let k = 0; k < len; k++) v[k]! -= c * p[k]!;
    }
    worst = Math.max(worst, Math.hypot(...v));
  }
  return worst;
}

describe('randomized SVD (torch.svd_lowrank semantics)', () => {
  for (const [m, n] of [[40, 24], [24, 40]] as const) {
    it(`[${m}, ${n}] low rank plus noise: top singular values and subspaces of the exact SVD`, async () => {
      const rng = makeRng();
      const r = 4;
      const A = lowRankPlusNoise(rng, m, n, [10, 7, 5, 3, 0.5], 1e-3);
      const tall = m >= n ? referenceSvd(A, m, n) : referenceSvd(transpose(A, m, n), n, m);
      // right vectors of A are the reference's V when tall, its left vectors (A v / σ) when wide: compare via the tall side
      const normal = rng.normal;
      const fast = await svdLowRank(hostOps(A, m, n), { q: r, niter: 16, normal });
      const exact = await svdLowRank(hostOps(A, m, n), { q: Math.min(m, n, 2 * r + 8), niter: 300, converge: { rank: r, tol: 1e-12 }, normal });
      for (const svd of [fast, exact]) {
        for (let i = 0; i < r; i++) expect(Math.abs(svd.S[i]! - tall.S[i]!) / tall.S[i]!, `σ${i} (seed ${rng.seed})`).toBeLessThan(1e-9);
        const small = m >= n ? svd.V : svd.U; // the vectors of length min(m, n)
        expect(subspaceSine(small, tall.V, r, Math.min(m, n)), `subspace (seed ${rng.seed})`).toBeLessThan(1e-6);
      }
      // the full reconstruction A ≈ U S Vᵀ over all min(m, n) directions is exact
      const d = Math.min(m, n);
      const full = await svdLowRank(hostOps(A, m, n), { q: d, niter: 0, normal });
      const rebuilt = Float64Array.from({ length: m * n }, (_, e) => {
        const i = Math.floor(e / n), j = e % n;
        let s = 0;
        for (let k = 0; k < d; k++) s += full.U[k * m + i]! * full.S[k]! * full.V[k * n + j]!;
        return s;
      });
      expect(relErr(rebuilt, A)).toBeLessThan(1e-12);
    });
  }
});

// ---- PiSSA on a model ---------------------------------------------------------------------------

const rows = Array.from({ length: 4 }, (_, i) => {
  const ids = Array.from({ length: 16 }, (_, t) => (i * 37 + t * 11 + 5) % 256);
  return { input_ids: ids, labels: ids };
});
const batch: Batch = {
  B: 2, S: 16,
  ids: Int32Array.from([...rows[0]!.input_ids, ...rows[1]!.input_ids]),
  labels: new Int32Array(32).fill(-100),
  positions: Int32Array.from({ length: 32 }, (_, i) => i % 16),
};

function options(pissa: PissaOptions, over: Partial<TrainOptions> = {}): TrainOptions {
  return {
    finetuningType: 'lora', lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'gate_proj', 'down_proj'], pissa }, learningRate: 2e-2, scheduler: 'constant', warmupSteps: 0,
    warmupRatio: 0, epochs: 1, maxSteps: 4, batchSize: 2, gradAccum: 1, maxGradNorm: 1, weightDecay: 0, beta1: 0.9, beta2: 0.999,
    eps: 1e-8, neftuneAlpha: 0, seed: 7, loggingSteps: 1, saveSteps: 2, evalSteps: 0, cutoffLen: 16, recompute: true, ...over,
  };
}

async function logitsOf(model: Model): Promise<Float32Array> {
  const gpu = model.gpu;
  const ws = new Workspace(model, batch.B, batch.S, false);
  ws.load(batch);
  const out = gpu.tensor([batch.B * batch.S, model.spec.vocab]);
  fullLogits(ws, out);
  const logits = await gpu.readF32(out);
  gpu.release(out);
  ws.release();
  return logits;
}

async function baseWeights(model: Model): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const s of model.sites()) out.set(s.name, await dequantizeWeight(model.gpu, s.weight, s.outFeatures, s.inFeatures));
  return out;
}

const bytesOf = (d: Uint8Array | string | undefined) => (typeof d === 'string' ? new TextEncoder().encode(d) : d!);
const source = (name: string, bytes: Uint8Array) => ({ name, size: bytes.length, read: async (o: number, n: number) => bytes.subarray(o, o + n) });

describe('PiSSA initialisation', () => {
  for (const iter of [16, -1]) {
    it(`pissa_iter ${iter}: W_res + s·B0·A0 = W, A0/B0 from the top singular triplets, base logits at step 0 and with the adapter off`, async () => {
      const gpu = await testGpu();
      const model = await Model.load(gpu, dirFiles(LLAMA));
      const W = await baseWeights(model);
      const base = await logitsOf(model);
      const trainer = await Trainer.create(model, rows, [], options({ iter, convert: true }), 0);
      const adapter = trainer.adapter!;
      const s = 8 / 4, r = 4;
      const params = new Map(await Promise.all(adapter.params().map(async (p) => [p.name, await gpu.readF32(p.value)] as const)));
      for (const site of adapter.sites) {
        const key = `base_model.model.${site.name}`;
        const A = params.get(`${key}.lora_A.weight`)!, B = params.get(`${key}.lora_B.weight`)!;
        const N = site.outFeatures, K = site.inFeatures;
        const res = await dequantizeWeight(gpu, site.weight, N, K);
        const rebuilt = Float64Array.from(res, (w, e) => {
          const n = Math.floor(e / K), k = e % K;
          let d = 0;
          for (let j = 0; j < r; j++) d += B[n * r + j]! * A[j * K + k]!;
          return w + s * d;
        });
        expect(relErr(rebuilt, W.get(site.name)!), site.name).toBeLessThan(1e-5);
        // s·||a_i||·||b_i|| = σ_i of W (A rows and B columns scaled by sqrt(σ / s))
        const ref = N >= K ? referenceSvd(Float64Array.from(W.get(site.name)!), N, K) : referenceSvd(transpose(Float64Array.from(W.get(site.name)!), N, K), K, N);
        for (let i = 0; i < r; i++) {
          let a2 = 0, b2 = 0;
          for (let k = 0; k < K; k++) a2 += A[i * K + k]! ** 2;
          for (let n = 0; n < N; n++) b2 += B[n * r + i]! ** 2;
          const sigma = s * Math.sqrt(a2 * b2);
          // exact: σ_i; 16 power iterations without oversampling (PEFT's q = r) on a random
          // weight with close singular values: Ritz values, below σ_i and near it
          if (iter === -1) expect(Math.abs(sigma - ref.S[i]!) / ref.S[0]!, `${site.name} σ${i}`).toBeLessThan(1e-5);
          else expect(sigma / ref.S[i]!, `${site.name} σ${i}`).toSatisfy((x: number) => x <= 1 + 1e-5 && x > 0.9);
        }
      }
      expect(relErr(await logitsOf(model), base)).toBeLessThan(1e-5);
      const off = await adapter.withDisabled(() => logitsOf(model));
      expect(relErr(off, base)).toBeLessThan(1e-5);
      trainer.release();
      adapter.release(); // gives the base its weights back
      for (const site of model.sites()) {
        expect(relErr(await dequantizeWeight(gpu, site.weight, site.outFeatures, site.inFeatures), W.get(site.name)!), site.name).toBeLessThan(1e-6);
      }
    });
  }

  it('addToF16: f16 weights updated from f32 deltas (the residual of an f16 base)', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    for (const n of [7, 1030]) {
      const w = rng.randn(n), d = rng.randn(n, 0.1);
      const bits = Uint16Array.from(w, floatToHalf);
      const t = gpu.upload(bits, [n], 'f16');
      const delta = gpu.upload(d, [n]);
      addToF16(gpu, t, delta);
      const got = await gpu.readF32(t);
      const before = await gpu.readF32(gpu.upload(bits, [n], 'f16'));
      const want = Float32Array.from(before, (x, i) => x + d[i]!);
      expect(numel(t.shape)).toBe(n);
      expect(relErr(got, want), `seed ${rng.seed}`).toBeLessThan(1e-3); // f16 rounding
      gpu.release(t, delta);
    }
  });
});

describe('PiSSA training, saving and resume', () => {
  it('the converted rank-2r adapter on the original base gives the trained model; resume continues the loss curve', async () => {
    const gpu = await testGpu();
    const store = memoryStore();
    const model = await Model.load(gpu, dirFiles(LLAMA));
    const trainer = await Trainer.create(model, rows, [], options({ iter: 4, convert: true }), 0);
    const logs: LogRecord[] = [];
    await trainer.run(store, { onLog: (l) => logs.push(l) });
    const trained = await logitsOf(model);
    const adapter = trainer.adapter!;
    const config = JSON.parse(adapter.configJson(null));
    expect([config.r, config.lora_alpha, config.init_lora_weights]).toEqual([8, 16, true]);
    const weights = await adapter.safetensors();
    const initFiles = [...store.files.keys()].filter((k) => k.startsWith('checkpoint-2/pissa_init/'));
    expect(initFiles.sort()).toEqual(['checkpoint-2/pissa_init/adapter_config.json', 'checkpoint-2/pissa_init/adapter_model.safetensors']);
    trainer.release();

    // the original base with the converted adapter
    const plain = await Model.load(gpu, dirFiles(LLAMA));
    const converted = await Adapter.load(plain, adapter.configJson(null), source('converted', weights));
    expect(relErr(await logitsOf(plain), trained)).toBeLessThan(1e-4);
    converted.release();
    adapter.release();

    // resume from checkpoint-2: steps 3 and 4 as before, even where this run's own SVD differs
    // (pissa_iter 1): the base becomes W - s·B0·A0 with the checkpoint's initial adapter
    for (const iter of [1]) {
      const again = await Model.load(gpu, dirFiles(LLAMA));
      const resumed = await Trainer.create(again, rows, [], options({ iter, convert: true }), 0);
      await resumed.resume(store, 'checkpoint-2');
      const more: LogRecord[] = [];
      await resumed.run(null, { onLog: (l) => more.push(l) });
      expect(more.map((l) => l.current_steps)).toEqual([3, 4]);
      more.forEach((l, i) => expect(l.loss, `pissa_iter ${iter}, step ${l.current_steps}`).toBeCloseTo(logs[i + 2]!.loss!, 5));
      resumed.release();
      resumed.adapter!.release();
    }
  });

  it('pissa_convert false: saved as PiSSA (init_lora_weights "pissa_niter_N"), which Crucible refuses to put on the original base', async () => {
    const gpu = await testGpu();
    const model = await Model.load(gpu, dirFiles(LLAMA));
    const trainer = await Trainer.create(model, rows, [], options({ iter: 3, convert: false }, { maxSteps: 1 }), 0);
    await trainer.run(null);
    const adapter = trainer.adapter!;
    const config = JSON.parse(adapter.configJson(null));
    expect([config.r, config.lora_alpha, config.init_lora_weights]).toEqual([4, 8, 'pissa_niter_3']);
    const weights = await adapter.safetensors();
    trainer.release();
    adapter.release();
    await expect(Adapter.load(model, JSON.stringify(config), source('pissa', weights))).rejects.toThrow(/PiSSA adapter saved without conversion.*pissa_convert: true/);
  });
});

describe('PiSSA configurations LLaMA-Factory refuses', () => {
  const cfg = (over: Record<string, unknown>) => ({ ...defaultConfig(), finetuning_type: 'lora' as const, pissa_init: true, ...over });

  it('maps pissa_init / pissa_iter / pissa_convert, and refuses stages with a reference model', () => {
    expect(trainOptionsFromConfig(cfg({ pissa_iter: -1, pissa_convert: true })).lora!.pissa).toEqual({ iter: -1, convert: true });
    expect(trainOptionsFromConfig(cfg({ pissa_init: false })).lora!.pissa).toBeNull();
    expect(() => trainOptionsFromConfig(cfg({ stage: 'kto' }))).toThrow(/pissa_init cannot be used with stage kto/);
    expect(() => trainOptionsFromConfig(cfg({ stage: 'dpo', pref_loss: 'sigmoid' }))).toThrow(/stage dpo \(pref_loss sigmoid\).*orpo or simpo/);
    expect(trainOptionsFromConfig(cfg({ stage: 'dpo', pref_loss: 'orpo' })).lora!.pissa).toEqual({ iter: 16, convert: false });
  });

  it('refuses quantization_bit (config and engine) and continuing from an adapter', async () => {
    expect(() => parseConfig('model_name_or_path: m\nfinetuning_type: lora\nquantization_bit: 4\npissa_init: true')).toThrow(ConfigError);
    expect(() => parseConfig('model_name_or_path: m\nfinetuning_type: lora\nquantization_bit: 4\npissa_init: true')).toThrow(/pissa_init cannot initialize from a quantized model/);
    const gpu = await testGpu();
    const q4 = await Model.load(gpu, dirFiles(LLAMA), { format: 'q4' });
    await expect(Trainer.create(q4, rows, [], options({ iter: 16, convert: false }), 0)).rejects.toThrow(/q4-quantized.*LLaMA-Factory refuses this as well/);
    const model = await Model.load(gpu, dirFiles(LLAMA));
    const initialAdapter = { configJson: '{}', weights: source('a', new Uint8Array()) };
    await expect(Trainer.create(model, rows, [], { ...options({ iter: 16, convert: false }), initialAdapter }, 0)).rejects.toThrow(/cannot continue from adapter_name_or_path/);
  });
});
