// Reading a LLaMA-Factory style config: YAML text or file, plus `key=value` overrides (as
// `llamafactory-cli train x.yaml key=value`), into a typed CrucibleConfig with notices.
// Works in the browser (parseConfig, configFromObject); loadConfig reads files in Node.

import { LineCounter, parseDocument, parse as parseYaml, isMap, isScalar, type Node as YamlNode } from 'yaml';
import {
  CONFIG_KEYS,
  IGNORED_KEYS,
  RENAMED_KEYS,
  REPORT_TO,
  SCHEMA,
  UNSUPPORTED_KEYS,
  argSpec,
  knownKeys,
  type ArgSpec,
  type Command,
  type ConfigKey,
  type CrucibleConfig,
} from './schema';
import { nearest } from './suggest';
import { bestModelProblems } from './best-model';
import { isV1Config, translateV1, type V1Access } from './llamafactory-v1';

export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('; '));
    this.problems = problems;
  }
}

export interface LoadOptions {
  /** Names the source in messages (default: the path for files, "config" for text). */
  fileName?: string;
  /** LLaMA-Factory v1 configs: reads the data YAML that train_dataset names (loadConfig reads files). */
  v1?: V1Access;
  /** loadConfig: the directory v1 paths are relative to (default: the process's). */
  cwd?: string;
}

export interface LoadResult {
  config: CrucibleConfig;
  /** One line each: ignored PyTorch settings, renamed keys, keys that do not apply here. */
  notices: string[];
  /** Keys given by the source or the overrides (after renames), in order. */
  given: string[];
}

/** One key as given: where it came from (for messages) and its raw value. */
interface Entry {
  key: string;
  value: unknown;
  where: string;
}

// ---- entry points ----------------------------------------------------------------------------

/**
 * `source` is a path when it is one line ending in .yaml, .yml or .json (read with node:fs),
 * otherwise YAML text. `overrides` are `key=value` strings; values are read as YAML scalars.
 */
export async function loadConfig(
  source: string,
  overrides: readonly string[] = [],
  options: LoadOptions = {},
): Promise<LoadResult> {
  if (isConfigPath(source)) {
    const { readFile } = await import('node:fs/promises');
    let text: string;
    try {
      text = await readFile(source, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (e as Error).message;
      throw new ConfigError([`cannot read config ${options.fileName ?? source}: ${why}`]);
    }
    return parseConfig(text, overrides, { fileName: options.fileName ?? source, v1: options.v1 ?? (await nodeV1Access(options.cwd)) });
  }
  return parseConfig(source, overrides, options);
}

/** v1 data YAMLs and data paths, relative to `cwd` as LLaMA-Factory v1 reads them. */
async function nodeV1Access(cwd: string | undefined): Promise<V1Access> {
  const { readFileSync, statSync } = await import('node:fs');
  const { resolve } = await import('node:path');
  const base = cwd ?? process.cwd();
  return {
    readText: (path) => {
      const full = resolve(base, path);
      return statSync(full, { throwIfNoEntry: false })?.isFile() ? readFileSync(full, 'utf8') : null;
    },
    localPath: (path) => resolve(base, path),
  };
}

export function isConfigPath(source: string): boolean {
  return !source.includes('\n') && /\.(ya?ml|json)$/i.test(source.trim());
}

/** YAML text (LLaMA-Factory reads YAML 1.1: yes/no are booleans) and overrides into a config. */
export function parseConfig(text: string, overrides: readonly string[] = [], options: LoadOptions = {}): LoadResult {
  const file = options.fileName ?? 'config';
  const fromYaml = yamlEntries(text, file);
  if (isV1Config(fromYaml.map((e) => e.key))) return resolveV1(fromYaml, overrideEntries(overrides), file, options.v1);
  return resolve([...fromYaml, ...overrideEntries(overrides)]);
}

/** A LLaMA-Factory v1 config: its keys as the v0 keys they mean, then the usual checks. */
function resolveV1(fromSource: Entry[], overrides: Entry[], file: string, access: V1Access | undefined): LoadResult {
  const known = new Set(knownKeys());
  const v1 = translateV1([...fromSource, ...overrides], (key) => known.has(key), access);
  if (v1.problems.length > 0) throw new ConfigError(v1.problems);
  const r = resolve(v1.entries);
  const intro = `note: ${file} is a LLaMA-Factory v1 config (USE_V1=1); Crucible reads it as the same run in v0 keys`;
  return { ...r, notices: [intro, ...v1.notices, ...r.notices] };
}

/**
 * A plain object (the app's form state, JSON, or a CrucibleConfig) into a config, with the same
 * checks as a YAML file. A `passthrough` object is unpacked, so configFromObject(config) round-trips.
 */
export function configFromObject(
  object: Record<string, unknown>,
  options: { source?: string; overrides?: readonly string[] } = {},
): LoadResult {
  const where = options.source ?? 'config';
  const entries: Entry[] = [];
  for (const [key, value] of Object.entries(object)) {
    if (key === 'passthrough' && value && typeof value === 'object' && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) entries.push({ key: k, value: v, where });
    } else entries.push({ key, value, where });
  }
  if (isV1Config(entries.map((e) => e.key))) return resolveV1(entries, overrideEntries(options.overrides ?? []), where, undefined);
  return resolve([...entries, ...overrideEntries(options.overrides ?? [])]);
}

