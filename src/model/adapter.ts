// LoRA / DoRA adapters in PEFT's format: attach fresh ones (PEFT's initialisation), load and save
// adapter_config.json + adapter_model.safetensors, and list the trainable tensors.

import type { Gpu } from '../gpu/runtime';
import type { Tensor } from '../gpu/tensor';
import type { LinearSite } from './linear';
import { SITE_KINDS, type Model } from './model';
import { dequantizeWeight } from './dequant';
import { encodeSafetensors, openSafetensors, readF32, type ByteSource } from './safetensors';

export interface LoraSettings {
  rank: number;
  alpha: number;
  /** Module names (q_proj, ...) or 'all' for every linear layer but the output head. */
  targets: readonly string[] | 'all';
  dropout?: number;
  rslora?: boolean;
  dora?: boolean;
  /** Only these layers (freeze-style targeting); all when absent. */
  layers?: readonly number[];
}

export interface TrainableTensor {
  /** Name as saved in the checkpoint / adapter file. */
  name: string;
  value: Tensor;
  grad: Tensor;
  /** AdamW weight decay applies (HF Trainer: not to biases and norm weights). */
  decay: boolean;
  /** Learning-rate multiplier (LoRA+ gives B a larger rate). */
  lrScale: number;
}

export const loraScaling = (s: LoraSettings): number => (s.rslora ? s.alpha / Math.sqrt(s.rank) : s.alpha / s.rank);

/** PEFT's key prefix for a module of a causal LM. */
export const peftKey = (site: LinearSite): string => `base_model.model.${site.name}`;

export function resolveTargets(model: Model, targets: readonly string[] | 'all', where = 'lora_target'): Set<string> {
  const valid = new Set<string>(SITE_KINDS);
  const list = targets === 'all' || (targets.length === 1 && targets[0] === 'all') ? [...valid] : targets;
  for (const t of list) {
    if (!valid.has(t)) throw new Error(`${where}: "${t}" is not a linear layer of ${model.spec.arch}; valid: all, ${[...valid].join(', ')}`);
  }
  return new Set(list);
}

export class Adapter {
  readonly sites: LinearSite[] = [];
  private disabled = new Map<LinearSite, NonNullable<LinearSite['lora']>>();

  private constructor(readonly model: Model, readonly settings: LoraSettings) {}

  /** Fresh adapter as PEFT initialises it: A ~ kaiming-uniform(a=sqrt(5)), B = 0, DoRA magnitude = ||W|| per row. */
  static async create(model: Model, settings: LoraSettings, random: () => number): Promise<Adapter> {
    const ad = new Adapter(model, settings);
    for (const site of ad.targetSites()) {
      const r = settings.rank, K = site.inFeatures, N = site.outFeatures;
      const bound = 1 / Math.sqrt(K);
      const A = Float32Array.from({ length: r * K }, () => (2 * random() - 1) * bound);
      const magnitude = settings.dora ? await rowNorms(model.gpu, site) : undefined;
      ad.attach(site, A, new Float32Array(N * r), magnitude);
    }
    return ad;
  }

  /** Load a PEFT adapter (adapter_config.json + adapter_model.safetensors). */
  static async load(model: Model, configJson: string, weights: ByteSource): Promise<Adapter> {
    const cfg = JSON.parse(configJson) as Record<string, unknown>;
    if (cfg.peft_type !== 'LORA') throw new Error(`${weights.name}: adapter type ${String(cfg.peft_type)} is not LORA`);
    const targets = cfg.target_modules;
    const settings: LoraSettings = {
      rank: Number(cfg.r),
      alpha: Number(cfg.lora_alpha),
      targets: typeof targets === 'string' ? (targets === 'all-linear' ? 'all' : [targets]) : ((targets as string[]) ?? 'all'),
      dropout: Number(cfg.lora_dropout ?? 0),
      rslora: cfg.use_rslora === true,
      dora: cfg.use_dora === true,
    };
    const file = await openSafetensors(weights);
    const ad = new Adapter(model, settings);
    const used = new Set<string>();
    for (const site of model.sites()) {
      const key = peftKey(site);
      const aKey = `${key}.lora_A.weight`;
      if (!file.tensors.has(aKey)) continue;
      const r = settings.rank;
      const A = await readF32(file, aKey);
      const bKey = `${key}.lora_B.weight`;
      if (!file.tensors.has(bKey)) throw new Error(`${weights.name}: ${aKey} has no matching ${bKey}`);
      const B = await readF32(file, bKey);
      if (A.length !== r * site.inFeatures) throw new Error(`${weights.name}: ${aKey} has ${A.length} values, expected [${r}, ${site.inFeatures}]`);
      if (B.length !== site.outFeatures * r) throw new Error(`${weights.name}: ${bKey} has ${B.length} values, expected [${site.outFeatures}, ${r}]`);
      let magnitude: Float32Array | undefined;
      if (settings.dora) {
        const mKey = `${key}.lora_magnitude_vector`;
        if (!file.tensors.has(mKey)) throw new Error(`${weights.name}: DoRA adapter lacks ${mKey}`);
        magnitude = await readF32(file, mKey);
        used.add(mKey);
      }
      ad.attach(site, A, B, magnitude);
      used.add(aKey).add(bKey);
    }
    if (ad.sites.length === 0) throw new Error(`${weights.name}: no LoRA weights match this model's layers (keys like ${peftKey(model.sites()[0]!)}.lora_A.weight)`);
    const unused = [...file.tensors.keys()].filter((k) => !used.has(k));
    if (unused.length) throw new Error(`${weights.name}: tensors that match no layer of this model: ${unused.slice(0, 3).join(', ')}${unused.length > 3 ? ' ...' : ''}`);
    return ad;
  }

