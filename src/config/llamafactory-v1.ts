// LLaMA-Factory v1 configs (its examples/v1, run with USE_V1=1): `model`, plugin configs
// (peft_config, quant_config, kernel_config, dist_config, init_config, optim_config) given as
// mappings with a `name`, `train_dataset` naming a data YAML, `micro_batch_size`,
// `batching_strategy`. Translated into the v0 keys Crucible reads, with v1's own defaults
// (config/*_args.py and the plugins' params dataclasses), so both kinds run on the same engine.
// What only matters across several GPUs is named in a notice; what cannot be done is refused.

import { nearest } from './suggest';
import { readV1DataYaml, type V1Converter } from './v1-data';
import type { DatasetInfoEntry } from './llamafactory';

/** One key as given (load.ts's entries): where it came from, for messages. */
export interface V1Entry {
  key: string;
  value: unknown;
  where: string;
}

export interface V1Access {
  /** Text of a local file, or null when there is none (the data YAML named by train_dataset). */
  readText?: (path: string) => string | null;
  /** A v1 path (relative to the working directory) as the data pipeline should read it. */
  localPath?: (path: string) => string;
}

export interface V1Translation {
  /** v0 keys (and Crucible's dataset_info) with the v1 entry each came from. */
  entries: V1Entry[];
  notices: string[];
  problems: string[];
}

/** Top-level keys only v1 configs have; one of them marks a config as v1. */
const V1_ONLY = [
  'model',
  'model_class',
  'custom_chat_template',
  'init_config',
  'peft_config',
  'kernel_config',
  'quant_config',
  'train_dataset',
  'micro_batch_size',
  'global_batch_size',
  'batching_strategy',
  'batching_workers',
  'enable_activation_checkpointing',
  'dist_config',
  'dp_size',
  'cp_size',
  'cp_mode',
  'mp_replicate_size',
  'mp_shard_size',
  'dist_timeout',
  'optim_config',
  'lr_scheduler_config',
  'save_epochs',
  'save_ckpt_as_hf',
  'sample_backend',
] as const;

/** v1 keys with the same name and meaning as the v0 key. */
const SAME_AS_V0 = [
  'output_dir',
  'cutoff_len',
  'learning_rate',
  'num_train_epochs',
  'max_steps',
  'max_grad_norm',
  'seed',
  'save_steps',
  'save_total_limit',
  'logging_steps',
  'pref_loss',
  'pref_beta',
  'pref_ftx',
  'simpo_gamma',
  'dpo_label_smoothing',
  'ld_alpha',
  'max_new_tokens',
  'bf16',
  'full_determinism',
  'trust_remote_code',
  'flash_attn',
] as const;

const V1_KEYS: readonly string[] = [...V1_ONLY, ...SAME_AS_V0, 'resume_from_checkpoint', 'eval_dataset'];

/** Settings that place work across GPUs; on one GPU they change nothing. */
const MULTI_GPU_KEYS = ['dp_size', 'cp_size', 'cp_mode', 'mp_replicate_size', 'mp_shard_size', 'dist_timeout'];

/** LLaMA-Factory v1's ModelArguments default model. */
export const V1_DEFAULT_MODEL = 'Qwen/Qwen3-4B-Instruct-2507';

export function isV1Config(keys: Iterable<string>): boolean {
  for (const k of keys) if ((V1_ONLY as readonly string[]).includes(k)) return true;
  return false;
}

/**
 * `entries`: the YAML's keys, then the overrides (a dotted key such as peft_config.r=16 sets one
 * field of a plugin config); `isV0Key` tells the keys Crucible reads in v0 configs, accepted here
 * too with a notice.
 */
export function translateV1(entries: readonly V1Entry[], isV0Key: (key: string) => boolean, access: V1Access = {}): V1Translation {
  const t = new Translator(isV0Key, access);
  for (const e of fold(entries, t.problems)) t.add(e);
  t.finish();
  return { entries: t.out, notices: t.notices, problems: t.problems };
}

