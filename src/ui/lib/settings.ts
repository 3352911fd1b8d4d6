// Training settings as LLaMA-Factory keys (what a YAML would hold), the methods the app offers,
// presets, and their persistence across reloads (localStorage).

export type Settings = Record<string, unknown>;

import type { CrucibleConfig } from '../../config';
import { basePrecision } from '../../engine/precision';
import type { Capabilities } from '../../gpu/capabilities';
import { REWARD_RUN } from '../../../workers/api';

export type Method = 'lora' | 'qlora' | 'dora' | 'oft' | 'qoft' | 'full' | 'freeze';

export const METHODS: { value: Method; label: string; help: string }[] = [
  { value: 'lora', label: 'LoRA', help: 'Low-rank adapters on a frozen base (f32).' },
  { value: 'qlora', label: 'QLoRA', help: 'LoRA on a 4-bit quantized base: about a quarter of the weight memory.' },
  { value: 'dora', label: 'DoRA', help: 'Weight-decomposed LoRA: a magnitude vector per output as well.' },
  { value: 'oft', label: 'OFT', help: 'Orthogonal fine-tuning: a learned block rotation of each adapted layer\'s input (PEFT OFT).' },
  { value: 'qoft', label: 'QOFT', help: 'OFT on a 4-bit quantized base.' },
  { value: 'full', label: 'Full', help: 'Every weight is trained: small models only.' },
  { value: 'freeze', label: 'Freeze', help: 'Train the last layers only.' },
];

/** LoRA and OFT train an adapter (chat, export and the run history use it); freeze and full train the base. */
export const trainsAdapter = (s: Settings) => s.finetuning_type === 'lora' || s.finetuning_type === 'oft';

export function methodOf(s: Settings): Method {
  if (s.finetuning_type === 'full') return 'full';
  if (s.finetuning_type === 'freeze') return 'freeze';
  const quantized = s.quantization_bit === 4 || s.quantization_bit === 8;
  if (s.finetuning_type === 'oft') return quantized ? 'qoft' : 'oft';
  if (s.use_dora) return 'dora';
  if (quantized) return 'qlora';
  return 'lora';
}

/** Keys only LoRA reads, and those only OFT reads (the config reader refuses them with another method). */
const LORA_ONLY = ['use_rslora', 'pissa_init', 'loraplus_lr_ratio'];
const OFT_ONLY = ['oft_rank', 'oft_block_size', 'oft_target', 'module_dropout'];
/** PEFT's OFT defaults as LLaMA-Factory passes them: blocks of 32, all linear layers. */
const OFT_DEFAULTS: Settings = { oft_rank: 0, oft_block_size: 32, oft_target: 'all', module_dropout: 0 };

export function withMethod(s: Settings, m: Method): Settings {
  const out = methodSettings(s, m);
  // GaLore, APOLLO and BAdam train full / freeze runs only: another method goes back to AdamW
  return optimizersFor(out).some((o) => o.value === optimizerOf(out)) ? out : withOptimizer(out, 'adamw');
}

function methodSettings(s: Settings, m: Method): Settings {
  const base: Settings = { ...s, use_dora: false, quantization_bit: null };
  if (m !== 'lora' && m !== 'qlora' && m !== 'dora') for (const k of LORA_ONLY) delete base[k];
  if (m !== 'oft' && m !== 'qoft') for (const k of OFT_ONLY) delete base[k];
  const oft = Object.fromEntries(OFT_ONLY.map((k) => [k, base[k] ?? OFT_DEFAULTS[k]]));
  switch (m) {
    case 'oft':
      return { ...base, ...oft, finetuning_type: 'oft' };
    case 'qoft':
      return { ...base, ...oft, finetuning_type: 'oft', quantization_bit: 4 };
    case 'lora':
      return { ...base, finetuning_type: 'lora' };
    case 'qlora':
      return { ...base, finetuning_type: 'lora', quantization_bit: 4 };
    case 'dora':
      return { ...base, finetuning_type: 'lora', use_dora: true };
    case 'full':
      return { ...base, finetuning_type: 'full' };
    case 'freeze':
      return { ...base, finetuning_type: 'freeze' };
  }
}

