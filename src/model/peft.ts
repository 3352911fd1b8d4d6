// PEFT's LoRA conventions the adapter, its initialisers and the exporters share: the settings of
// a LoraConfig, the scaling s of W + s·B·A, and the key prefix of a module's tensors.

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

/** s in W + s·B·A: alpha / r, or alpha / sqrt(r) with rsLoRA. */
export const loraScaling = (s: LoraSettings): number => (s.rslora ? s.alpha / Math.sqrt(s.rank) : s.alpha / s.rank);

/** PEFT's key prefix for a module of a causal LM. */
export const peftKey = (site: { name: string }): string => `base_model.model.${site.name}`;

/** Tensors of an adapter file by PEFT key, as saved. */
export type NamedTensors = Record<string, { dtype: 'F32'; shape: readonly number[]; data: Float32Array }>;
