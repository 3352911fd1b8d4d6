// Writing a Crucible config as a LLaMA-Factory run: the YAML `llamafactory-cli train|chat|export`
// reads, and a dataset_info.json for datasets given as data files (LLaMA-Factory only knows
// datasets by name). Keys at their default are left out (Crucible's defaults are LLaMA-Factory's),
// so the YAML holds what the run chose; ignored PyTorch settings that came in are written back.

import { stringify } from 'yaml';
import { hasOpenaiToolCalls } from '../data/dataset-info';
import { CONFIG_KEYS, SCHEMA, argSpec, type ConfigKey, type CrucibleConfig, type Group, type Stage } from './schema';

/** One dataset_info.json entry (LLaMA-Factory data/README.md). */
export interface DatasetInfoEntry {
  file_name?: string;
  hf_hub_url?: string;
  formatting?: 'alpaca' | 'sharegpt' | 'openai';
  ranking?: boolean;
  columns?: Record<string, string>;
  tags?: Record<string, string>;
  [key: string]: unknown;
}

export interface ToLlamaFactoryOptions {
  /** dataset_info.json entry for a data file (default: file_name only; the CLI sniffs the format). */
  describeFile?: (path: string) => DatasetInfoEntry;
  /** dataset_dir for the YAML when data files are present: where dataset_info.json will be. */
  datasetDir?: string;
  /** Entries for the named datasets used next to data files (from the old dataset_info.json). */
  namedEntries?: Readonly<Record<string, DatasetInfoEntry>>;
  /** Comment lines written at the top. */
  header?: readonly string[];
}

export interface LlamaFactoryRun {
  yaml: string;
  /** dataset_info.json content, or null when every dataset is already a named one. */
  datasetInfo: Record<string, DatasetInfoEntry> | null;
  /** Data file path -> the dataset name it got. */
  datasetNames: Record<string, string>;
}

const DATA_FILE = /\.(json|jsonl|parquet|csv|txt)$/i;

/**
 * Crucible extension: a `dataset` entry naming a data file (json, jsonl, csv, parquet, txt; relative
 * to dataset_dir unless absolute) rather than a dataset_info.json name.
 */
export function isDatasetFile(entry: string): boolean {
  return DATA_FILE.test(entry.trim());
}

const SECTIONS: ReadonlyArray<[string, readonly Group[]]> = [
  ['model', ['model', 'quantization']],
  ['method', ['method', 'lora', 'oft', 'freeze', 'preference']],
  ['dataset', ['dataset']],
  ['output', ['output']],
  ['train', ['train']],
  ['eval', ['eval']],
  ['generation', ['generation']],
  ['export', ['export']],
];

/** Groups of HF TrainingArguments keys (seed, output_dir, eval_strategy, pref_beta ...). */
const TRAINING_GROUPS: readonly string[] = ['train', 'output', 'eval', 'preference'];

export function toLlamaFactory(config: CrucibleConfig, options: ToLlamaFactoryOptions = {}): LlamaFactoryRun {
  const values: Partial<Record<ConfigKey, unknown>> = {};
  for (const key of CONFIG_KEYS) values[key] = config[key];

  // Data files become named datasets in a dataset_info.json.
  const datasetNames: Record<string, string> = {};
  const info: Record<string, DatasetInfoEntry> = {};
  const taken = new Set<string>();
  // datasets defined in the config itself (a v1 data YAML) go to dataset_info.json like data files
  const inline = (config.dataset_info ?? {}) as Record<string, DatasetInfoEntry>;
  let hasInline = false;
  const rename = (list: string[] | null): string[] | null => {
    if (!list) return list;
    return list.map((entry) => {
      if (Object.hasOwn(inline, entry)) {
        taken.add(entry);
        info[entry] = inline[entry]!;
        hasInline = true;
        return entry;
      }
      if (!isDatasetFile(entry)) {
        taken.add(entry);
        const named = options.namedEntries?.[entry];
        if (named) info[entry] = named;
        return entry;
      }
      if (datasetNames[entry]) return datasetNames[entry]!;
      const name = uniqueName(baseName(entry), taken);
      taken.add(name);
      datasetNames[entry] = name;
      info[name] = options.describeFile?.(entry) ?? { file_name: entry };
      return name;
    });
  };
  values.dataset = rename(config.dataset);
  values.eval_dataset = rename(config.eval_dataset);
  values.dataset_info = null;
  const hasFiles = Object.keys(datasetNames).length > 0 || hasInline;
  if (hasFiles && options.datasetDir !== undefined) values.dataset_dir = options.datasetDir;

  const training = config.do_train || config.do_eval;
  const essential = new Set<ConfigKey>(training ? ['model_name_or_path', 'stage', 'do_train', 'finetuning_type', 'output_dir'] : ['model_name_or_path']);

  const lines: string[] = [...(options.header ?? []).map((h) => `# ${h}`)];
  for (const [title, groups] of SECTIONS) {
    const section: string[] = [];
    for (const key of CONFIG_KEYS) {
      const spec = SCHEMA[key];
      if (!(groups as readonly string[]).includes(spec.group)) continue;
      // llamafactory-cli chat/export parse no training arguments (seed is one) and reject them
      if (!training && TRAINING_GROUPS.includes(spec.group)) continue;
      // Crucible's own key, which llamafactory-cli would reject
      if (key === 'memory_budget') continue;
      const v = values[key];
      if (key === 'lora_alpha') {
        if (v !== config.lora_rank * 2) section.push(`lora_alpha: ${formatValue(key, v)}`);
        continue;
      }
      if (v === null && !essential.has(key)) continue;
      if (!essential.has(key) && same(v, spec.default)) continue;
      section.push(`${key}: ${formatValue(key, v)}`);
    }
    if (section.length > 0) lines.push(`### ${title}`, ...section, '');
  }
  const extra = Object.entries(config.passthrough);
  if (extra.length > 0) {
    lines.push('### PyTorch / LLaMA-Factory settings (Crucible ignored these)');
    for (const [key, v] of extra) lines.push(`${key}: ${formatPlain(v)}`);
    lines.push('');
  }
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return { yaml: `${lines.join('\n')}\n`, datasetInfo: hasFiles ? info : null, datasetNames };
}