/**
 * The app's starting point, the Quick demo: LoRA r 8 on all layers, 30 steps of 8 identity examples at
 * lr 1e-2 (scripts/demo/check-sft.ts's recipe), seeded. On the demo model it ends with "Who are you?"
 * answered "I am Crucible." (checked with `crucible train` and in e2e/app-settings.e2e.ts).
 */
export const DEFAULT_SETTINGS: Settings = {
  stage: 'sft',
  finetuning_type: 'lora',
  quantization_bit: null,
  use_dora: false,
  lora_rank: 8,
  lora_alpha: 16,
  lora_target: 'all',
  lora_dropout: 0,
  learning_rate: 1e-2,
  lr_scheduler_type: 'cosine',
  warmup_ratio: 0,
  num_train_epochs: 1,
  max_steps: 30,
  per_device_train_batch_size: 8,
  gradient_accumulation_steps: 1,
  max_grad_norm: 1,
  cutoff_len: 64,
  packing: false,
  val_size: 0,
  eval_strategy: 'no',
  logging_steps: 1,
  save_steps: 10,
  seed: 42,
  template: null,
};

// ---- optimizers ---------------------------------------------------------------------------------

export type Optimizer = 'adamw' | 'galore' | 'apollo' | 'badam' | 'adam_mini' | 'muon';

/** The optimizers the engine has, each the LLaMA-Factory switch that selects it; `methods`: the finetuning types it takes (all when absent). */
export const OPTIMIZERS: { value: Optimizer; label: string; key: string | null; methods?: string[]; help: string }[] = [
  { value: 'adamw', label: 'AdamW', key: null, help: 'optim: adamw_torch (decoupled weight decay).' },
  { value: 'galore', label: 'GaLore', key: 'use_galore', methods: ['full', 'freeze'], help: 'use_galore: Adam on gradients projected to their top singular vectors (full / freeze).' },
  { value: 'apollo', label: 'APOLLO', key: 'use_apollo', methods: ['full', 'freeze'], help: 'use_apollo: the gradient scaled by Adam\'s effect in a random low-rank projection (full / freeze).' },
  { value: 'badam', label: 'BAdam', key: 'use_badam', methods: ['full', 'freeze'], help: 'use_badam: Adam on one block of layers at a time (full / freeze).' },
  { value: 'adam_mini', label: 'Adam-mini', key: 'use_adam_mini', help: 'use_adam_mini: one second moment per head / neuron / tensor.' },
  { value: 'muon', label: 'Muon', key: 'use_muon', help: 'use_muon: orthogonalised momentum for 2-D weights, AdamW for the rest.' },
];

/** Each optimizer's own keys, at LLaMA-Factory's defaults (src/config/schema.ts), the ones the form shows. */
export const OPTIMIZER_KEYS: Partial<Record<Optimizer, Settings>> = {
  galore: { galore_rank: 16, galore_update_interval: 200, galore_scale: 2 },
  apollo: { apollo_rank: 16, apollo_update_interval: 200, apollo_scale: 32 },
  badam: { badam_mode: 'layer', badam_switch_interval: 50, badam_update_ratio: 0.05 },
};

export function optimizerOf(s: Settings): Optimizer {
  return OPTIMIZERS.find((o) => o.key && s[o.key] === true)?.value ?? 'adamw';
}

/** The optimizers the settings' finetuning type takes. */
export const optimizersFor = (s: Settings) => OPTIMIZERS.filter((o) => !o.methods || o.methods.includes(String(s.finetuning_type)));

