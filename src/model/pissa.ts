// PiSSA (Meng et al. 2024, arXiv:2404.02948): the adapter starts on the principal singular
// directions of each target weight and the base keeps the residual, as PEFT's
// LoraLayer.pissa_init does it (peft/tuners/lora/layer.py):
//   W ≈ U_r S_r Vh_r,  A0 = diag(sqrt(S_r / s)) Vh_r,  B0 = U_r diag(sqrt(S_r / s)),  W_res = W - s·B0·A0
// (s the LoRA scaling), so W_res + s·B0·A0 = W: training starts from the base model's function.
// LLaMA-Factory (model/adapter.py) turns pissa_iter into init_lora_weights "pissa_niter_<iter>",
// which is torch.svd_lowrank(W, q = r, niter = iter), and -1 into "pissa", a full SVD. Here both
// go through lowrank-svd.ts with the products W·X and Wᵀ·Y on the GPU (matmul.ts linear and
// linearBackwardInput); -1 samples min(d, 2r + 8) directions and iterates until the top-r
// subspace settles to f32 precision — exact when that covers min(N, K), a converged subspace
// iteration (not LAPACK) for bigger weights.
//
// Saving, as PEFT's save_pretrained(path_initial_model_for_weight_conversion=...) with
// LoraModel.subtract_mutated_init:  W + ΔW = W_res + s·B·A  ⇒  ΔW = s·(B·A - B0·A0)
//   = s·[B | -B0]·[A ; A0], a standard LoRA of rank 2r on the ORIGINAL base, lora_alpha doubled
// (times sqrt 2 with rsLoRA) so that s is unchanged. Without conversion the adapter is saved as
// trained, with init_lora_weights "pissa_niter_<iter>" / "pissa": PEFT rebuilds W_res from the
// original base on load (a fresh SVD); Crucible's own loader refuses such an adapter.
//
// In the session the base holds W_res; "adapter off" (base-vs-tuned chat, preference reference)
// puts the initial adapter (A0, B0) on instead, which is W again, and releasing the adapter adds
// s·B0·A0 back to the base.

import type { Gpu } from '../gpu/runtime';
import type { Tensor } from '../gpu/tensor';
import type { LoraWeights } from '../kernels/lora';
import { addToF16 } from '../kernels/f16';
import { gemm, linear, linearBackwardInput, weightParts } from '../kernels/matmul';
import type { AdapterInitialiser } from './adapter';
import type { LinearSite } from './linear';
import { svdLowRank, type MatrixOps, type Svd } from './lowrank-svd';
import type { Model, ModuleRef } from './model';
import { loraScaling, peftKey, type LoraSettings, type NamedTensors } from './peft';
import { encodeSafetensors, readF32, type SafetensorsFile } from './safetensors';

export interface PissaOptions {
  /** Power iterations of the randomized SVD (LLaMA-Factory's pissa_iter, default 16); -1: exact SVD. */
  iter: number;
  /** Save the trained adapter as a standard LoRA for the original base (pissa_convert). */
  convert: boolean;
}

/** Where LLaMA-Factory's PissaConvertCallback keeps the initial adapter (output_dir/pissa_init). */
export const PISSA_INIT_DIR = 'pissa_init';

interface InitialModule {
  ref: ModuleRef;
  key: string;
  /** [r, K] and [N, r] on the host, and on the GPU. */
  A0: Float32Array;
  B0: Float32Array;
  a0: Tensor;
  b0: Tensor;
  /** The initial adapter per site ("adapter off" view). */
  views: Map<LinearSite, LoraWeights>;
  owned: Tensor[];
}

export class Pissa implements AdapterInitialiser {
  private readonly modules: InitialModule[] = [];
  readonly scaling: number;

  /** `seed` draws the SVDs' random starts (one stream per module, so they can run side by side). */
  constructor(readonly model: Model, readonly settings: LoraSettings, readonly opts: PissaOptions, private readonly seed: number) {
    if (!(Number.isInteger(opts.iter) && opts.iter >= -1)) throw new Error(`pissa_iter: expected -1 (exact SVD) or a number of iterations >= 0, got ${opts.iter}`);
    this.scaling = loraScaling(settings);
    if (!(this.scaling > 0)) throw new Error(`pissa_init: needs a positive LoRA scaling (lora_alpha ${settings.alpha}, rank ${settings.rank})`);
  }

