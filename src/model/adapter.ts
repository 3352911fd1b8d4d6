// LoRA / DoRA adapters in PEFT's format: attach fresh ones (PEFT's initialisation), load and save
// adapter_config.json + adapter_model.safetensors, and list the trainable tensors.

import { parseJsonFile } from '../data/json-file';
import type { Gpu } from '../gpu/runtime';
import type { Tensor } from '../gpu/tensor';
import type { LoraWeights } from '../kernels/lora';
import type { LinearSite } from './linear';
import type { Model, ModuleRef } from './model';
import { dequantizeWeight } from './dequant';
import { loraScaling, peftKey, type LoraSettings, type NamedTensors } from './peft';
import { encodeSafetensors, openSafetensors, readF32, type ByteSource, type SafetensorsFile } from './safetensors';

export type { LoraSettings } from './peft';

export interface TrainableTensor {
  /** Name as saved in the checkpoint / adapter file. */
  name: string;
  value: Tensor;
  grad: Tensor;
  /** AdamW weight decay applies (HF Trainer: not to biases and norm weights). */
  decay: boolean;
  /** Learning-rate multiplier (LoRA+ gives B a larger rate). */
  lrScale: number;
  /**
   * Points the owner (the layers that read and write this tensor) at new storage holding the same
   * values and gradient, the optimizer's arena (train/optimizers/arena.ts), and frees the old.
   */
  relocate?(value: Tensor, grad: Tensor): void;
  /**
   * Off: the owner forgets its gradient tensor, so backward skips this weight's gradient work as it
   * does for a frozen weight (the activation gradient still flows); on: it gets `grad` back. For
   * optimizers that train part of the weights per step (BAdam's layer mode).
   */
  setGradEnabled?(on: boolean): void;
}

/**
 * What starts a fresh adapter from the base weights and reshapes the base while the adapter lives
 * (PiSSA, pissa.ts): the adapter asks it for the "adapter off" view and for what it publishes;
 * the trainer asks it for the checkpoint's part.
 */
export interface AdapterInitialiser {
  /** A and B of each target module; may rewrite the base (PiSSA: W_res = W - s·B0·A0). */
  init(mods: readonly ModuleRef[]): Promise<{ A: Float32Array; B: Float32Array }[]>;
  /** The base as it was, on a site ("adapter off"): an initial adapter, or null for none. */
  initialLora(site: LinearSite): LoraWeights | null;
  /** adapter_config.json as saved (converted to plain LoRA, or marked). */
  publishedConfig(cfg: Record<string, unknown>): Record<string, unknown>;
  publishedTensors(tensors: NamedTensors): NamedTensors;
  /** A trained tensor's shape as saved. */
  publishedShape(name: string, shape: readonly number[]): readonly number[];
  /** A trained tensor from a saved adapter, as the live adapter holds it. */
  readTrained(file: SafetensorsFile, name: string): Promise<Float32Array>;
  /** The initial adapter, kept with checkpoints so a resumed run rebuilds the same base. */
  initialFiles(plainConfig: Record<string, unknown>): { 'adapter_config.json': string; 'adapter_model.safetensors': Uint8Array };
  restoreInitial(file: SafetensorsFile): Promise<void>;
  /** Gives the base its weights back. */
  release(): void;
}

/**
 * What trainers, sessions and objectives use of a PEFT adapter: LoRA / DoRA (Adapter, here) or
 * OFT (OftAdapter, oft-adapter.ts); adapters.ts loads either from its adapter_config.json.
 */
