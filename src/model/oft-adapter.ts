// OFT adapters in PEFT's format (tuners/oft: OFTConfig, OFTLayer.update_layer): attach fresh ones
// (oft_R = 0, R = I: the base model exactly), load and save adapter_config.json (peft_type OFT) +
// adapter_model.safetensors (<module>.oft_R.weight [r, b(b-1)/2]), list the trainable tensors.
// A fused module (Phi-3's qkv_proj) has one oft_R rotating the input all its part sites read, so
// the parts share the tensor and their gradients add up in it.

import type { Tensor } from '../gpu/tensor';
import { triangleSize, type OftWeights } from '../kernels/oft';
import { resolveTargets, type AdapterInitialiser, type PeftAdapter, type TrainableTensor } from './adapter';
import type { LinearSite } from './linear';
import type { Model, ModuleRef } from './model';
import { peftKey } from './peft';
import { encodeSafetensors, openSafetensors, readF32, type ByteSource } from './safetensors';

export interface OftSettings {
  /** oft_rank: blocks per layer; 0 takes them from blockSize (exactly one of the two is non-zero, as PEFT). */
  rank: number;
  /** oft_block_size */
  blockSize: number;
  /** Module names (q_proj, ...) or 'all' for every linear layer but the output head. */
  targets: readonly string[] | 'all';
  /** module_dropout: saved in the config; PEFT's Linear.forward never applies it (kernels/oft.ts). */
  moduleDropout?: number;
  /** num_cayley_neumann_terms when use_cayley_neumann (PEFT's default: 5), null for the exact Cayley transform. */
  neumannTerms: number | null;
  /** Only these layers; all when absent. */
  layers?: readonly number[];
}

/** The OFTConfig options Crucible does not implement, refused by name when an adapter sets them. */
const UNSUPPORTED: readonly [string, (v: unknown) => boolean][] = [
  ['coft', (v) => v === true],
  ['block_share', (v) => v === true],
  ['bias', (v) => v !== undefined && v !== 'none'],
  ['fan_in_fan_out', (v) => v === true],
  ['modules_to_save', (v) => Array.isArray(v) && v.length > 0],
  ['init_weights', (v) => v === false],
];

/** PEFT's adjust_oft_parameters: the divisor of `inFeatures` nearest `value` (the lower one on a tie). */
function nearestDivisor(inFeatures: number, value: number): number {
  if (value >= inFeatures) return inFeatures;
  let higher = value;
  while (higher <= inFeatures && inFeatures % higher !== 0) higher++;
  let lower = value;
  while (lower > 1 && inFeatures % lower !== 0) lower--;
  return value - lower <= higher - value ? lower : higher;
}

/** Blocks r and block size b of a layer with `inFeatures` inputs, as PEFT's update_layer resolves them. */
export function oftBlocks(inFeatures: number, s: Pick<OftSettings, 'rank' | 'blockSize'>): { r: number; b: number } {
  if ((s.rank !== 0) === (s.blockSize !== 0)) {
    throw new Error(`OFT: set exactly one of oft_rank (${s.rank}) and oft_block_size (${s.blockSize}); r x oft_block_size = in_features, so the other follows`);
  }
  if (s.rank === 0) {
    const b = inFeatures % s.blockSize !== 0 || s.blockSize > inFeatures ? nearestDivisor(inFeatures, s.blockSize) : s.blockSize;
    return { r: inFeatures / b, b };
  }
  const r = inFeatures % s.rank !== 0 || s.rank > inFeatures ? nearestDivisor(inFeatures, s.rank) : s.rank;
  return { r, b: inFeatures / r };
}

/** The settings of a saved OFTConfig; refuses the options Crucible does not implement by name. */
export function oftSettingsOf(cfg: Record<string, unknown>, where: string): OftSettings {
  if (cfg.peft_type !== 'OFT') throw new Error(`${where}: adapter type ${String(cfg.peft_type)} is not OFT`);
  for (const [key, unsupported] of UNSUPPORTED) {
    if (unsupported(cfg[key])) throw new Error(`${where}: OFT with ${key} = ${JSON.stringify(cfg[key])} is not supported`);
  }
  if (cfg.oft_block_size === undefined) {
    throw new Error(`${where}: an OFT adapter without oft_block_size was saved by PEFT before 0.14, whose OFT weights differ; retrain it`);
  }
  const targets = cfg.target_modules;
  return {
    rank: Number(cfg.r ?? 0),
    blockSize: Number(cfg.oft_block_size),
    targets: typeof targets === 'string' ? (targets === 'all-linear' ? 'all' : [targets]) : ((targets as string[]) ?? 'all'),
    moduleDropout: Number(cfg.module_dropout ?? 0),
    // OFTConfig's default is the Neumann series with 5 terms
    neumannTerms: cfg.use_cayley_neumann === false ? null : Number(cfg.num_cayley_neumann_terms ?? 5),
  };
}

interface OftModule {
  ref: ModuleRef;
  key: string;
  oft: OftWeights;
  dSkew: Tensor;
}

export class OftAdapter implements PeftAdapter {
  readonly sites: LinearSite[] = [];
  readonly dropout = 0;
  readonly pissa: AdapterInitialiser | null = null;
  private readonly modules: OftModule[] = [];
  private disabled = new Map<LinearSite, OftWeights>();

  private constructor(readonly model: Model, readonly settings: OftSettings) {}