  /** A0, B0 of each module, with the base weights replaced by W_res (Adapter.create's initialiser). */
  async init(mods: readonly ModuleRef[]): Promise<{ A: Float32Array; B: Float32Array }[]> {
    const r = this.settings.rank;
    for (const mod of mods) {
      for (const { site } of mod.parts) {
        for (const w of weightParts(site.weight)) {
          if (w.dtype !== 'f32' && w.dtype !== 'f16') {
            // LLaMA-Factory refuses too (hparams/parser.py, model/adapter.py); PEFT: "initialize PiSSA under float32, float16, or bfloat16"
            throw new Error(`pissa_init: ${site.name} is ${w.dtype}-quantized (quantization_bit); PiSSA needs the unquantized weights. `
              + 'LLaMA-Factory refuses this as well ("Please use scripts/pissa_init.py to initialize PiSSA for a quantized model"): train without quantization_bit');
          }
        }
      }
      if (r > Math.min(mod.outFeatures, mod.inFeatures)) throw new Error(`pissa_init: lora_rank ${r} exceeds the smaller side of ${mod.name} [${mod.outFeatures}, ${mod.inFeatures}]`);
    }
    const out: { A: Float32Array; B: Float32Array }[] = [];
    // modules side by side: their GPU round trips overlap (each SVD waits on many small readbacks)
    for (let c = 0; c < mods.length; c += CONCURRENT_MODULES) {
      const chunk = mods.slice(c, c + CONCURRENT_MODULES);
      const svds = await Promise.all(chunk.map((mod, i) => this.topSingular(moduleOps(this.model.gpu, mod), r, gaussian(this.seed, c + i))));
      chunk.forEach((mod, i) => out.push(this.initModule(mod, svds[i]!)));
    }
    return out;
  }

  private initModule(mod: ModuleRef, svd: Svd): { A: Float32Array; B: Float32Array } {
    const r = this.settings.rank, N = mod.outFeatures, K = mod.inFeatures;
    const A0 = new Float32Array(r * K), B0 = new Float32Array(N * r);
    for (let i = 0; i < r; i++) {
      const g = Math.sqrt(svd.S[i]! / this.scaling);
      for (let k = 0; k < K; k++) A0[i * K + k] = g * svd.V[i * K + k]!;
      for (let n = 0; n < N; n++) B0[n * r + i] = g * svd.U[i * N + n]!;
    }
    const m = this.track(mod, A0, B0);
    this.modules.push(m);
    this.shiftBase(m, -this.scaling);
    return { A: A0, B: B0 };
  }

  /** The top-r singular triplets as PEFT asks torch for them. */
  private topSingular(ops: MatrixOps, r: number, normal: () => number): Promise<Svd> {
    const d = Math.min(ops.rows, ops.cols);
    if (this.opts.iter >= 0) return svdLowRank(ops, { q: r, niter: this.opts.iter, normal });
    const q = Math.min(d, 2 * r + 8);
    // q = d spans the whole range after the first product: no iteration needed
    return svdLowRank(ops, { q, niter: q === d ? 0 : 300, converge: { rank: r, tol: 1e-6 }, normal });
  }

  private track(ref: ModuleRef, A0: Float32Array, B0: Float32Array): InitialModule {
    const gpu = this.model.gpu;
    const r = this.settings.rank, K = ref.inFeatures, key = peftKey(ref);
    const a0 = gpu.upload(A0, [r, K], 'f32', `${key}.pissa_init.lora_A`);
    const b0 = gpu.upload(B0, [ref.outFeatures, r], 'f32', `${key}.pissa_init.lora_B`);
    const owned = [a0, b0];
    const views = new Map<LinearSite, LoraWeights>();
    for (const { site, row } of ref.parts) {
      const n = site.outFeatures;
      const B = n === ref.outFeatures ? b0 : gpu.upload(B0.subarray(row * r, (row + n) * r), [n, r], 'f32', `${key}.pissa_init.lora_B`);
      if (B !== b0) owned.push(B);
      views.set(site, { A: a0, B, scaling: this.scaling });
    }
    return { ref, key, A0, B0, a0, b0, views, owned };
  }