export interface PeftAdapter {
  readonly sites: readonly LinearSite[];
  /** lora_dropout (0 for OFT). */
  readonly dropout: number;
  /** PiSSA's initial adapter when a LoRA adapter started from it. */
  readonly pissa: AdapterInitialiser | null;
  /** Trainable tensors in PEFT key order; LoRA+ multiplies lora_B's learning rate by `loraPlusRatio`. */
  params(loraPlusRatio?: number): TrainableTensor[];
  /** Run fn with the base model alone (DPO/KTO reference model, base-vs-tuned chat). */
  withDisabled<T>(fn: () => Promise<T> | T): Promise<T>;
  /** adapter_config.json as saved. */
  configJson(baseModel: string | null): string;
  /** PEFT's config of this adapter as trained. */
  peftConfig(baseModel: string | null): Record<string, unknown>;
  /** adapter_model.safetensors bytes, PEFT's keys. */
  safetensors(): Promise<Uint8Array>;
  release(): void;
}

export function resolveTargets(model: Model, targets: readonly string[] | 'all', where = 'lora_target'): Set<string> {
  const valid = new Set<string>(model.moduleKinds());
  const list = targets === 'all' || (targets.length === 1 && targets[0] === 'all') ? [...valid] : targets;
  for (const t of list) {
    if (!valid.has(t)) throw new Error(`${where}: "${t}" is not a linear layer of ${model.spec.arch}; valid: all, ${[...valid].join(', ')}`);
  }
  return new Set(list);
}

/** Storage offsets of a tensor view must be multiples of this (WebGPU's minStorageBufferOffsetAlignment default). */
const VIEW_ALIGN = 256;

/**
 * The LoRA tensors of one checkpoint module. A fused module (Phi-3's qkv_proj, gate_up_proj) has
 * one A shared by its part sites, as PEFT has one lora_A for the fused nn.Linear: their dA
 * gradients add up in the one dA tensor (backward accumulates), which is the gradient of the shared
 * A. B and the DoRA magnitude are row-stacked tensors in PEFT's layout, and each part site reads
 * its rows through a view (offset) of them — so the optimizer, checkpoints and the saved adapter
 * see PEFT's tensors. Where a part's first row does not start at a 256-byte boundary the parts get
 * tensors of their own instead (inference and merging only).
 */
interface ModuleTensors {
  ref: ModuleRef;
  key: string;
  A: Tensor;
  dA: Tensor;
  /** Row-stacked [N, r] / [N] tensors; null when the parts hold their own (unaligned rows). */
  B: Tensor | null;
  dB: Tensor | null;
  magnitude: Tensor | null;
  dMagnitude: Tensor | null;
  /** Tensors allocated for this module, or arena views handed to it (released with it). */
  owned: Tensor[];
}

/** Refuses a PiSSA adapter saved without conversion: it applies to the residual W - s·B0·A0, not to the base model. */
export function checkNotUnconvertedPissa(cfg: Record<string, unknown>, where: string): void {
  if (typeof cfg.init_lora_weights === 'string' && cfg.init_lora_weights.startsWith('pissa')) {
    throw new Error(`${where}: a PiSSA adapter saved without conversion (init_lora_weights "${cfg.init_lora_weights}") applies to the residual base W - s·B0·A0, not to the base model; `
      + 'train with pissa_convert: true to save a standard LoRA adapter');
  }
}

export class Adapter implements PeftAdapter {
  readonly sites: LinearSite[] = [];
  private readonly modules: ModuleTensors[] = [];
  private disabled = new Map<LinearSite, NonNullable<LinearSite['lora']>>();
  /** PiSSA's initial adapter when this one started from it (pissa.ts): the base holds W_res meanwhile. */
  pissa: AdapterInitialiser | null = null;

  private constructor(readonly model: Model, readonly settings: LoraSettings) {}

  get dropout(): number {
    return this.settings.dropout ?? 0;
  }