  /** A fresh adapter as PEFT initialises it (init_weights = True): oft_R = 0. */
  static create(model: Model, settings: OftSettings): OftAdapter {
    const ad = new OftAdapter(model, settings);
    const kinds = resolveTargets(model, settings.targets, 'oft_target');
    const layers = settings.layers ? new Set(settings.layers) : null;
    for (const mod of model.modules().filter((m) => kinds.has(m.kind) && (!layers || layers.has(m.layer)))) {
      const { r, b } = oftBlocks(mod.inFeatures, settings);
      ad.attach(mod, new Float32Array(r * triangleSize(b)), b);
    }
    return ad;
  }

  /** Load a PEFT OFT adapter (adapter_config.json + adapter_model.safetensors). */
  static async load(model: Model, cfg: Record<string, unknown>, weights: ByteSource): Promise<OftAdapter> {
    const where = weights.name;
    const settings = oftSettingsOf(cfg, where);
    const file = await openSafetensors(weights);
    const ad = new OftAdapter(model, settings);
    const used = new Set<string>();
    const modules = model.modules();
    for (const mod of modules) {
      const key = `${peftKey(mod)}.oft_R.weight`;
      if (!file.tensors.has(key)) continue;
      const { r, b } = oftBlocks(mod.inFeatures, settings);
      const skew = await readF32(file, key);
      if (skew.length !== r * triangleSize(b)) {
        throw new Error(`${where}: ${key} has ${skew.length} values, expected [${r}, ${triangleSize(b)}] (${r} blocks of ${b} for ${mod.inFeatures} inputs)`);
      }
      ad.attach(mod, skew, b);
      used.add(key);
    }
    if (ad.sites.length === 0) throw new Error(`${where}: no OFT weights match this model's layers (keys like ${peftKey(modules[0]!)}.oft_R.weight)`);
    const unused = [...file.tensors.keys()].filter((k) => !used.has(k));
    if (unused.length) throw new Error(`${where}: tensors that match no layer of this model: ${unused.slice(0, 3).join(', ')}${unused.length > 3 ? ' ...' : ''}`);
    return ad;
  }

  private attach(mod: ModuleRef, skew: Float32Array, b: number): void {
    const gpu = this.model.gpu;
    const key = peftKey(mod);
    const shape = [mod.inFeatures / b, triangleSize(b)];
    const t: OftModule = {
      ref: mod,
      key,
      oft: { skew: gpu.upload(skew, shape, 'f32', `${key}.oft_R.weight`), blockSize: b, neumannTerms: this.settings.neumannTerms },
      dSkew: gpu.tensor(shape, 'f32'),
    };
    this.modules.push(t);
    this.bindSites(t);
  }

  private bindSites(t: OftModule): void {
    for (const { site } of t.ref.parts) {
      site.oft = t.oft;
      site.oftGrads = { dSkew: t.dSkew };
      if (!this.sites.includes(site)) this.sites.push(site);
    }
  }

  params(): TrainableTensor[] {
    return this.modules.map((m) => ({
      name: `${m.key}.oft_R.weight`, value: m.oft.skew, grad: m.dSkew, decay: true, lrScale: 1,
      relocate: (v: Tensor, g: Tensor) => {
        const old = [m.oft.skew, m.dSkew];
        m.oft = { ...m.oft, skew: v };
        m.dSkew = g;
        this.bindSites(m);
        this.model.gpu.release(...old);
      },
    }));
  }

  /** Run fn with the base model alone (the DPO/KTO reference, base-vs-tuned chat). */
  async withDisabled<T>(fn: () => Promise<T> | T): Promise<T> {
    for (const s of this.sites) {
      this.disabled.set(s, s.oft!);
      s.oft = null;
    }
    try {
      return await fn();
    } finally {
      for (const [s, o] of this.disabled) s.oft = o;
      this.disabled.clear();
    }
  }

  configJson(baseModel: string | null): string {
    return JSON.stringify(this.peftConfig(baseModel), null, 2);
  }

  /** PEFT's OFTConfig of this adapter as trained. */
  peftConfig(baseModel: string | null): Record<string, unknown> {
    const s = this.settings;
    return {
      peft_type: 'OFT',
      task_type: 'CAUSAL_LM',
      // PEFT warns about Cayley-Neumann adapters of versions before 0.18, whose series differed
      peft_version: '0.20.0',
      base_model_name_or_path: baseModel,
      r: s.rank,
      oft_block_size: s.blockSize,
      module_dropout: s.moduleDropout ?? 0,
      target_modules: [...new Set(this.modules.map((m) => m.ref.kind))],
      fan_in_fan_out: false,
      bias: 'none',
      exclude_modules: null,
      init_weights: true,
      layers_to_transform: s.layers ? [...s.layers] : null,
      layers_pattern: null,
      modules_to_save: null,
      coft: false,
      eps: 6e-5,
      block_share: false,
      use_cayley_neumann: s.neumannTerms !== null,
      num_cayley_neumann_terms: s.neumannTerms ?? 5,
      inference_mode: true,
      revision: null,
    };
  }

  async safetensors(): Promise<Uint8Array> {
    const gpu = this.model.gpu;
    const tensors: Record<string, { dtype: 'F32'; shape: readonly number[]; data: Float32Array }> = {};
    for (const m of this.modules) tensors[`${m.key}.oft_R.weight`] = { dtype: 'F32', shape: m.oft.skew.shape, data: await gpu.readF32(m.oft.skew) };
    return encodeSafetensors(tensors, { format: 'pt' });
  }

  release(): void {
    for (const s of this.sites) {
      s.oft = null;
      s.oftGrads = null;
    }
    for (const m of this.modules) this.model.gpu.release(m.oft.skew, m.dSkew);
    this.sites.length = 0;
    this.modules.length = 0;
  }
}