/** The settings with `o` switched on, the other optimizers' switches and keys removed, its keys at their defaults where unset. */
export function withOptimizer(s: Settings, o: Optimizer): Settings {
  const out: Settings = { ...s };
  for (const x of OPTIMIZERS) {
    if (x.key) delete out[x.key];
    if (x.value !== o) for (const k of Object.keys(OPTIMIZER_KEYS[x.value] ?? {})) delete out[k];
  }
  const spec = OPTIMIZERS.find((x) => x.value === o)!;
  if (!spec.key) return out;
  return { ...OPTIMIZER_KEYS[o], ...out, [spec.key]: true };
}

// ---- SFT token loss ------------------------------------------------------------------------------

export type SftLoss = 'ce' | 'dft' | 'eaft' | 'asft';

/** The token losses of stage sft, each the LLaMA-Factory switch that selects it (src/engine/options.ts tokenLoss). */
export const SFT_LOSSES: { value: SftLoss; label: string; key: string | null; help: string }[] = [
  { value: 'ce', label: 'Cross-entropy', key: null, help: 'The standard token loss.' },
  { value: 'dft', label: 'DFT', key: 'use_dft_loss', help: 'use_dft_loss: each token\'s loss weighted by its own (detached) probability.' },
  { value: 'eaft', label: 'EAFT', key: 'use_eaft_loss', help: 'use_eaft_loss: each token\'s loss weighted by the entropy of its 20 most likely tokens, to the power eaft_alpha.' },
  { value: 'asft', label: 'ASFT', key: 'use_asft_loss', help: 'use_asft_loss: DFT plus asft_alpha times the KL divergence from the reference (the base with the adapter off, or a full / freeze run\'s initial weights).' },
];

/** Each loss's own keys, at LLaMA-Factory's defaults (src/config/schema.ts). */
const SFT_LOSS_KEYS: Partial<Record<SftLoss, Settings>> = { eaft: { eaft_alpha: 1 }, asft: { asft_alpha: 0.1 } };
const SFT_LOSS_ALL = [...SFT_LOSSES.flatMap((l) => (l.key ? [l.key] : [])), ...Object.values(SFT_LOSS_KEYS).flatMap((k) => Object.keys(k))];

export function sftLossOf(s: Settings): SftLoss {
  return SFT_LOSSES.find((l) => l.key && s[l.key] === true)?.value ?? 'ce';
}

/** The losses these settings can train with: ASFT's reference is the run's own base, which a separate ref_model would contradict (the config reader refuses it). */
export const sftLossesFor = (s: Settings) => SFT_LOSSES.filter((l) => l.value !== 'asft' || s.ref_model === null || s.ref_model === undefined);

/** The settings with `loss` switched on, the other losses' switches and keys removed, its keys at their defaults where unset. */
export function withSftLoss(s: Settings, loss: SftLoss): Settings {
  const out: Settings = { ...s };
  for (const l of SFT_LOSSES) {
    if (l.key) delete out[l.key];
    if (l.value !== loss) for (const k of Object.keys(SFT_LOSS_KEYS[l.value] ?? {})) delete out[k];
  }
  const spec = SFT_LOSSES.find((l) => l.value === loss)!;
  return spec.key ? { ...SFT_LOSS_KEYS[loss], ...out, [spec.key]: true } : out;
}

// ---- evaluation and the best checkpoint ---------------------------------------------------------

/** HF's best-model keys (src/config/best-model.ts checks them): they need an evaluation. */
export const BEST_MODEL_KEYS = ['load_best_model_at_end', 'metric_for_best_model', 'greater_is_better', 'early_stopping_steps'];

export const hasEvalSplit = (s: Settings) => Number(s.val_size) > 0;

/** The best-model fields are shown with an eval split, or while the settings (a loaded config) set them. */
export const showsBestModel = (s: Settings) => hasEvalSplit(s) || BEST_MODEL_KEYS.some((k) => s[k] !== undefined && s[k] !== null && s[k] !== false);

/**
 * The settings with one form value changed and what follows from it: a held-out split is
 * evaluated at each checkpoint (eval_steps = save_steps, so the best checkpoint is always an
 * evaluated one), no split drops the best-model keys, pref_loss brings its own keys.
 */