  /**
   * Fresh adapter as PEFT initialises it: A ~ kaiming-uniform(a=sqrt(5)), B = 0, DoRA magnitude =
   * ||W|| per row; or A and B from `init` for all target modules at once (PiSSA, which also
   * rewrites the base: the magnitude is taken before, as ||W_res + s·B·A|| = ||W||).
   */
  static async create(model: Model, settings: LoraSettings, random: () => number,
    init?: (mods: ModuleRef[]) => Promise<{ A: Float32Array; B: Float32Array }[]>): Promise<Adapter> {
    const ad = new Adapter(model, settings);
    const mods = ad.targetModules();
    const magnitudes: (Float32Array | undefined)[] = [];
    for (const mod of mods) {
      if (!settings.dora) break;
      const magnitude = new Float32Array(mod.outFeatures);
      for (const p of mod.parts) magnitude.set(await rowNorms(model.gpu, p.site), p.row);
      magnitudes.push(magnitude);
    }
    const given = init ? await init(mods) : null;
    mods.forEach((mod, i) => {
      const r = settings.rank, K = mod.inFeatures, N = mod.outFeatures;
      const bound = 1 / Math.sqrt(K);
      const { A, B } = given?.[i] ?? { A: Float32Array.from({ length: r * K }, () => (2 * random() - 1) * bound), B: new Float32Array(N * r) };
      ad.attach(mod, A, B, magnitudes[i]);
    });
    return ad;
  }

  /** Load a PEFT adapter (adapter_config.json + adapter_model.safetensors). */
  static async load(model: Model, configJson: string, weights: ByteSource): Promise<Adapter> {
    // the config sits beside the weights
    const cfg = parseJsonFile<Record<string, unknown>>(configJson, weights.name.replace(/[^/\\]*$/, 'adapter_config.json'));
    if (cfg.peft_type !== 'LORA') throw new Error(`${weights.name}: adapter type ${String(cfg.peft_type)} is not LORA`);
    checkNotUnconvertedPissa(cfg, weights.name);
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
    const modules = model.modules();
    for (const mod of modules) {
      const key = peftKey(mod);
      const aKey = `${key}.lora_A.weight`;
      if (!file.tensors.has(aKey)) continue;
      const r = settings.rank;
      const A = await readF32(file, aKey);
      const bKey = `${key}.lora_B.weight`;
      if (!file.tensors.has(bKey)) throw new Error(`${weights.name}: ${aKey} has no matching ${bKey}`);
      const B = await readF32(file, bKey);
      if (A.length !== r * mod.inFeatures) throw new Error(`${weights.name}: ${aKey} has ${A.length} values, expected [${r}, ${mod.inFeatures}]`);
      if (B.length !== mod.outFeatures * r) throw new Error(`${weights.name}: ${bKey} has ${B.length} values, expected [${mod.outFeatures}, ${r}]`);
      let magnitude: Float32Array | undefined;
      if (settings.dora) {
        const mKey = `${key}.lora_magnitude_vector`;
        if (!file.tensors.has(mKey)) throw new Error(`${weights.name}: DoRA adapter lacks ${mKey}`);
        magnitude = await readF32(file, mKey);
        used.add(mKey);
      }
      ad.attach(mod, A, B, magnitude);
      used.add(aKey).add(bKey);
    }
    if (ad.sites.length === 0) throw new Error(`${weights.name}: no LoRA weights match this model's layers (keys like ${peftKey(modules[0]!)}.lora_A.weight)`);
    const unused = [...file.tensors.keys()].filter((k) => !used.has(k));
    if (unused.length) throw new Error(`${weights.name}: tensors that match no layer of this model: ${unused.slice(0, 3).join(', ')}${unused.length > 3 ? ' ...' : ''}`);
    return ad;
  }

  private targetModules(): ModuleRef[] {
    const kinds = resolveTargets(this.model, this.settings.targets);
    const layers = this.settings.layers ? new Set(this.settings.layers) : null;
    return this.model.modules().filter((m) => kinds.has(m.kind) && (!layers || layers.has(m.layer)));
  }