/** The config every key at its default (lora_alpha resolved). */
export function defaultConfig(): CrucibleConfig {
  return resolve([]).config;
}

// ---- sources -----------------------------------------------------------------------------------

function yamlEntries(text: string, file: string): Entry[] {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { version: '1.1', lineCounter, prettyErrors: false, uniqueKeys: true, merge: true });
  const at = (offset: number) => {
    const p = lineCounter.linePos(offset);
    return `${file}:${p.line}:${p.col}`;
  };
  if (doc.errors.length > 0) {
    const err = doc.errors[0]!;
    const message = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    throw new ConfigError([`${at(err.pos[0])}: invalid YAML: ${message}`]);
  }
  const root = doc.contents;
  if (root === null || (isScalar(root) && (root.value === null || root.value === ''))) return [];
  if (!isMap(root)) {
    throw new ConfigError([`${at((root as YamlNode).range?.[0] ?? 0)}: expected "key: value" lines at the top level`]);
  }
  const entries: Entry[] = [];
  for (const pair of root.items) {
    const keyNode = pair.key as YamlNode | null;
    const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
    const line = keyNode?.range ? lineCounter.linePos(keyNode.range[0]).line : undefined;
    const value = pair.value === null ? null : (pair.value as YamlNode).toJS(doc);
    entries.push({ key, value, where: line !== undefined ? `${file}:${line}` : file });
  }
  return entries;
}

function overrideEntries(overrides: readonly string[]): Entry[] {
  return overrides.map((o) => {
    const eq = o.indexOf('=');
    if (eq <= 0) throw new ConfigError([`override "${o}" is not key=value`]);
    const key = o.slice(0, eq).trim().replace(/^--/, '');
    const raw = o.slice(eq + 1);
    return { key, value: parseOverrideValue(raw), where: `override ${key}=${raw}` };
  });
}

/**
 * `key=value` values are YAML scalars (as OmegaConf's from_cli): numbers, true/false, null ...
 * OmegaConf reads only true/false as booleans, so `save_strategy=no` is the string "no"
 * (boolean keys still take yes/no/on/off: coerce reads those words).
 */
export function parseOverrideValue(raw: string): unknown {
  if (raw.trim() === '') return null;
  try {
    const v: unknown = parseYaml(raw, { version: '1.1' });
    return typeof v === 'boolean' && !/^(true|false)$/i.test(raw.trim()) ? raw.trim() : v;
  } catch {
    return raw;
  }
}