  private targetSites(): LinearSite[] {
    const kinds = resolveTargets(this.model, this.settings.targets);
    const layers = this.settings.layers ? new Set(this.settings.layers) : null;
    return this.model.layers
      .filter((l) => !layers || layers.has(l.index))
      .flatMap((l) => SITE_KINDS.filter((k) => kinds.has(k)).map((k) => l.sites[k]));
  }

  private attach(site: LinearSite, A: Float32Array, B: Float32Array, magnitude?: Float32Array): void {
    const gpu = this.model.gpu;
    const r = this.settings.rank, K = site.inFeatures, N = site.outFeatures;
    const key = peftKey(site);
    site.lora = {
      A: gpu.upload(A, [r, K], 'f32', `${key}.lora_A.weight`),
      B: gpu.upload(B, [N, r], 'f32', `${key}.lora_B.weight`),
      scaling: loraScaling(this.settings),
      ...(magnitude ? { magnitude: gpu.upload(magnitude, [N], 'f32', `${key}.lora_magnitude_vector`) } : {}),
    };
    site.loraGrads = {
      dA: gpu.tensor([r, K], 'f32'),
      dB: gpu.tensor([N, r], 'f32'),
      ...(magnitude ? { dMagnitude: gpu.tensor([N], 'f32') } : {}),
    };
    this.sites.push(site);
  }

  /** Trainable tensors in PEFT key order; LoRA+ multiplies B's learning rate by `loraPlusRatio`. */
  params(loraPlusRatio = 1): TrainableTensor[] {
    return this.sites.flatMap((site) => {
      const key = peftKey(site);
      const l = site.lora!, g = site.loraGrads!;
      const out: TrainableTensor[] = [
        { name: `${key}.lora_A.weight`, value: l.A, grad: g.dA, decay: true, lrScale: 1 },
        { name: `${key}.lora_B.weight`, value: l.B, grad: g.dB, decay: true, lrScale: loraPlusRatio },
      ];
      if (l.magnitude) out.push({ name: `${key}.lora_magnitude_vector`, value: l.magnitude, grad: g.dMagnitude!, decay: true, lrScale: 1 });
      return out;
    });
  }

  /** Run fn with the base model alone (DPO/KTO reference model, base-vs-tuned chat). */
  async withDisabled<T>(fn: () => Promise<T> | T): Promise<T> {
    for (const s of this.sites) {
      this.disabled.set(s, s.lora!);
      s.lora = null;
    }
    try {
      return await fn();
    } finally {
      for (const [s, l] of this.disabled) s.lora = l;
      this.disabled.clear();
    }
  }

  /** PEFT adapter_config.json. */
  configJson(baseModel: string | null): string {
    const kinds = [...new Set(this.sites.map((s) => s.name.split('.').pop()!))];
    return JSON.stringify({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      base_model_name_or_path: baseModel,
      r: this.settings.rank,
      lora_alpha: this.settings.alpha,
      lora_dropout: this.settings.dropout ?? 0,
      target_modules: kinds,
      bias: 'none',
      use_rslora: !!this.settings.rslora,
      use_dora: !!this.settings.dora,
      fan_in_fan_out: false,
      init_lora_weights: true,
      inference_mode: true,
      modules_to_save: null,
      layers_to_transform: this.settings.layers ? [...this.settings.layers] : null,
      revision: null,
    }, null, 2);
  }

  /** adapter_model.safetensors bytes. */
  async safetensors(): Promise<Uint8Array> {
    const gpu = this.model.gpu;
    const tensors: Record<string, { dtype: 'F32'; shape: readonly number[]; data: Float32Array }> = {};
    for (const p of this.params()) tensors[p.name] = { dtype: 'F32', shape: p.value.shape, data: await gpu.readF32(p.value) };
    return encodeSafetensors(tensors, { format: 'pt' });
  }

  release(): void {
    for (const s of this.sites) {
      const l = s.lora!, g = s.loraGrads!;
      this.model.gpu.release(l.A, l.B, l.magnitude, g.dA, g.dB, g.dMagnitude);
      s.lora = null;
      s.loraGrads = null;
    }
  }
}

/** ||W||₂ per output row, for DoRA's initial magnitude (B = 0, so ||W + sBA|| = ||W||). */
async function rowNorms(gpu: Gpu, site: LinearSite): Promise<Float32Array> {
  const W = await dequantizeWeight(gpu, site.weight, site.outFeatures, site.inFeatures);
  const K = site.inFeatures;
  return Float32Array.from({ length: site.outFeatures }, (_, n) => {
    let s = 0;
    for (let k = 0; k < K; k++) s += W[n * K + k]! ** 2;
    return Math.sqrt(s);
  });
}