  /** W += alpha·B0·A0 on every part of the module's base weight (f32 in place; f16 through an f32 delta). */
  private shiftBase(m: InitialModule, alpha: number): void {
    const gpu = this.model.gpu;
    const r = this.settings.rank, K = m.ref.inFeatures;
    for (const { site, row } of m.ref.parts) {
      let r0 = 0;
      for (const w of weightParts(site.weight)) {
        const n = w.shape[0]!;
        const product = { a: m.b0, b: m.a0, M: n, N: K, K: r, offA: (row + r0) * r, alpha };
        if (w.dtype === 'f32') gemm(gpu, { ...product, c: w, beta: 1 });
        else {
          const delta = gpu.tensor([n, K], 'f32', `${site.name}.pissa_delta`);
          gemm(gpu, { ...product, c: delta, beta: 0 });
          addToF16(gpu, w, delta);
          gpu.release(delta);
        }
        r0 += n;
      }
    }
  }

  /** The initial adapter on a site: W_res + s·B0·A0 = W, the original base ("adapter off"). */
  initialLora(site: LinearSite): LoraWeights | null {
    for (const m of this.modules) {
      const v = m.views.get(site);
      if (v) return v;
    }
    return null;
  }

  /** adapter_config.json as saved: converted (rank 2r) or PiSSA's own. */
  publishedConfig(cfg: Record<string, unknown>): Record<string, unknown> {
    if (!this.opts.convert) return { ...cfg, init_lora_weights: this.opts.iter === -1 ? 'pissa' : `pissa_niter_${this.opts.iter}` };
    const alpha = Number(cfg.lora_alpha);
    return { ...cfg, r: 2 * Number(cfg.r), lora_alpha: this.settings.rslora ? alpha * Math.SQRT2 : 2 * alpha, init_lora_weights: true };
  }

  /** Adapter tensors as saved: with conversion lora_A = [A ; A0] (rows), lora_B = [B | -B0] (columns). */
  publishedTensors(tensors: NamedTensors): NamedTensors {
    if (!this.opts.convert) return tensors;
    const out: NamedTensors = { ...tensors };
    const r = this.settings.rank;
    for (const m of this.modules) {
      const A = tensors[`${m.key}.lora_A.weight`]!, B = tensors[`${m.key}.lora_B.weight`]!;
      const K = m.ref.inFeatures, N = m.ref.outFeatures;
      const A2 = new Float32Array(2 * r * K);
      A2.set(A.data);
      A2.set(m.A0, r * K);
      const B2 = new Float32Array(N * 2 * r);
      for (let n = 0; n < N; n++) {
        for (let j = 0; j < r; j++) {
          B2[n * 2 * r + j] = B.data[n * r + j]!;
          B2[n * 2 * r + r + j] = -m.B0[n * r + j]!;
        }
      }
      out[`${m.key}.lora_A.weight`] = { dtype: 'F32', shape: [2 * r, K], data: A2 };
      out[`${m.key}.lora_B.weight`] = { dtype: 'F32', shape: [N, 2 * r], data: B2 };
    }
    return out;
  }

  /** The initial adapter as LLaMA-Factory's PissaConvertCallback saves it (init_lora_weights: true). */
  initialFiles(plainConfig: Record<string, unknown>): { 'adapter_config.json': string; 'adapter_model.safetensors': Uint8Array } {
    const r = this.settings.rank;
    const tensors: NamedTensors = {};
    for (const m of this.modules) {
      tensors[`${m.key}.lora_A.weight`] = { dtype: 'F32', shape: [r, m.ref.inFeatures], data: m.A0 };
      tensors[`${m.key}.lora_B.weight`] = { dtype: 'F32', shape: [m.ref.outFeatures, r], data: m.B0 };
    }
    return {
      'adapter_config.json': JSON.stringify({ ...plainConfig, init_lora_weights: true }, null, 2),
      'adapter_model.safetensors': encodeSafetensors(tensors, { format: 'pt' }),
    };
  }