  private attach(mod: ModuleRef, A: Float32Array, B: Float32Array, magnitude?: Float32Array): void {
    const gpu = this.model.gpu;
    const r = this.settings.rank, K = mod.inFeatures, N = mod.outFeatures;
    const key = peftKey(mod);
    const owned: Tensor[] = [];
    const own = (t: Tensor) => (owned.push(t), t);
    const a = own(gpu.upload(A, [r, K], 'f32', `${key}.lora_A.weight`));
    const dA = own(gpu.tensor([r, K], 'f32'));
    const t: ModuleTensors = { ref: mod, key, A: a, dA, B: null, dB: null, magnitude: null, dMagnitude: null, owned };
    this.modules.push(t);
    this.sites.push(...mod.parts.map((p) => p.site));
    const aligned = mod.parts.every((p) => (p.row * r * 4) % VIEW_ALIGN === 0 && (!magnitude || (p.row * 4) % VIEW_ALIGN === 0));
    if (aligned) {
      t.B = own(gpu.upload(B, [N, r], 'f32', `${key}.lora_B.weight`));
      t.dB = own(gpu.tensor([N, r], 'f32'));
      if (magnitude) {
        t.magnitude = own(gpu.upload(magnitude, [N], 'f32', `${key}.lora_magnitude_vector`));
        t.dMagnitude = own(gpu.tensor([N], 'f32'));
      }
      this.bindSites(t);
      return;
    }
    for (const { site, row } of mod.parts) {
      const n = site.outFeatures;
      const part = (host: Float32Array, cols: number, shape: number[], label: string): Tensor =>
        own(gpu.upload(host.subarray(row * cols, (row + n) * cols), shape, 'f32', label));
      site.lora = {
        A: a,
        B: part(B, r, [n, r], `${key}.lora_B.weight`),
        scaling: loraScaling(this.settings),
        ...(magnitude ? { magnitude: part(magnitude, 1, [n], `${key}.lora_magnitude_vector`) } : {}),
      };
      site.loraGrads = {
        dA,
        dB: own(gpu.tensor([n, r], 'f32')),
        ...(magnitude ? { dMagnitude: own(gpu.tensor([n], 'f32')) } : {}),
      };
    }
  }

  /** Points the part sites of a module with row-stacked tensors at their rows of them (views). */
  private bindSites(t: ModuleTensors): void {
    const r = this.settings.rank, N = t.ref.outFeatures;
    const rowsOf = (whole: Tensor, row: number, n: number, cols: number, shape: number[]): Tensor =>
      n === N ? whole : { buffer: whole.buffer, dtype: whole.dtype, offset: whole.offset + row * cols * 4, shape };
    for (const { site, row } of t.ref.parts) {
      const n = site.outFeatures;
      site.lora = {
        A: t.A,
        B: rowsOf(t.B!, row, n, r, [n, r]),
        scaling: loraScaling(this.settings),
        ...(t.magnitude ? { magnitude: rowsOf(t.magnitude, row, n, 1, [n]) } : {}),
      };
      site.loraGrads = {
        dA: t.dA,
        dB: rowsOf(t.dB!, row, n, r, [n, r]),
        ...(t.dMagnitude ? { dMagnitude: rowsOf(t.dMagnitude, row, n, 1, [n]) } : {}),
      };
    }
  }

  /** TrainableTensor.relocate of one of a module's tensors and its gradient. */
  private relocator(t: ModuleTensors, value: 'A' | 'B' | 'magnitude', grad: 'dA' | 'dB' | 'dMagnitude'): (v: Tensor, g: Tensor) => void {
    return (v, g) => {
      const old = [t[value], t[grad]];
      t.owned = [...t.owned.filter((o) => !old.includes(o)), v, g];
      t[value] = v;
      t[grad] = g;
      this.bindSites(t);
      this.model.gpu.release(...old);
    };
  }