/** Later entries win; dotted keys set a field inside the mapping they name. */
function fold(entries: readonly V1Entry[], problems: string[]): V1Entry[] {
  const byKey = new Map<string, V1Entry>();
  for (const e of entries) {
    const dot = e.key.indexOf('.');
    if (dot < 0) {
      byKey.set(e.key, { ...e });
      continue;
    }
    const key = e.key.slice(0, dot);
    const field = e.key.slice(dot + 1);
    const base = byKey.get(key);
    const parsed = base ? pluginObject(base.value, key, base.where, problems) : {};
    if (parsed === null) continue;
    byKey.set(key, { key, value: { ...parsed, [field]: e.value }, where: base ? `${base.where}, ${e.where}` : e.where });
  }
  return [...byKey.values()];
}

/** A plugin config: a mapping or a JSON object string (v1's get_plugin_config), or null. */
function pluginObject(value: unknown, key: string, where: string, problems: string[]): Record<string, unknown> | null {
  let v = value;
  if (v === null || v === undefined) return {};
  if (typeof v === 'string' && v.trim().startsWith('{')) {
    try {
      v = JSON.parse(v);
    } catch {
      /* reported below */
    }
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) {
    problems.push(`${where}: ${key}: expected a mapping with a name (LLaMA-Factory v1 plugin config), got ${JSON.stringify(value)}`);
    return null;
  }
  return v as Record<string, unknown>;
}

class Translator {
  readonly out: V1Entry[] = [];
  readonly notices: string[] = [];
  readonly problems: string[] = [];
  private readonly given = new Map<string, V1Entry>();
  /** v0 keys given in the v1 config or its overrides: applied last, so they win. */
  private readonly v0Entries: V1Entry[] = [];
  private converters = new Set<V1Converter>();
  private datasetInfo: Record<string, DatasetInfoEntry> = {};

  constructor(
    private readonly isV0Key: (key: string) => boolean,
    private readonly access: V1Access,
  ) {}

  add(e: V1Entry): void {
    this.given.set(e.key, e);
  }

  private emit(key: string, value: unknown, from: V1Entry): void {
    this.out.push({ key, value, where: from.where });
  }

  private note(line: string): void {
    if (!this.notices.includes(line)) this.notices.push(line);
  }

  private refuse(e: V1Entry, what: string): void {
    this.problems.push(`${e.where}: ${e.key}: ${what}`);
  }

  private plugin(key: string): { entry: V1Entry; fields: Record<string, unknown>; name: string } | null {
    const entry = this.given.get(key);
    if (!entry || entry.value === null || entry.value === undefined) return null;
    const fields = pluginObject(entry.value, key, entry.where, this.problems);
    if (!fields) return null;
    if (typeof fields.name !== 'string' || fields.name.trim() === '') {
      this.refuse(entry, "a plugin config must have a 'name' field");
      return null;
    }
    return { entry, fields, name: fields.name.trim() };
  }