  /** The shape publishedTensors gives a trained tensor: converted, lora_A and lora_B have rank 2r. */
  publishedShape(name: string, shape: readonly number[]): readonly number[] {
    if (!this.opts.convert) return shape;
    if (name.endsWith('.lora_A.weight')) return [2 * shape[0]!, shape[1]!];
    if (name.endsWith('.lora_B.weight')) return [shape[0]!, 2 * shape[1]!];
    return shape;
  }

  /** A trained tensor from a saved adapter: the first r rows of lora_A / columns of lora_B when converted. */
  async readTrained(file: SafetensorsFile, name: string): Promise<Float32Array> {
    const data = await readF32(file, name);
    if (!this.opts.convert) return data;
    const r = this.settings.rank;
    if (name.endsWith('.lora_A.weight')) return data.slice(0, data.length / 2);
    if (!name.endsWith('.lora_B.weight')) return data;
    const N = data.length / (2 * r);
    return Float32Array.from({ length: N * r }, (_, i) => data[Math.floor(i / r) * 2 * r + (i % r)]!);
  }

  /**
   * Take A0, B0 from a checkpoint's pissa_init adapter (resume): the base becomes W - s·B0·A0 with
   * the stored initial adapter, so the run continues on exactly its residual. Nothing changes when
   * this session computed the same A0, B0 (the same seed on the same device).
   */
  async restoreInitial(file: SafetensorsFile): Promise<void> {
    const gpu = this.model.gpu;
    for (let i = 0; i < this.modules.length; i++) {
      const m = this.modules[i]!;
      const A0 = await readF32(file, `${m.key}.lora_A.weight`), B0 = await readF32(file, `${m.key}.lora_B.weight`);
      if (A0.length !== m.A0.length || B0.length !== m.B0.length) throw new Error(`${file.source.name}: the initial adapter of ${m.ref.name} does not match rank ${this.settings.rank}`);
      if (equal(A0, m.A0) && equal(B0, m.B0)) continue;
      this.shiftBase(m, this.scaling);
      gpu.release(...m.owned);
      this.modules[i] = this.track(m.ref, A0, B0);
      this.shiftBase(this.modules[i]!, -this.scaling);
    }
  }

  /** Give the base its original weights back (W_res + s·B0·A0) and free the initial adapter. */
  release(): void {
    for (const m of this.modules) {
      this.shiftBase(m, this.scaling);
      this.model.gpu.release(...m.owned);
    }
    this.modules.length = 0;
  }
}

/** SVDs computed at once (bounded: each holds its [q, N + K] vectors on the host). */
const CONCURRENT_MODULES = 16;

/** Standard normal samples for module `index` (Box-Muller over a mulberry32 stream): torch.randn's role in svd_lowrank. */
function gaussian(seed: number, index: number): () => number {
  let s = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca77)) >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

const equal = (a: Float32Array, b: Float32Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * A module's base weight [N, K] (a fused module: its parts stacked by rows) as products with row
 * sets, on the GPU: W·X is linear(X, W), Wᵀ·Y is linearBackwardInput(Y, W).
 */
function moduleOps(gpu: Gpu, mod: ModuleRef): MatrixOps {
  const N = mod.outFeatures, K = mod.inFeatures;
  return {
    rows: N,
    cols: K,
    async times(x, q) {
      const xt = gpu.upload(Float32Array.from(x), [q, K]);
      const out = new Float64Array(q * N);
      for (const { site, row } of mod.parts) {
        const n = site.outFeatures;
        const y = gpu.tensor([q, n]);
        linear(gpu, xt, site.weight, y);
        const data = await gpu.readF32(y);
        gpu.release(y);
        for (let i = 0; i < q; i++) for (let j = 0; j < n; j++) out[i * N + row + j] = data[i * n + j]!;
      }
      gpu.release(xt);
      return out;
    },
    async timesT(y, q) {
      const dx = gpu.tensor([q, K]);
      const inputs = mod.parts.map(({ site, row }, p) => {
        const n = site.outFeatures;
        const dy = gpu.upload(Float32Array.from({ length: q * n }, (_, e) => y[Math.floor(e / n) * N + row + (e % n)]!), [q, n]);
        linearBackwardInput(gpu, dy, site.weight, dx, p > 0);
        return dy;
      });
      const out = Float64Array.from(await gpu.readF32(dx));
      gpu.release(dx, ...inputs);
      return out;
    },
  };
}