/** The YAML 1.1 words a boolean may have been written as (a file's `save_strategy: no` reads as false). */
const BOOL_WORDS = { true: ['yes', 'on', 'true', 'y'], false: ['no', 'off', 'false', 'n'] } as const;

// ---- resolution ------------------------------------------------------------------------------

function resolve(entries: readonly Entry[]): LoadResult {
  const problems: string[] = [];
  const notices: string[] = [];
  const values = new Map<ConfigKey, unknown>();
  const where = new Map<string, string>();
  const passthrough: Record<string, unknown> = {};
  const given: string[] = [];
  const noticed = new Set<string>();
  const notice = (line: string) => {
    if (!noticed.has(line)) {
      noticed.add(line);
      notices.push(line);
    }
  };

  for (const entry of entries) {
    let key = entry.key;
    if (Object.hasOwn(RENAMED_KEYS, key)) {
      const to = RENAMED_KEYS[key]!;
      notice(`note: ${key} is the old name of ${to}; reading it as ${to}`);
      key = to;
    }
    const spec = argSpec(key);
    if (spec) {
      if (isNumeric(spec) && isNonFinite(entry.value)) {
        problems.push(`${entry.where}: ${key}: must be a finite number, got ${show(entry.value)}`);
        continue;
      }
      const r = coerce(spec, entry.value);
      if ('error' in r) {
        problems.push(`${entry.where}: ${key}: expected ${r.error}, got ${show(entry.value)}${enumHint(key, entry.value)}`);
        continue;
      }
      const range = checkRange(spec, r.value);
      if (range) {
        problems.push(`${entry.where}: ${key}: ${range}, got ${show(entry.value)}`);
        continue;
      }
      values.set(key as ConfigKey, r.value);
      where.set(key, entry.where);
      if (!given.includes(key)) given.push(key);
    } else if (Object.hasOwn(IGNORED_KEYS, key)) {
      notice(ignoredNotice(key));
      passthrough[key] = entry.value;
      if (!given.includes(key)) given.push(key);
    } else if (Object.hasOwn(UNSUPPORTED_KEYS, key)) {
      const u = UNSUPPORTED_KEYS[key]!;
      if (!sameValue(entry.value, u.default)) {
        problems.push(
          `${entry.where}: ${key}: ${show(entry.value)} asks for ${u.feature}, which Crucible does not implement ` +
            `(remove the key, or run in LLaMA-Factory: crucible export-config --to llamafactory)`,
        );
      }
    } else {
      problems.push(`${entry.where}: unknown key "${key}" (did you mean "${nearest(key, knownKeys())}"?)`);
    }
  }

  const config = {} as Record<string, unknown>;
  for (const key of CONFIG_KEYS) {
    const v = values.has(key) ? values.get(key) : SCHEMA[key].default;
    config[key] = Array.isArray(v) ? [...v] : v;
  }
  config.passthrough = passthrough;
  const c = config as CrucibleConfig;
  c.lora_alpha = (values.get('lora_alpha') as number | null | undefined) ?? c.lora_rank * 2;

  if (problems.length === 0) crossCheck(c, given, where, problems, notice);
  if (problems.length > 0) throw new ConfigError(problems);
  return { config: c, notices, given };
}

function ignoredNotice(key: string): string {
  const what = IGNORED_KEYS[key]!;
  if (key === 'gradient_checkpointing') {
    return `note: ${key} is a ${what} setting; Crucible ignores it (disable_gradient_checkpointing decides activation recomputation)`;
  }
  return `note: ${key} is ${/^[aeiou]/i.test(what) ? 'an' : 'a'} ${what} setting; Crucible ignores it`;
}

