// The app's form as a LLaMA-Factory run and back. Export: the form, the model and the dataset as a
// config, planned by the same code as `crucible export-config --to llamafactory --out crucible-run`
// (so the text the app shows is the file the CLI writes), zipped with dataset_info.json and the
// data files. Load: a YAML (LLaMA-Factory's v0 or v1, or Crucible's own) into the form, with every
// key the form cannot take listed rather than dropped.

import { parse as parseYaml } from 'yaml';
import { ConfigError, IGNORED_KEYS, SCHEMA, UNSUPPORTED_KEYS, configFromObject, datasetInfoText, knownKeys, parseConfig, planLlamaFactoryExport } from '../../config';
import type { ConfigKey, CrucibleConfig, DataFolder, DatasetInfoEntry, LlamaFactoryExport } from '../../config';
import { isV1Config } from '../../config/llamafactory-v1';
import type { DataFormat } from '../../data/describe';
import { zipStore } from '../../files/zip';
import { infoEntry, withInfoEntry, type FormatChoice } from './data-format';
import { DEFAULT_SETTINGS, REWARD_RUN, withStageKeys, type Settings } from './settings';

/** The folder the app's run is written as (the zip's top folder, the YAML's dataset_dir). */
export const RUN_DIR = 'crucible-run';

/** The model and the dataset of the run, as the export names them. */
export interface RunSources {
  model: string;
  /** A data file of `dir` (a demo file, an upload), or a Hub dataset repo with dir 'ONLINE'. */
  dataset: string;
  dir: string;
}

/** The form as the config `crucible export-config` reads. */
export function appConfig(settings: Settings, sources: RunSources): CrucibleConfig {
  const { config } = configFromObject({ model_name_or_path: sources.model, do_train: true, dataset: sources.dataset, dataset_dir: sources.dir, ...settings }, { source: 'settings' });
  return config;
}

export const exportRun = (config: CrucibleConfig, folder: DataFolder): Promise<LlamaFactoryExport> => planLlamaFactoryExport(config, folder, { out: RUN_DIR });

/** The run folder as a zip: crucible-run/ with the YAML, dataset_info.json and the data files. */
export async function zipRun(plan: LlamaFactoryExport, folder: DataFolder): Promise<Uint8Array> {
  const entries = [{ name: `${RUN_DIR}/${plan.yamlName}`, data: plan.run.yaml }];
  if (plan.run.datasetInfo) entries.push({ name: `${RUN_DIR}/dataset_info.json`, data: datasetInfoText(plan.run.datasetInfo) });
  const files = [];
  for (const [src, name] of plan.copies) files.push({ name: `${RUN_DIR}/${name}`, data: await folder.read(src) });
  return zipStore([...entries, ...files]);
}