  finish(): void {
    const synthetic: V1Entry = { key: 'model', value: null, where: 'LLaMA-Factory v1 default' };
    for (const [key, e] of this.given) {
      if (V1_KEYS.includes(key)) continue;
      if (this.isV0Key(key)) {
        if (!e.where.startsWith('override')) this.note(`note: ${key} is a LLaMA-Factory v0 key (a v1 config has no such key); Crucible reads it as v0 does`);
        this.v0Entries.push(e);
      } else {
        this.problems.push(`${e.where}: unknown key "${key}" in a LLaMA-Factory v1 config (did you mean "${nearest(key, V1_KEYS)}"?)`);
      }
    }
    const v0 = (key: string) => this.v0Entries.some((o) => o.key === key);

    // model
    const model = this.given.get('model');
    if (model) this.emit('model_name_or_path', model.value, model);
    else if (!v0('model_name_or_path')) {
      this.note(`note: no model given; LLaMA-Factory v1 defaults to ${V1_DEFAULT_MODEL}`);
      this.emit('model_name_or_path', V1_DEFAULT_MODEL, synthetic);
    }
    const modelClass = this.given.get('model_class');
    if (modelClass && modelClass.value !== 'llm') {
      this.refuse(modelClass, `${JSON.stringify(modelClass.value)}: Crucible trains causal language models only (model_class: llm)`);
    }
    const custom = this.given.get('custom_chat_template');
    if (custom && custom.value !== null) {
      this.refuse(custom, "a chat template given as Jinja text is not read by Crucible; put it in the model folder's tokenizer_config.json (chat_template) instead");
    }

    this.method();
    this.quantization();
    this.ignoredPlugins();
    this.training();
    this.datasets();

    // v1 defaults that differ from v0's, unless the config gave the key
    const defaults: Array<[string, unknown, string]> = [
      ['learning_rate', 1e-4, 'learning_rate'],
      ['logging_steps', 1, 'logging_steps'],
      ['max_new_tokens', 128, 'max_new_tokens'],
      ['lr_scheduler_type', 'constant', 'lr_scheduler_config'],
      ['weight_decay', 0.01, 'optim_config'],
    ];
    for (const [key, value, v1Key] of defaults) {
      if (!v0(key) && !this.given.has(v1Key)) this.out.push({ key, value, where: 'LLaMA-Factory v1 default' });
    }
    if (!this.given.has('save_steps') && !this.given.has('save_epochs')) {
      this.out.push({ key: 'save_strategy', value: 'no', where: 'LLaMA-Factory v1 default (no save_steps)' });
    }
    if (!this.given.has('output_dir')) {
      this.out.push({ key: 'output_dir', value: `outputs/${crypto.randomUUID().replace(/-/g, '')}`, where: 'LLaMA-Factory v1 default (outputs/<random id>)' });
    }
    // v1 trains whatever train_dataset names; a config without one is for chat or merge
    if (this.given.has('train_dataset')) this.out.push({ key: 'do_train', value: true, where: this.given.get('train_dataset')!.where });
    this.out.push(...this.v0Entries);
  }

  private method(): void {
    const peft = this.plugin('peft_config');
    if (!peft) {
      this.out.push({ key: 'finetuning_type', value: 'full', where: 'LLaMA-Factory v1 default (no peft_config)' });
      return;
    }
    const { entry, fields, name } = peft;
    const fieldsOf: Record<string, readonly string[]> = {
      lora: ['r', 'lora_alpha', 'lora_dropout', 'target_modules', 'use_rslora', 'use_dora', 'modules_to_save', 'adapter_name_or_path', 'export_dir', 'export_size', 'export_hub_model_id', 'infer_dtype', 'export_legacy_format'],
      freeze: ['freeze_trainable_layers', 'freeze_trainable_modules', 'freeze_extra_modules', 'cast_trainable_params_to_fp32'],
    };
    const known = fieldsOf[name];
    if (!known) {
      this.refuse(entry, `name ${JSON.stringify(name)}: LLaMA-Factory v1's PEFT methods are lora and freeze (leave peft_config out for full fine-tuning)`);
      return;
    }
    if (!this.checkFields(entry, fields, known)) return;
    const set = (key: string, field: string, fallback?: unknown) => {
      if (field in fields) this.out.push({ key, value: fields[field], where: `${entry.where} (${field})` });
      else if (fallback !== undefined) this.out.push({ key, value: fallback, where: `${entry.where} (LLaMA-Factory v1 default ${field})` });
    };
    this.emit('finetuning_type', name, entry);
    if (name === 'lora') {
      set('lora_rank', 'r', 8);
      set('lora_alpha', 'lora_alpha', 16);
      set('lora_dropout', 'lora_dropout', 0.05);
      set('lora_target', 'target_modules', 'all');
      for (const f of ['use_rslora', 'use_dora', 'adapter_name_or_path', 'export_dir', 'export_size', 'export_hub_model_id', 'infer_dtype', 'export_legacy_format']) set(f, f);
      set('additional_target', 'modules_to_save');
    } else {
      set('freeze_trainable_layers', 'freeze_trainable_layers', 2);
      set('freeze_trainable_modules', 'freeze_trainable_modules', 'all');
      const extra = fields.freeze_extra_modules;
      if (extra !== undefined && !(Array.isArray(extra) && extra.length === 0)) set('freeze_extra_modules', 'freeze_extra_modules');
      if ('cast_trainable_params_to_fp32' in fields) this.note('note: peft_config.cast_trainable_params_to_fp32: Crucible keeps trainable weights in float32 already');
    }
  }