export function withSetting(s: Settings, key: string, value: unknown): Settings {
  let out: Settings = key === 'pref_loss' ? withStageKeys({ ...s, [key]: value }) : { ...s, [key]: value };
  if (key === 'val_size') {
    out = { ...out, eval_strategy: Number(value) > 0 ? 'steps' : 'no', eval_steps: Number(out.save_steps) || 10 };
    if (!hasEvalSplit(out)) for (const k of BEST_MODEL_KEYS) delete out[k];
  }
  if (key === 'save_steps' && out.eval_strategy === 'steps') out = { ...out, eval_steps: value };
  return out;
}

// ---- half precision -----------------------------------------------------------------------------

export const wantsHalf = (s: Settings) => s.bf16 === true || s.fp16 === true;

/**
 * What the f16 tier does with these settings on this GPU, as the engine decides it (precision.ts):
 * f16 whether the base is stored in f16, note why not where half precision was asked for.
 */
export function halfPrecision(s: Settings, caps: Pick<Capabilities, 'f16' | 'adapter'> | null): { f16: boolean; note: string | null } {
  if (!wantsHalf(s)) return { f16: false, note: null };
  if (!caps) return { f16: false, note: 'no WebGPU device: training cannot run' };
  const c = { bf16: s.bf16 === true, fp16: s.fp16 === true, finetuning_type: String(s.finetuning_type ?? 'lora'), quantization_bit: (s.quantization_bit as number | null) ?? null };
  const p = basePrecision(c as Pick<CrucibleConfig, 'bf16' | 'fp16' | 'finetuning_type' | 'quantization_bit'>, caps);
  return { f16: p.f16, note: p.note?.replace(/^note: /, '') ?? null };
}

/** The model format the settings train and chat with: the quantized base (QLoRA / QOFT) or the f16 tier. */
export function modelFormat(s: Settings, caps: Pick<Capabilities, 'f16' | 'adapter'> | null): { quantizationBit: 4 | 8 | null; f16: boolean } {
  const q = s.quantization_bit === 4 || s.quantization_bit === 8 ? s.quantization_bit : null;
  return { quantizationBit: q, f16: halfPrecision(s, caps).f16 };
}

/** Optimizer steps of a run that trains by epochs (max_steps <= 0), as the trainer counts them. */
export function epochSteps(s: Settings, examples: number): number {
  const batch = Math.max(1, Number(s.per_device_train_batch_size) || 1);
  const accum = Math.max(1, Number(s.gradient_accumulation_steps) || 1);
  const perEpoch = Math.max(1, Math.ceil(Math.ceil(examples / batch) / accum));
  return Math.ceil(Math.max(0, Number(s.num_train_epochs) || 0) * perEpoch);
}

// ---- stages ------------------------------------------------------------------------------------

export const STAGES: { value: string; label: string }[] = [
  { value: 'sft', label: 'sft: supervised fine-tuning' },
  { value: 'pt', label: 'pt: continued pre-training' },
  { value: 'dpo', label: 'dpo: preference pairs (DPO, ORPO, SimPO…)' },
  { value: 'kto', label: 'kto: desirable / undesirable answers' },
  { value: 'rm', label: 'rm: reward model' },
  { value: 'ppo', label: 'ppo: PPO with a reward model' },
];

export const PREF_LOSSES: { value: string; label: string }[] = [
  { value: 'sigmoid', label: 'sigmoid (DPO)' },
  { value: 'hinge', label: 'hinge (SLiC)' },
  { value: 'ipo', label: 'ipo' },
  { value: 'orpo', label: 'orpo (no reference model)' },
  { value: 'simpo', label: 'simpo (no reference model)' },
];