/** LLaMA-Factory's own consistency checks (hparams/*.py __post_init__ and parser.py), and notices. */
function crossCheck(
  c: CrucibleConfig,
  given: readonly string[],
  where: Map<string, string>,
  problems: string[],
  notice: (line: string) => void,
): void {
  const at = (key: string) => where.get(key) ?? 'config';
  const isGiven = (key: string) => given.includes(key);

  if (c.finetuning_type !== 'lora') {
    for (const key of ['loraplus_lr_ratio', 'use_rslora', 'use_dora', 'pissa_init'] as const) {
      if (c[key] !== null && c[key] !== false) problems.push(`${at(key)}: ${key} is only valid for LoRA training (finetuning_type: lora)`);
    }
    if (c.adapter_name_or_path !== null) {
      problems.push(`${at('adapter_name_or_path')}: adapter_name_or_path is only valid for finetuning_type: lora`);
    }
  }
  // PEFT's OFTConfig: "You can only specify either r or oft_block_size, but not both simultaneously"
  if (c.finetuning_type === 'oft' && (c.oft_rank !== 0) === (c.oft_block_size !== 0)) {
    problems.push(`${at(isGiven('oft_rank') ? 'oft_rank' : 'oft_block_size')}: set exactly one of oft_rank (${c.oft_rank}) and oft_block_size (${c.oft_block_size}), the other 0: oft_rank x oft_block_size = in_features`);
  }
  if (c.image_max_pixels < c.image_min_pixels) {
    problems.push(`${at(isGiven('image_max_pixels') ? 'image_max_pixels' : 'image_min_pixels')}: image_max_pixels (${c.image_max_pixels}) cannot be smaller than image_min_pixels (${c.image_min_pixels})`);
  }
  if (c.use_llama_pro && c.finetuning_type !== 'freeze' && c.finetuning_type !== 'lora') {
    problems.push(`${at('use_llama_pro')}: use_llama_pro trains the expanded blocks with finetuning_type: freeze, or LoRA on them (finetuning_type: lora); not ${c.finetuning_type}`);
  }
  if (c.use_llama_pro && c.freeze_trainable_layers < 1) problems.push(`${at('freeze_trainable_layers')}: use_llama_pro needs freeze_trainable_layers > 0 (the number of expanded blocks)`);
  // LLaMA-Factory picks one silently (its optimizer and loss functions are tried in a fixed order): say so instead
  // LLaMA-Factory (hparams/finetuning_args.py): "Cannot use LoRA with GaLore, APOLLO or BAdam together."
  for (const key of ['use_galore', 'use_apollo', 'use_badam'] as const) {
    if (c[key] && c.finetuning_type === 'lora') problems.push(`${at(key)}: ${key} is a full-parameter method: it cannot train a LoRA adapter (set finetuning_type: full)`);
  }
  // LLaMA-Factory (train/trainer_utils.py): "Per-layer GaLore does not support gradient accumulation."
  for (const [use, key] of [['use_galore', 'galore_layerwise'], ['use_apollo', 'apollo_layerwise']] as const) {
    if (c[use] && c[key] && c.gradient_accumulation_steps !== 1) {
      problems.push(`${at(key)}: ${key} steps each weight as soon as its gradient is ready, which leaves nothing to accumulate: set gradient_accumulation_steps: 1 (got ${c.gradient_accumulation_steps})`);
    }
  }
  if (c.use_galore && c.galore_proj_type === 'full') problems.push(`${at('galore_proj_type')}: galore_proj_type: full (projecting both sides) is not supported; use std, reverse_std, left or right`);
  if (c.use_badam && c.badam_switch_interval === 0) problems.push(`${at('badam_switch_interval')}: badam_switch_interval must be positive, or -1 to never switch`);
  const optimizers = (['use_muon', 'use_adam_mini', 'use_galore', 'use_apollo', 'use_badam'] as const).filter((k) => c[k]);
  if (optimizers.length > 1 || (optimizers.length && c.loraplus_lr_ratio !== null)) {
    const keys = [...optimizers, ...(c.loraplus_lr_ratio !== null ? ['loraplus_lr_ratio'] : [])];
    problems.push(`${at(keys[0]!)}: ${keys.join(' and ')} each choose the optimizer; set one of them`);
  }
  const losses = [...(c.use_dft_loss ? ['use_dft_loss'] : []), ...(c.use_eaft_loss ? ['use_eaft_loss'] : []), ...(c.use_asft_loss ? ['use_asft_loss'] : []), ...(c.label_smoothing_factor > 0 ? ['label_smoothing_factor'] : [])];
  if (losses.length > 1) problems.push(`${at(losses[0]!)}: ${losses.join(' and ')} each replace the token loss; set one of them`);
  if (c.use_asft_loss && c.ref_model !== null) problems.push(`${at('ref_model')}: use_asft_loss with a separate ref_model is not supported (the reference is the base with the adapter switched off, or a full / freeze run's initial weights)`);
  // HF TrainingArguments refuses both as well ("At most one of fp16 and bf16 can be True")
  if (c.bf16 && c.fp16) problems.push(`${at('fp16')}: bf16 and fp16 both ask for half precision; set one of them`);
  if (c.quantization_bit !== null) {
    if (c.quantization_bit !== 4 && c.quantization_bit !== 8) {
      problems.push(`${at('quantization_bit')}: quantization_bit: Crucible quantizes to 4 or 8 bits, got ${c.quantization_bit}`);
    }
    if (c.finetuning_type !== 'lora' && c.finetuning_type !== 'oft') {
      problems.push(`${at('quantization_bit')}: quantization_bit needs finetuning_type: lora or oft (a quantized base stays frozen)`);
    }
    if (c.pissa_init) {
      // LLaMA-Factory hparams/parser.py: "Please use scripts/pissa_init.py to initialize PiSSA for a quantized model."
      problems.push(`${at('pissa_init')}: pissa_init cannot initialize from a quantized model (quantization_bit): PiSSA needs the unquantized weights; train without quantization_bit`);
    }
  }
  if (c.ref_model_quantization_bit !== null && c.ref_model_quantization_bit !== 4 && c.ref_model_quantization_bit !== 8) {
    problems.push(`${at('ref_model_quantization_bit')}: ref_model_quantization_bit: Crucible quantizes to 4 or 8 bits, got ${c.ref_model_quantization_bit}`);
  }
  if ((c.ref_model_adapters !== null || c.ref_model_quantization_bit !== null) && c.ref_model === null) {
    const key = c.ref_model_adapters !== null ? 'ref_model_adapters' : 'ref_model_quantization_bit';
    problems.push(`${at(key)}: ${key} needs ref_model`);
  }
  if (c.mask_history && c.train_on_prompt) problems.push(`${at('mask_history')}: mask_history is incompatible with train_on_prompt`);
  if (c.stage !== 'sft') {
    for (const key of ['neat_packing', 'train_on_prompt', 'mask_history'] as const) {
      if (c[key]) problems.push(`${at(key)}: ${key} is only valid for stage: sft`);
    }
  }
  if (c.val_size > 1e-6 && c.dataset === null) problems.push(`${at('val_size')}: val_size needs a dataset to split`);
  if (c.val_size > 1e-6 && c.eval_dataset !== null) {
    problems.push(`${at('val_size')}: val_size cannot be combined with eval_dataset (use one or the other)`);
  }
  const usesRef = c.stage === 'dpo' && c.pref_loss !== 'orpo' && c.pref_loss !== 'simpo';
  if (c.pissa_init && (c.stage === 'kto' || c.stage === 'ppo' || usesRef)) {
    problems.push(`${at('pissa_init')}: pissa_init cannot be used with stage ${c.stage} (it needs the untouched base as reference)`);
  }
  if (c.stage === 'dpo' && c.pref_loss !== 'sigmoid' && c.dpo_label_smoothing > 1e-6) {
    problems.push(`${at('dpo_label_smoothing')}: dpo_label_smoothing is only valid with pref_loss: sigmoid`);
  }
  for (const key of ['warmup_steps', 'logging_steps', 'save_steps', 'eval_steps', 'val_size'] as const) {
    const v = c[key];
    if (v !== null && v >= 1 && !Number.isInteger(v)) {
      problems.push(`${at(key)}: ${key}: expected a whole number or a fraction below 1, got ${v}`);
    }
  }
  for (const { key, message } of bestModelProblems(c)) problems.push(`${at(key)}: ${message}`);

  for (const name of c.report_to) {
    if (!(REPORT_TO as readonly string[]).includes(name)) {
      problems.push(`${at('report_to')}: report_to: unknown tracker "${name}" (did you mean "${nearest(name, REPORT_TO)}"?)`);
    }
  }

  if (problems.length > 0) return;
  if (c.use_badam && c.badam_verbose > 0) notice('note: badam_verbose is a BAdam diagnostic-printing setting; Crucible ignores it');
  const trackers = c.report_to.filter((r) => r !== 'none' && r !== 'tensorboard');
  if (trackers.length > 0) {
    notice(
      `note: report_to ${trackers.join(', ')}: Crucible sends runs to no tracking service; it writes trainer_log.jsonl and running_log.txt in output_dir` +
        `${c.report_to.includes('tensorboard') || trackers.includes('all') ? ', and TensorBoard event files under output_dir/runs' : ' (report_to: tensorboard adds TensorBoard event files)'}`,
    );
  }

  // Keys given for a stage or method they do not apply to.
  for (const key of given) {
    const spec = argSpec(key);
    if (!spec) continue;
    if (spec.stages && isGiven('stage') && !spec.stages.includes(c.stage)) {
      notice(`note: ${key} only applies to stage ${spec.stages.join(', ')}; it has no effect with stage: ${c.stage}`);
    }
    // LLaMA Pro with LoRA: freeze_trainable_layers counts the expanded blocks the adapter goes on
    const llamaProLora = c.use_llama_pro && c.finetuning_type === 'lora' && key === 'freeze_trainable_layers';
    if (spec.methods && !spec.methods.includes(c.finetuning_type) && !llamaProLora) {
      notice(`note: ${key} only applies to finetuning_type ${spec.methods.join(', ')}; it has no effect with ${c.finetuning_type}`);
    }
  }
  if (isGiven('max_steps') && c.max_steps === 0) {
    notice(`note: max_steps: 0 sets no step limit (LLaMA-Factory reads max_steps <= 0 as unset); training runs num_train_epochs (${c.num_train_epochs})`);
  }
  if (isGiven('infer_backend') && c.infer_backend !== 'huggingface') {
    notice(`note: infer_backend ${c.infer_backend} is a LLaMA-Factory engine; Crucible generates with its WebGPU engine`);
  }
  if (c.export_legacy_format) notice('note: export_legacy_format: Crucible writes .safetensors only');
  if (c.num_beams > 1 && c.do_sample) {
    problems.push(`${at('num_beams')}: num_beams ${c.num_beams} with do_sample: true asks for beam sampling, which Crucible does not implement; set do_sample: false for beam search (LLaMA-Factory's default is true)`);
  }
  for (const key of ['eval_num_beams', 'generation_num_beams'] as const) {
    const beams = c[key];
    if (beams !== null && beams !== c.num_beams) {
      notice(`note: ${key}: ${beams} does not change generation: as in LLaMA-Factory, num_beams (${c.num_beams}) is passed to it and takes precedence; set num_beams: ${beams} for beam search`);
    }
  }
}