function baseName(path: string): string {
  const file = path.split(/[\\/]/).pop() ?? path;
  const stem = file.replace(DATA_FILE, '');
  return stem.replace(/[^A-Za-z0-9_.-]+/g, '_') || 'data';
}

function uniqueName(base: string, taken: Set<string>): string {
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) if (!taken.has(`${base}_${i}`)) return `${base}_${i}`;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** YAML for one value, readable by PyYAML/OmegaConf (YAML 1.1) and by Crucible. */
export function formatValue(key: ConfigKey, v: unknown): string {
  const spec = argSpec(key)!;
  if (v === null || v === undefined) return 'null';
  if (spec.type === 'list' && Array.isArray(v)) return formatPlain(v.join(','));
  if (typeof v === 'number' && spec.type === 'float') return formatFloat(v);
  return formatPlain(v);
}

/** Floats as LLaMA-Factory writes them: 3.0, 0.1, 1.0e-4. */
export function formatFloat(x: number): string {
  if (!Number.isFinite(x)) return formatPlain(x);
  if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e7)) {
    const [mant, exp] = x.toExponential().split('e') as [string, string];
    // PyYAML reads a float only with a dot and a signed exponent: 1.0e-4, 1.0e+7
    return `${mant.includes('.') ? mant : `${mant}.0`}e${exp}`;
  }
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}

function formatPlain(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'object') return stringify(v, { version: '1.1', collectionStyle: 'flow', lineWidth: 0 }).trim();
  return stringify(v, { version: '1.1', lineWidth: 0 }).trim();
}

// ---- dataset_info.json entries for data files --------------------------------------------------

/**
 * A dataset_info.json entry for a data file, from its first records: alpaca or sharegpt, the
 * message keys and role names, preference (chosen/rejected) and KTO (boolean tag) columns, and
 * pre-training text. `stage` decides between ranking and plain data when both could apply.
 */
export function datasetInfoFromRecords(fileName: string, records: readonly unknown[], stage: Stage): DatasetInfoEntry {
  const entry: DatasetInfoEntry = { file_name: fileName };
  const first = records.find((r) => r && typeof r === 'object' && !Array.isArray(r)) as Record<string, unknown> | undefined;
  if (!first) return entry;
  const has = (k: string) => Object.hasOwn(first, k);
  const columns: Record<string, string> = {};

  const messagesKey = ['conversations', 'messages'].find((k) => Array.isArray(first[k]));
  if (messagesKey) {
    // OpenAI tool calls need LLaMA-Factory's openai converter; other role/content data is sharegpt (its data/README)
    const toolCalls = records.some((r) => !!r && typeof r === 'object' && hasOpenaiToolCalls((r as Record<string, unknown>)[messagesKey]));
    entry.formatting = toolCalls ? 'openai' : 'sharegpt';
    columns.messages = messagesKey;
    const msgs = (first[messagesKey] as unknown[]).filter((m): m is Record<string, unknown> => !!m && typeof m === 'object');
    const m0 = msgs[0];
    if (m0) {
      const roleTag = ['from', 'role'].find((k) => typeof m0[k] === 'string') ?? 'from';
      const contentTag = ['value', 'content'].find((k) => k in m0) ?? 'value';
      const roles = new Set(msgs.map((m) => String(m[roleTag])));
      const tags: Record<string, string> = {};
      if (roleTag !== 'from') tags.role_tag = roleTag;
      if (contentTag !== 'value') tags.content_tag = contentTag;
      if (roles.has('user') || roleTag === 'role') tags.user_tag = 'user';
      if (roles.has('assistant') || roleTag === 'role') tags.assistant_tag = 'assistant';
      // OpenAI-style messages put tool results under role "tool" (LLaMA-Factory's default: observation)
      if (roleTag === 'role' && roles.has('tool')) tags.observation_tag = 'tool';
      if (Object.keys(tags).length > 0) entry.tags = tags;
    }
    if (has('system')) columns.system = 'system';
    if (has('tools')) columns.tools = 'tools';
  } else if (has('instruction') || has('output') || has('chosen')) {
    // alpaca: LLaMA-Factory's default columns are prompt=instruction, query=input, response=output
    if (has('system')) columns.system = 'system';
    if (has('history')) columns.history = 'history';
  } else {
    // pre-training text: the first string column
    const textKey = ['text', 'content'].find((k) => typeof first[k] === 'string') ?? Object.keys(first).find((k) => typeof first[k] === 'string');
    if (textKey) columns.prompt = textKey;
  }

  if (has('chosen') && has('rejected') && stage !== 'kto') {
    entry.ranking = true;
    columns.chosen = 'chosen';
    columns.rejected = 'rejected';
    if (!messagesKey) {
      columns.prompt = 'instruction';
      columns.query = 'input';
    }
  }
  const ktoKey = ['kto_tag', 'label'].find((k) => typeof first[k] === 'boolean');
  if (ktoKey) columns.kto_tag = ktoKey;
  if (Object.keys(columns).length > 0) entry.columns = columns;
  return entry;
}