  private quantization(): void {
    const quant = this.plugin('quant_config');
    if (!quant) return;
    const { entry, fields, name } = quant;
    if (name !== 'bnb' && name !== 'auto') {
      this.refuse(entry, `name ${JSON.stringify(name)}: LLaMA-Factory v1 quantizes with bnb or auto`);
      return;
    }
    if (!this.checkFields(entry, fields, ['quantization_bit', 'compute_dtype', 'double_quantization', 'quantization_type'])) return;
    const bits = fields.quantization_bit;
    if (bits === undefined || bits === null) {
      if (name === 'auto') this.refuse(entry, 'name auto needs quantization_bit (4 or 8)');
      return;
    }
    this.out.push({ key: 'quantization_bit', value: bits, where: `${entry.where} (quantization_bit)` });
    const pytorch = ['compute_dtype', 'double_quantization', 'quantization_type'].filter((f) => f in fields);
    if (pytorch.length > 0) {
      this.note(`note: quant_config ${pytorch.join(', ')}: bitsandbytes settings; Crucible quantizes with its own ${String(bits)}-bit block format`);
    }
  }

  /** kernel_config, dist_config, init_config and the multi-GPU sizes: notices, never errors. */
  private ignoredPlugins(): void {
    const subKeys = (fields: Record<string, unknown>) => {
      const rest = Object.keys(fields).filter((k) => k !== 'name');
      return rest.length > 0 ? `, with ${rest.join(', ')}` : '';
    };
    const kernel = this.plugin('kernel_config');
    if (kernel) {
      this.note(`note: kernel_config (name: ${kernel.name}${subKeys(kernel.fields)}) chooses PyTorch/Triton kernels; Crucible runs its own WebGPU kernels and ignores it`);
    }
    const dist = this.plugin('dist_config');
    if (dist) {
      this.note(`note: dist_config (name: ${dist.name}${subKeys(dist.fields)}) spreads training over several GPUs; Crucible trains on one GPU and ignores it`);
    }
    const init = this.plugin('init_config');
    if (init) {
      this.note(`note: init_config (name: ${init.name}${subKeys(init.fields)}) places the weights across GPU ranks; Crucible loads them on its one GPU and ignores it`);
    }
    const multi = MULTI_GPU_KEYS.filter((k) => this.given.has(k));
    if (multi.length > 0) {
      this.note(`note: ${multi.join(', ')}: data/context/model-parallel layout over several GPUs; Crucible trains on one GPU and ignores ${multi.length > 1 ? 'them' : 'it'}`);
    }
    const workers = this.given.get('batching_workers');
    if (workers) this.note('note: batching_workers is a PyTorch data-loader setting; Crucible ignores it');
    const backend = this.given.get('sample_backend');
    if (backend) {
      if (backend.value !== 'hf' && backend.value !== 'vllm') this.refuse(backend, `expected hf or vllm, got ${JSON.stringify(backend.value)}`);
      else if (backend.value === 'vllm') this.note('note: sample_backend vllm is a LLaMA-Factory engine; Crucible generates with its WebGPU engine');
    }
  }