/** In-memory files (uploads) as a data folder; `fetchFile` reads the others (the served demo folder). */
export function memoryFolder(files: Readonly<Record<string, Uint8Array>>, fetchFile?: (path: string) => Promise<Uint8Array | null>): DataFolder {
  const cache = new Map<string, Uint8Array | null>();
  const get = async (path: string) => {
    if (Object.hasOwn(files, path)) return files[path]!;
    if (!fetchFile) return null;
    if (!cache.has(path)) cache.set(path, await fetchFile(path));
    return cache.get(path)!;
  };
  return {
    locate: (dir, name) => (/^[a-z]+:\/\//.test(name) || !dir || dir === '.' ? name : `${dir.replace(/\/+$/, '')}/${name}`),
    exists: async (path) => (await get(path)) !== null,
    read: async (path) => {
      const b = await get(path);
      if (!b) throw new Error(`${path} cannot be read`);
      return b;
    },
    shown: (path) => path.replace(/^.*\//, ''),
  };
}

/** An uploaded dataset: its files by name, the dataset (a file or an entry of an uploaded dataset_info.json) and the user's format. */
export interface UploadChoice {
  dataset: string;
  files: Readonly<Record<string, Uint8Array>>;
  format?: FormatChoice;
}

/**
 * An upload as the export reads it, in the folder "upload": the data file is exported (a dataset
 * named by an uploaded dataset_info.json as its file), read as the user chose (`detected` being
 * what the file reads as without the choice), else as its uploaded entry declares, else as
 * described from its records.
 */
export function uploadRun(upload: UploadChoice, detected: DataFormat | null): { sources: Omit<RunSources, 'model'>; folder: DataFolder } {
  const files: Record<string, Uint8Array> = {};
  for (const [name, bytes] of Object.entries(upload.files)) files[`upload/${name}`] = bytes;
  const info = upload.files['dataset_info.json'];
  let file = upload.dataset;
  let declared: Omit<DatasetInfoEntry, 'file_name'> | undefined;
  if (info && !Object.hasOwn(upload.files, file)) {
    const entry = (JSON.parse(new TextDecoder().decode(info)) as Record<string, DatasetInfoEntry>)[upload.dataset];
    if (typeof entry?.file_name === 'string') {
      file = entry.file_name;
      declared = withoutFileName(entry);
    }
  }
  if (upload.format && detected) declared = withoutFileName(infoEntry(file, detected, upload.format));
  const path = `upload/${file}`;
  const folder = memoryFolder(files);
  return { sources: { dataset: file, dir: 'upload' }, folder: { ...folder, declared: (p) => (p === path ? declared : undefined) } };
}

const withoutFileName = ({ file_name: _, ...rest }: Record<string, unknown>): Omit<DatasetInfoEntry, 'file_name'> => rest;

// ---- loading a YAML into the form ---------------------------------------------------------------

/** Keys other controls own: the model and dataset choices. */
const CHOICE_KEYS = new Set(['model_name_or_path', 'dataset', 'dataset_dir']);
/** Keys the form holds apart from the defaults' (the Advanced group passes any of these to the worker). */
const FORM_GROUPS = new Set(['method', 'lora', 'oft', 'freeze', 'quantization', 'train', 'preference', 'eval', 'output', 'dataset']);
/** Keys of other groups the form holds (the Advanced group's template). */
const FORM_EXTRA = new Set(['template', 'default_system', 'enable_thinking']);
/** Keys of those groups that the app sets itself, or that have no meaning in a browser run. */
const NOT_IN_FORM: Readonly<Record<string, string>> = {
  do_eval: 'the app evaluates when Eval split is set',
  do_predict: 'use the Evaluate & predict panel',
  predict_with_generate: 'use the Evaluate & predict panel',
  output_dir: 'runs are kept in this browser',
  overwrite_output_dir: 'runs are kept in this browser',
  eval_dataset: 'the app evaluates a split of the chosen dataset',
  dataset_info: 'choose or upload the dataset in the Dataset panel',
  overwrite_cache: 'the app keeps no cache',
  save_dir: 'not an app setting',
  task: 'not an app setting',
  task_dir: 'not an app setting',
};

/** Values only a CLI run can use: a reward model on disk (the app's are rm runs of this browser, run:<id>). */
function cliOnlyReason(key: string, value: unknown): string | null {
  if (key === 'reward_model' && value !== null && !(typeof value === 'string' && value.startsWith(REWARD_RUN))) {
    return 'a folder of the CLI: choose the reward model (an rm run of this browser) in the training form';
  }
  const evalTiming = ['eval_on_start', 'eval_delay'] as const;
  if ((evalTiming as readonly string[]).includes(key) && value !== SCHEMA[key as (typeof evalTiming)[number]].default) {
    return 'eval_on_start and eval_delay run with crucible train (the app evaluates at each checkpoint)';
  }
  return null;
}

/** The keys a method's controls show, held in the form at the config's values even where the YAML leaves them out. */
const METHOD_KEYS: Readonly<Record<string, string[]>> = {
  freeze: ['freeze_trainable_layers'],
  oft: ['oft_rank', 'oft_block_size', 'oft_target', 'module_dropout'],
};

export interface LoadedConfig {
  settings: Settings;
  /** model_name_or_path, for the model choice. */
  model: string | null;
  /** The first dataset named, for the dataset choice. */
  dataset: string | null;
  /** Keys not loaded into the form, each with why. */
  skipped: { key: string; why: string }[];
  notices: string[];
}

/** Reads a YAML into form settings; keys the form cannot hold are listed in `skipped`. */
export function loadRunYaml(text: string, fileName = 'config'): LoadedConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text, { version: '1.1' });
  } catch (e) {
    throw new Error(`${fileName}: not valid YAML: ${(e as Error).message}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${fileName}: expected a mapping of keys to values`);
  const skipped: { key: string; why: string }[] = [];
  const known = new Set(knownKeys());
  const kept: string[] = [];
  // a v1 config's keys are translated by the config reader itself
  const entries = isV1Config(Object.keys(raw)) ? [] : Object.entries(raw as Record<string, unknown>);
  for (const [key, value] of entries) {
    const unsupported = UNSUPPORTED_KEYS[key];
    const cliOnly = cliOnlyReason(key, value);
    if (!known.has(key)) skipped.push({ key, why: 'not a LLaMA-Factory or Crucible key' });
    else if (cliOnly) skipped.push({ key, why: cliOnly });
    else if (unsupported && JSON.stringify(value) !== JSON.stringify(unsupported.default)) skipped.push({ key, why: `${unsupported.feature} is not implemented` });
    else if (IGNORED_KEYS[key]) skipped.push({ key, why: `a ${IGNORED_KEYS[key]} setting, without effect here` });
    else kept.push(key);
  }
  const yaml = kept.length === entries.length ? text : kept.map((k) => `${k}: ${JSON.stringify((raw as Record<string, unknown>)[k])}`).join('\n');
  let result;
  try {
    result = parseConfig(yaml, [], { fileName });
  } catch (e) {
    if (e instanceof ConfigError) throw new Error(`${fileName} cannot be loaded:\n${e.problems.join('\n')}`);
    throw e;
  }
  const { config, given } = result;
  const settings: Settings = {};
  const formKeys = new Set<string>([...Object.keys(DEFAULT_SETTINGS), ...(METHOD_KEYS[config.finetuning_type] ?? [])]);
  for (const key of given) {
    const spec = SCHEMA[key as ConfigKey];
    // what every run the app exports says: do_train, the default output_dir
    const expected = (key === 'do_train' && config.do_train) || (key === 'output_dir' && config.output_dir === spec?.default);
    if (!spec || CHOICE_KEYS.has(key) || expected) continue;
    if (key === 'do_train') skipped.push({ key, why: 'the app always trains' });
    else if (NOT_IN_FORM[key]) skipped.push({ key, why: NOT_IN_FORM[key]! });
    // PPO's rollouts are sampled max_new_tokens long: the PPO form holds it
    else if (!FORM_GROUPS.has(spec.group) && !FORM_EXTRA.has(key) && !(key === 'max_new_tokens' && config.stage === 'ppo')) skipped.push({ key, why: `a ${spec.group} setting, not part of the training form` });
    else formKeys.add(key);
  }
  for (const key of formKeys) settings[key] = formValue(config[key as ConfigKey]);
  const dataset = config.dataset?.[0] ?? null;
  if ((config.dataset?.length ?? 0) > 1) skipped.push({ key: 'dataset', why: `the app trains one dataset: ${dataset} is chosen, ${config.dataset!.slice(1).join(', ')} left out` });
  return { settings: withStageKeys(settings), model: config.model_name_or_path, dataset, skipped, notices: result.notices };
}

/** A config value as the form holds it: lists as the comma-separated text a YAML gives. */
const formValue = (v: unknown): unknown => (Array.isArray(v) ? v.join(',') : v);