/** PPO's keys, at LLaMA-Factory's defaults but max_new_tokens (1024 there): short rollouts suit the models a browser trains. */
const PPO_DEFAULTS: Settings = {
  reward_model: null,
  reward_model_type: 'lora',
  ppo_epochs: 4,
  ppo_buffer_size: 1,
  ppo_target: 6,
  ppo_score_norm: false,
  ppo_whiten_rewards: false,
  max_new_tokens: 32,
};

const PREF_KEYS = ['pref_beta', 'pref_loss', 'pref_ftx', 'dpo_label_smoothing', 'simpo_gamma', 'kto_chosen_weight', 'kto_rejected_weight', ...Object.keys(PPO_DEFAULTS)];

export { REWARD_RUN };
/** The rm run a reward_model value names, or null. */
export const rewardRunId = (s: Settings): string | null => (typeof s.reward_model === 'string' && s.reward_model.startsWith(REWARD_RUN) ? s.reward_model.slice(REWARD_RUN.length) : null);

/** LLaMA-Factory's defaults of the preference (and PPO) keys that apply to these settings' stage and pref_loss. */
function preferenceDefaults(s: Settings): Settings {
  if (s.stage === 'ppo') return PPO_DEFAULTS;
  if (s.stage === 'kto') return { pref_beta: 0.1, pref_ftx: 0, kto_chosen_weight: 1, kto_rejected_weight: 1 };
  if (s.stage !== 'dpo') return {};
  const loss = typeof s.pref_loss === 'string' && s.pref_loss !== 'kto_pair' ? s.pref_loss : 'sigmoid';
  return {
    pref_beta: 0.1,
    pref_loss: loss,
    pref_ftx: 0,
    ...(loss === 'sigmoid' ? { dpo_label_smoothing: 0 } : {}),
    ...(loss === 'simpo' ? { simpo_gamma: 0.5 } : {}),
  };
}

/**
 * The settings with exactly the preference (and SFT loss) keys their stage (and pref_loss) uses:
 * missing ones at LLaMA-Factory's defaults, values already set kept, the others removed (so the
 * YAML holds no key without effect).
 */
export function withStageKeys(s: Settings): Settings {
  const defaults = preferenceDefaults(s);
  const out: Settings = {};
  // the SFT losses are stage sft's (the reader notes them without effect elsewhere)
  const stageKeys = s.stage === 'sft' ? [] : SFT_LOSS_ALL;
  for (const [k, v] of Object.entries(s)) if ((!PREF_KEYS.includes(k) || k in defaults) && !stageKeys.includes(k)) out[k] = v;
  return { ...out, ...Object.fromEntries(Object.entries(defaults).filter(([k]) => out[k] === undefined)) };
}

export interface Preset {
  name: string;
  help: string;
  settings: Settings;
  /** The demo dataset the preset trains on (preference presets). */
  demoDataset?: string;
}

/** A short preference run on the demo: LoRA r 8 on all layers, cosine with 10% warmup, as LLaMA-Factory's examples. */
const PREFERENCE_DEMO: Settings = {
  ...DEFAULT_SETTINGS,
  learning_rate: 5e-4,
  lr_scheduler_type: 'cosine',
  warmup_ratio: 0.1,
  num_train_epochs: 3,
  max_steps: 30,
  per_device_train_batch_size: 2,
  gradient_accumulation_steps: 1,
  cutoff_len: 128,
};