  private training(): void {
    for (const key of SAME_AS_V0) {
      const e = this.given.get(key);
      if (!e) continue;
      if (key === 'max_steps' && (e.value === null || e.value === undefined)) continue;
      this.emit(key, e.value, e);
    }
    const resume = this.given.get('resume_from_checkpoint');
    if (resume) this.emit('resume_from_checkpoint', resume.value === 'auto' ? true : resume.value, resume);

    const micro = this.given.get('micro_batch_size');
    const microSize = micro ? micro.value : 1;
    this.out.push({ key: 'per_device_train_batch_size', value: microSize, where: micro?.where ?? 'LLaMA-Factory v1 default (micro_batch_size)' });
    const global = this.given.get('global_batch_size');
    if (global && global.value !== null) {
      const g = Number(global.value);
      const m = Number(microSize);
      if (!Number.isInteger(g) || !Number.isInteger(m) || m < 1 || g % m !== 0) {
        this.refuse(global, `must be a multiple of micro_batch_size (one GPU: global = micro_batch_size x accumulation steps), got ${String(global.value)} and ${String(microSize)}`);
      } else this.emit('gradient_accumulation_steps', g / m, global);
    }

    const checkpointing = this.given.get('enable_activation_checkpointing');
    if (checkpointing) {
      if (typeof checkpointing.value !== 'boolean') this.refuse(checkpointing, 'expected true or false');
      else this.emit('disable_gradient_checkpointing', !checkpointing.value, checkpointing);
    }

    const saveEpochs = this.given.get('save_epochs');
    if (saveEpochs && saveEpochs.value !== null) {
      if (Number(saveEpochs.value) === 1) this.emit('save_strategy', 'epoch', saveEpochs);
      else this.refuse(saveEpochs, `Crucible saves every epoch (save_epochs: 1) or every save_steps steps; ${String(saveEpochs.value)} epochs is neither`);
    }
    if (this.given.has('save_ckpt_as_hf')) this.note('note: save_ckpt_as_hf: Crucible checkpoints already hold the weights as safetensors');

    const optim = this.plugin('optim_config');
    if (optim) this.refuse(optim.entry, `name ${JSON.stringify(optim.name)}: Crucible implements AdamW only (leave optim_config out for LLaMA-Factory v1's default AdamW)`);
    const scheduler = this.plugin('lr_scheduler_config');
    if (scheduler) {
      this.refuse(scheduler.entry, `name ${JSON.stringify(scheduler.name)}: not read by Crucible; leave it out for v1's constant learning rate, or give lr_scheduler_type as in v0 configs`);
    }

    this.batching();
  }

  private batching(): void {
    const e = this.given.get('batching_strategy');
    if (!e || e.value === 'normal') return;
    if (e.value === 'padding_free') {
      this.note(
        'note: batching_strategy padding_free lays each micro-batch out as one unpadded sequence; Crucible trains the same examples per micro-batch with padding (same loss)',
      );
      return;
    }
    if (e.value === 'dynamic_batching' || e.value === 'dynamic_padding_free') {
      const maxSteps = this.given.get('max_steps');
      if (e.value === 'dynamic_batching' && (!maxSteps || maxSteps.value === null || Number(maxSteps.value) <= 0)) {
        this.refuse(e, 'dynamic_batching requires max_steps because it is step-driven');
        return;
      }
      this.emit('neat_packing', true, e);
      this.note(
        `note: batching_strategy ${String(e.value)} fills each micro-batch up to micro_batch_size x cutoff_len tokens; Crucible packs examples ` +
          'into micro_batch_size sequences of cutoff_len tokens with attention kept within each example (neat_packing): the same token budget, filled best-fit rather than in order',
      );
      return;
    }
    this.refuse(e, `expected normal, padding_free, dynamic_batching or dynamic_padding_free, got ${JSON.stringify(e.value)}`);
  }