  /** Trainable tensors in PEFT key order; LoRA+ multiplies B's learning rate by `loraPlusRatio`. */
  params(loraPlusRatio = 1): TrainableTensor[] {
    return this.modules.flatMap((m) => {
      if (!m.B || !m.dB) {
        throw new Error(`${m.ref.name}: training LoRA on a fused ${m.ref.kind} needs each projection's rows of lora_B to start at a ${VIEW_ALIGN}-byte boundary `
          + `(rows ${m.ref.parts.map((p) => p.row).join(', ')} at rank ${this.settings.rank} do not); a rank that is a multiple of 64 always works`);
      }
      const out: TrainableTensor[] = [
        { name: `${m.key}.lora_A.weight`, value: m.A, grad: m.dA, decay: true, lrScale: 1, relocate: this.relocator(m, 'A', 'dA') },
        { name: `${m.key}.lora_B.weight`, value: m.B, grad: m.dB, decay: true, lrScale: loraPlusRatio, relocate: this.relocator(m, 'B', 'dB') },
      ];
      if (m.magnitude) {
        out.push({ name: `${m.key}.lora_magnitude_vector`, value: m.magnitude, grad: m.dMagnitude!, decay: true, lrScale: 1, relocate: this.relocator(m, 'magnitude', 'dMagnitude') });
      }
      return out;
    });
  }

  /** Run fn with the base model alone (DPO/KTO reference model, base-vs-tuned chat); with PiSSA, W_res plus the initial adapter. */
  async withDisabled<T>(fn: () => Promise<T> | T): Promise<T> {
    for (const s of this.sites) {
      this.disabled.set(s, s.lora!);
      s.lora = this.pissa?.initialLora(s) ?? null;
    }
    try {
      return await fn();
    } finally {
      for (const [s, l] of this.disabled) s.lora = l;
      this.disabled.clear();
    }
  }

  /** PEFT adapter_config.json (PiSSA: converted, or marked as PiSSA). */
  configJson(baseModel: string | null): string {
    const cfg = this.peftConfig(baseModel);
    return JSON.stringify(this.pissa ? this.pissa.publishedConfig(cfg) : cfg, null, 2);
  }

  /** PEFT's LoraConfig of this adapter as trained. */
  peftConfig(baseModel: string | null): Record<string, unknown> {
    const kinds = [...new Set(this.modules.map((m) => m.ref.kind))];
    return {
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
    };
  }

  /** adapter_model.safetensors bytes (PEFT keys; a fused module's B rows stacked as PEFT stores them). */
  async safetensors(): Promise<Uint8Array> {
    const gpu = this.model.gpu;
    const tensors: Record<string, { dtype: 'F32'; shape: readonly number[]; data: Float32Array }> = {};
    const r = this.settings.rank;
    for (const m of this.modules) {
      const stacked = async (whole: Tensor | null, pick: (s: LinearSite) => Tensor, cols: number): Promise<Float32Array> => {
        if (whole) return gpu.readF32(whole);
        const out = new Float32Array(m.ref.outFeatures * cols);
        for (const p of m.ref.parts) out.set(await gpu.readF32(pick(p.site)), p.row * cols);
        return out;
      };
      tensors[`${m.key}.lora_A.weight`] = { dtype: 'F32', shape: m.A.shape, data: await gpu.readF32(m.A) };
      tensors[`${m.key}.lora_B.weight`] = { dtype: 'F32', shape: [m.ref.outFeatures, r], data: await stacked(m.B, (s) => s.lora!.B, r) };
      if (this.settings.dora) {
        tensors[`${m.key}.lora_magnitude_vector`] = { dtype: 'F32', shape: [m.ref.outFeatures], data: await stacked(m.magnitude, (s) => s.lora!.magnitude!, 1) };
      }
    }
    return encodeSafetensors(this.pissa ? this.pissa.publishedTensors(tensors) : tensors, { format: 'pt' });
  }

  release(): void {
    this.pissa?.release();
    this.pissa = null;
    for (const s of this.sites) {
      s.lora = null;
      s.loraGrads = null;
    }
    for (const m of this.modules) this.model.gpu.release(...m.owned);
    this.sites.length = 0;
    this.modules.length = 0;
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