export const PRESETS: Preset[] = [
  {
    name: 'Quick demo',
    help: '30 LoRA steps of 8 examples at lr 1e-2 on the identity demo: the model learns to answer "I am Crucible."',
    settings: DEFAULT_SETTINGS,
    demoDataset: 'identity',
  },
  {
    name: 'LoRA (LLaMA-Factory example)',
    help: 'examples/train_lora/*_lora_sft.yaml: r 8, lr 1e-4, cosine, 3 epochs, batch 1 x 8.',
    settings: {
      ...DEFAULT_SETTINGS,
      lora_rank: 8,
      lora_alpha: 16,
      learning_rate: 1e-4,
      lr_scheduler_type: 'cosine',
      warmup_ratio: 0.1,
      num_train_epochs: 3,
      max_steps: -1,
      per_device_train_batch_size: 1,
      gradient_accumulation_steps: 8,
      cutoff_len: 2048,
      save_steps: 50,
      logging_steps: 5,
    },
  },
  {
    name: 'QLoRA 4-bit',
    help: 'LoRA r 16 on a 4-bit base: the most model per GiB.',
    settings: { ...DEFAULT_SETTINGS, finetuning_type: 'lora', quantization_bit: 4, lora_rank: 16, lora_alpha: 32, learning_rate: 2e-4, max_steps: -1, num_train_epochs: 2, per_device_train_batch_size: 2, gradient_accumulation_steps: 4, cutoff_len: 1024, save_steps: 50, logging_steps: 5 },
  },
  {
    name: 'DoRA',
    help: 'Weight-decomposed LoRA, r 8.',
    settings: { ...DEFAULT_SETTINGS, use_dora: true, learning_rate: 5e-4 },
  },
  {
    name: 'Full fine-tune (small models)',
    help: 'All weights, lr 1e-5: needs about 16 bytes per parameter.',
    settings: { ...DEFAULT_SETTINGS, finetuning_type: 'full', learning_rate: 1e-5, max_steps: 40 },
  },
  {
    name: 'Freeze (last 2 layers)',
    help: 'Train the last two layers in full.',
    settings: { ...DEFAULT_SETTINGS, finetuning_type: 'freeze', freeze_trainable_layers: 2, learning_rate: 1e-4 },
  },
  {
    name: 'DPO',
    help: 'examples/train_lora/*_lora_dpo.yaml (sigmoid, beta 0.1, LoRA r 8, cosine, warmup 0.1) on dpo_en_demo, scaled for the demo model: lr 5e-4 instead of 5e-6, batch 2, cutoff 128, 30 steps.',
    settings: withStageKeys({ ...PREFERENCE_DEMO, stage: 'dpo', pref_loss: 'sigmoid', pref_beta: 0.1 }),
    demoDataset: 'dpo_en_demo',
  },
  {
    name: 'KTO',
    help: 'examples/train_lora/*_lora_kto.yaml (beta 0.1, LoRA r 8) on kto_en_demo, scaled for the demo model as the DPO preset.',
    settings: withStageKeys({ ...PREFERENCE_DEMO, stage: 'kto', pref_beta: 0.1 }),
    demoDataset: 'kto_en_demo',
  },
  {
    name: 'Reward model',
    help: 'examples/train_lora/*_lora_reward.yaml (stage rm, LoRA r 8 and a value head) on dpo_en_demo, scaled for the demo model.',
    settings: withStageKeys({ ...PREFERENCE_DEMO, stage: 'rm' }),
    demoDataset: 'dpo_en_demo',
  },
];

const KEY = 'crucible.settings.v1';

export interface Persisted {
  settings: Settings;
  model?: { kind: 'demo' } | { kind: 'hub'; id: string };
  data?: { kind: 'demo'; dataset: string } | { kind: 'upload'; dataset: string } | { kind: 'hub'; repo: string };
  generation?: Record<string, unknown>;
  hubEndpoint?: string;
  hubOffline?: boolean;
  /** The run whose adapter chat and export use. */
  adapterRun?: string;
}

export function loadPersisted(): Persisted {
  try {
    const raw = localStorage.getItem(KEY);
    if (raw) {
      const p = JSON.parse(raw) as Persisted;
      return { ...p, settings: withStageKeys({ ...DEFAULT_SETTINGS, ...p.settings }) };
    }
  } catch {
    /* private mode or corrupt: start afresh */
  }
  return { settings: { ...DEFAULT_SETTINGS } };
}

export function savePersisted(p: Persisted): void {
  try {
    localStorage.setItem(KEY, JSON.stringify(p));
  } catch {
    /* storage full or disabled */
  }
}