  private datasets(): void {
    const train = this.given.get('train_dataset');
    const evalSet = this.given.get('eval_dataset');
    if (evalSet && evalSet.value !== null) {
      this.note(
        'note: eval_dataset: LLaMA-Factory v1 neither loads nor evaluates it yet, and Crucible follows it; ' +
          'to evaluate during training, use a v0 config (eval_dataset with eval_strategy: steps)',
      );
    }
    const names: string[] = [];
    if (train && train.value !== null && train.value !== undefined) {
      for (const [name, entry] of Object.entries(this.dataYaml(train) ?? {})) {
        this.datasetInfo[name] = entry;
        names.push(name);
      }
    }
    if (names.length > 0 && train) this.emit('dataset', names, train);
    if (Object.keys(this.datasetInfo).length > 0) {
      this.out.push({ key: 'dataset_info', value: this.datasetInfo, where: train!.where });
      // v1 paths are relative to the working directory, not to a dataset_dir
      this.out.push({ key: 'dataset_dir', value: '.', where: train!.where });
    }
    if (this.converters.has('pair') && !this.v0Entries.some((o) => o.key === 'stage')) {
      this.out.push({ key: 'stage', value: 'dpo', where: `${train?.where ?? 'config'} (converter: pair)` });
      this.note('note: the data uses converter pair, so this trains DPO (LLaMA-Factory v1: llamafactory-cli dpo)');
    }
    if (this.converters.has('pair') && this.converters.size > 1) {
      this.problems.push(`${train?.where ?? 'config'}: train_dataset mixes pair data (DPO) with ${[...this.converters].filter((c) => c !== 'pair').join(', ')} data (SFT); one run trains one of them`);
    }
    if (this.converters.has('alpaca')) {
      this.note('note: converter alpaca: Crucible joins instruction and input with a newline, as LLaMA-Factory v0 does (v1 joins them with nothing)');
    }
    if (this.converters.has('sharegpt')) {
      this.note('note: converter sharegpt: a multi-turn conversation is one example trained on every assistant turn (LLaMA-Factory v1 makes one example per turn)');
    }
  }

  private dataYaml(e: V1Entry): Record<string, DatasetInfoEntry> | null {
    const path = e.value;
    if (typeof path !== 'string' || path.trim() === '') {
      this.refuse(e, `expected the path of a data YAML, got ${JSON.stringify(path)}`);
      return null;
    }
    if (!/\.ya?ml$/i.test(path)) {
      this.refuse(
        e,
        `${JSON.stringify(path)} is read by LLaMA-Factory v1 in its own message format, which Crucible does not read; ` +
          'write a data YAML naming the converter (alpaca, sharegpt or pair) and point to it',
      );
      return null;
    }
    const text = this.access.readText?.(path) ?? null;
    if (text === null) {
      const hub = !path.startsWith('.') && !path.startsWith('/') && path.split('/').length === 3;
      this.refuse(
        e,
        hub
          ? `${JSON.stringify(path)} is not a local file (a data YAML on the Hub is not fetched by Crucible: download it and point to the copy)`
          : `cannot read the data YAML ${JSON.stringify(path)}${this.access.readText ? ' (no such file)' : ' (no file access here)'}`,
      );
      return null;
    }
    const read = readV1DataYaml(text, path, this.access.localPath ?? ((p) => p));
    this.problems.push(...read.problems);
    for (const c of read.converters) this.converters.add(c);
    return read.problems.length > 0 ? null : read.entries;
  }

  /** Unknown fields of a plugin config are errors, as v1's parse_params makes them. */
  private checkFields(entry: V1Entry, fields: Record<string, unknown>, known: readonly string[]): boolean {
    const unknown = Object.keys(fields).filter((k) => k !== 'name' && !known.includes(k));
    if (unknown.length === 0) return true;
    this.refuse(entry, `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} for ${String(fields.name)} (expected: ${known.join(', ')})`);
    return false;
  }
}