/** Checks a command makes beyond the generic ones (what LLaMA-Factory's get_*_args require). */
export function checkConfigFor(c: CrucibleConfig, command: Command): void {
  const problems: string[] = [];
  if (c.model_name_or_path === null) problems.push('model_name_or_path is required (a Hub id or a local model directory)');
  if (command === 'train') {
    if (!c.do_train && !c.do_eval && !c.do_predict) problems.push('nothing to do: set do_train: true (LLaMA-Factory defaults it to false)');
    if (c.do_predict && !c.predict_with_generate) problems.push('do_predict: Crucible predicts by generation; set predict_with_generate: true');
    if (c.do_predict && c.eval_dataset === null && c.val_size < 1e-6) problems.push('do_predict needs eval_dataset (or val_size > 0)');
    if (c.do_train && c.dataset === null) problems.push('do_train needs a dataset');
    if ((c.do_eval || c.eval_strategy !== 'no') && c.eval_dataset === null && c.val_size < 1e-6) {
      problems.push('evaluation needs eval_dataset or val_size > 0');
    }
  }
  if (command === 'preview' && c.dataset === null && c.eval_dataset === null) problems.push('preview needs a dataset');
  if (command === 'eval' && c.task === null) problems.push('eval needs a task (a benchmark folder under task_dir, e.g. mmlu_test)');
  if (command === 'export') {
    if (c.export_dir === null) problems.push('export needs export_dir');
    if (c.quantization_bit !== null) {
      problems.push('cannot merge into a quantized model: remove quantization_bit (merge the adapter into the full-precision model)');
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
}

// ---- coercion ----------------------------------------------------------------------------------

type Coerced = { value: unknown } | { error: string };

const INT_RE = /^[-+]?\d+$/;
const FLOAT_RE = /^[-+]?(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/;

function isNumeric(spec: ArgSpec): boolean {
  return spec.type === 'int' || spec.type === 'float' || spec.type === 'number';
}

/** Infinity or NaN, as a number (YAML .inf, .nan) or as text ("1e999", "inf", "nan"). */
function isNonFinite(v: unknown): boolean {
  if (typeof v === 'number') return !Number.isFinite(v);
  if (typeof v !== 'string') return false;
  const t = v.trim().toLowerCase().replace(/_/g, '');
  return /^[-+]?\.?(inf|infinity|nan)$/.test(t) || (FLOAT_RE.test(t) && !Number.isFinite(Number(t)));
}

function toNumber(v: unknown): number | null {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && FLOAT_RE.test(v.trim())) {
    const n = Number(v.trim().replace(/_/g, ''));
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

function coerce(spec: ArgSpec, v: unknown): Coerced {
  if (v === null || v === undefined) {
    return spec.nullable ? { value: null } : { error: expected(spec) };
  }
  switch (spec.type) {
    case 'string':
      if (typeof v === 'string') return { value: v };
      if (typeof v === 'number' && Number.isFinite(v)) return { value: String(v) };
      return { error: expected(spec) };
    case 'int': {
      if (typeof v === 'string' && !INT_RE.test(v.trim()) && !FLOAT_RE.test(v.trim())) return { error: expected(spec) };
      const n = toNumber(v);
      return n !== null && Number.isInteger(n) ? { value: n } : { error: expected(spec) };
    }
    case 'float':
    case 'number': {
      const n = toNumber(v);
      return n !== null ? { value: n } : { error: expected(spec) };
    }
    case 'bool': {
      const b = toBool(v);
      return b !== null ? { value: b } : { error: expected(spec) };
    }
    case 'enum': {
      // a choice that YAML 1.1 reads as a boolean (no, off, yes ...): the choice it was written as
      const word = typeof v === 'boolean' ? spec.choices!.find((c) => (BOOL_WORDS[`${v}`] as readonly string[]).includes(c)) : v;
      return typeof word === 'string' && spec.choices!.includes(word) ? { value: word } : { error: expected(spec) };
    }
    case 'list': {
      if (typeof v === 'string') {
        const items = v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
        if (items.length === 0) return spec.nullable ? { value: null } : { error: expected(spec) };
        return { value: items };
      }
      if (Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string' || typeof s === 'number')) {
        return { value: v.map((s) => String(s).trim()) };
      }
      return { error: expected(spec) };
    }
    case 'dict': {
      if (typeof v === 'string' && v.trim().startsWith('{')) {
        try {
          const parsed: unknown = JSON.parse(v);
          if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return { value: parsed };
        } catch {
          /* falls through to the error */
        }
        return { error: expected(spec) };
      }
      if (typeof v === 'object' && !Array.isArray(v)) return { value: { ...(v as object) } };
      return { error: expected(spec) };
    }
    case 'checkpoint': {
      if (typeof v === 'string' && v.length > 0) {
        const b = toBool(v);
        return { value: b === null ? v : b || null };
      }
      if (typeof v === 'boolean') return { value: v || null };
      return { error: expected(spec) };
    }
  }
}

function toBool(v: unknown): boolean | null {
  if (typeof v === 'boolean') return v;
  if (v === 0 || v === 1) return v === 1;
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (['true', 'yes', 'on'].includes(s)) return true;
    if (['false', 'no', 'off'].includes(s)) return false;
  }
  return null;
}

function expected(spec: ArgSpec): string {
  const base = (() => {
    switch (spec.type) {
      case 'string':
        return 'a string';
      case 'int':
        return 'an integer';
      case 'float':
        return 'a float (e.g. 1.0e-4)';
      case 'number':
        return 'a number';
      case 'bool':
        return 'true or false';
      case 'enum':
        return `one of ${spec.choices!.join(', ')}`;
      case 'list':
        return 'a comma-separated list (or a YAML list) of names';
      case 'dict':
        return 'a mapping (or a JSON object string)';
      case 'checkpoint':
        return 'a checkpoint directory or true';
    }
  })();
  return spec.nullable && spec.type !== 'enum' ? `${base} or null` : base;
}

const ENUM_HINTS: Record<string, Record<string, string>> = {
  lr_scheduler_type: Object.fromEntries(
    ['cosine_with_restarts', 'polynomial', 'inverse_sqrt', 'reduce_lr_on_plateau', 'cosine_warmup_with_min_lr', 'warmup_stable_decay'].map(
      (s) => [s, `${s} is an HF schedule Crucible does not implement`],
    ),
  ),
};

function enumHint(key: string, value: unknown): string {
  const spec = argSpec(key);
  if (spec?.type !== 'enum' || typeof value !== 'string') return '';
  const hint = ENUM_HINTS[key]?.[value];
  if (hint) return ` (${hint})`;
  if (key === 'optim') return ' (Crucible implements AdamW only)';
  return ` (did you mean "${nearest(value, spec.choices!)}"?)`;
}

function checkRange(spec: ArgSpec, v: unknown): string | null {
  if (typeof v !== 'number') return null;
  if (spec.min !== undefined && v < spec.min) return `must be >= ${spec.min}`;
  if (spec.max !== undefined && v > spec.max) return `must be <= ${spec.max}`;
  if (spec.gt !== undefined && v <= spec.gt) return `must be > ${spec.gt}`;
  if (spec.lt !== undefined && v >= spec.lt) return `must be < ${spec.lt}`;
  return null;
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === undefined) return 'nothing';
  if (typeof v === 'number' && !Number.isFinite(v)) return Number.isNaN(v) ? '.nan' : v > 0 ? '.inf' : '-.inf';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function normalizeLoose(v: unknown): unknown {
  if (typeof v === 'string') {
    const b = toBool(v);
    if (b !== null) return b;
    const n = toNumber(v);
    if (n !== null) return n;
    if (/^(null|none|~)$/i.test(v.trim())) return null;
  }
  if (Array.isArray(v) && v.length === 1) return normalizeLoose(v[0]);
  return v ?? null;
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(normalizeLoose(a)) === JSON.stringify(normalizeLoose(b));
}
