// A config as a LLaMA-Factory run folder, whatever the host: the YAML, the dataset_info.json that
// names the data files (LLaMA-Factory knows datasets only by name) and the files to copy beside
// them. `crucible export-config` reads the data from disk and writes a folder; the app reads its
// demo folder or the uploads and shows the YAML or zips the folder. One planner, so both write
// the same bytes.

import { datasetInfoFromRecords, isDatasetFile, toLlamaFactory, type DatasetInfoEntry, type LlamaFactoryRun } from './llamafactory';
import type { CrucibleConfig } from './schema';

/** Where the planner reads data files. */
export interface DataFolder {
  /** The path of file `name` in folder `dir` (`name` may be absolute): what exists/read take. */
  locate(dir: string, name: string): string;
  exists(path: string): Promise<boolean>;
  read(path: string): Promise<Uint8Array>;
  /** The path as messages show it. */
  shown(path: string): string;
  /**
   * How a data file is to be read, when someone said so (the app's format choice for an upload):
   * its dataset_info.json entry without file_name. Otherwise it is described from its first records.
   */
  declared?(path: string): Omit<DatasetInfoEntry, 'file_name'> | undefined;
}

/** The app's embedded demo model (public/demo/model): a name only Crucible knows. */
export const DEMO_MODEL = 'crucible-demo';

export interface ExportOptions {
  /** The config file the run came from (named in the header; its stem names the YAML). */
  source?: string;
  /** The output folder: dataset_dir of a run with data files (without it such a run is refused). */
  out?: string;
}

export interface LlamaFactoryExport {
  run: LlamaFactoryRun;
  /** `llamafactory-cli <command>` runs it: train, export or chat. */
  command: 'train' | 'export' | 'chat';
  /** The YAML's file name (in `out`). */
  yamlName: string;
  /** Source path (DataFolder's) -> file name in the output folder. */
  copies: Map<string, string>;
}

/** The first records of a data file, for format detection (json, jsonl, parquet, csv header, txt). */
export async function sampleRecords(name: string, bytes: Uint8Array, count = 20): Promise<unknown[]> {
  const ext = extension(name).toLowerCase();
  if (ext === '.parquet') {
    const { parquetReadObjects } = await import('hyparquet');
    const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    return parquetReadObjects({ file, rowEnd: count });
  }
  const text = new TextDecoder().decode(bytes);
  if (ext === '.jsonl') {
    return text
      .split('\n')
      .filter((l) => l.trim())
      .slice(0, count)
      .map((l, i) => {
        try {
          return JSON.parse(l) as unknown;
        } catch (e) {
          throw new Error(`${name}:${i + 1}: not a JSON line: ${(e as Error).message}`);
        }
      });
  }
  if (ext === '.json') {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new Error(`${name}: not valid JSON: ${(e as Error).message}`);
    }
    return Array.isArray(data) ? data.slice(0, count) : [data];
  }
  if (ext === '.csv') {
    const header = text.split(/\r?\n/, 1)[0] ?? '';
    return [Object.fromEntries(header.split(',').map((h) => [h.trim().replace(/^"|"$/g, ''), '']))];
  }
  if (ext === '.txt') return [{ text: text.split('\n', 1)[0] ?? '' }];
  return [];
}

export function llamafactoryCommand(config: CrucibleConfig): LlamaFactoryExport['command'] {
  if (config.do_train || config.do_eval) return 'train';
  if (config.export_dir !== null) return 'export';
  return 'chat';
}

/**
 * The run LLaMA-Factory reads: the YAML (dataset_dir = `out` when there are data files), the
 * dataset_info.json entries (data files described from their first records, named datasets used
 * next to them copied from the old dataset_info.json) and the files to copy.
 */
export async function planLlamaFactoryExport(config: CrucibleConfig, folder: DataFolder, options: ExportOptions = {}): Promise<LlamaFactoryExport> {
  const copies = new Map<string, string>();
  const describe = new Map<string, DatasetInfoEntry>();
  const named: Record<string, DatasetInfoEntry> = {};
  const taken = new Set<string>(['dataset_info.json']);
  const place = (src: string): string => {
    const existing = copies.get(src);
    if (existing) return existing;
    const file = fileName(src);
    const ext = extension(file);
    const stem = file.slice(0, file.length - ext.length);
    let name = file;
    for (let i = 2; taken.has(name); i++) name = `${stem}_${i}${ext}`;
    taken.add(name);
    copies.set(src, name);
    return name;
  };
  const entries = [...(config.dataset ?? []), ...(config.eval_dataset ?? [])];
  if (entries.some(isDatasetFile)) {
    for (const f of entries.filter(isDatasetFile)) {
      // as the data pipeline (and LLaMA-Factory's file_name) reads them: relative to dataset_dir
      const src = folder.locate(config.dataset_dir, f);
      if (!(await folder.exists(src))) throw new Error(`dataset file ${folder.shown(src)} does not exist`);
      const declared = folder.declared?.(src);
      describe.set(f, declared ? { file_name: place(src), ...declared } : datasetInfoFromRecords(place(src), await sampleRecords(src, await folder.read(src)), config.stage));
    }
    // named datasets used next to files move into the new dataset_info.json too
    Object.assign(named, await namedEntries(config, entries.filter((e) => !isDatasetFile(e)), folder, place));
  }
  const stem = options.source ? stemOf(options.source) : 'crucible';
  const yamlName = `${stem}.yaml`;
  const command = llamafactoryCommand(config);
  const run = toLlamaFactory(config, {
    describeFile: (p) => describe.get(p)!,
    ...(options.out !== undefined ? { datasetDir: options.out } : {}),
    namedEntries: named,
    header: [
      `LLaMA-Factory run exported by Crucible${options.source ? ` from ${options.source}` : ''}.`,
      `Run: llamafactory-cli ${command} ${options.out !== undefined ? joinPath(options.out, yamlName) : yamlName}`,
      ...(config.model_name_or_path === DEMO_MODEL
        ? [`${DEMO_MODEL} is Crucible's embedded demo model, which LLaMA-Factory cannot load by that name: set model_name_or_path`, `to the folder of its files (public/demo/model in Crucible's repository) or to a Hugging Face model id.`]
        : []),
    ],
  });
  if (options.out === undefined && run.datasetInfo) {
    throw new Error(
      `datasets given as files (${[...Object.keys(run.datasetNames), ...Object.keys(config.dataset_info ?? {})].join(', ')}) need --out DIR: LLaMA-Factory reads them through a dataset_info.json`,
    );
  }
  return { run, command, yamlName, copies };
}

/** dataset_info.json text as export-config writes it. */
export const datasetInfoText = (info: Record<string, DatasetInfoEntry>): string => `${JSON.stringify(info, null, 2)}\n`;

async function namedEntries(config: CrucibleConfig, names: readonly string[], folder: DataFolder, place: (src: string) => string): Promise<Record<string, DatasetInfoEntry>> {
  const out: Record<string, DatasetInfoEntry> = {};
  if (names.length === 0) return out;
  if (config.dataset_dir === 'ONLINE') {
    for (const n of names) out[n] = { hf_hub_url: n };
    return out;
  }
  const infoPath = folder.locate(config.dataset_dir, 'dataset_info.json');
  let info: Record<string, DatasetInfoEntry>;
  try {
    info = JSON.parse(new TextDecoder().decode(await folder.read(infoPath))) as Record<string, DatasetInfoEntry>;
  } catch (e) {
    throw new Error(`datasets ${names.join(', ')} are named, but ${folder.shown(infoPath)} cannot be read: ${(e as Error).message}`);
  }
  for (const n of names) {
    const entry = info[n];
    if (!entry) throw new Error(`dataset "${n}" is not in ${folder.shown(infoPath)}`);
    const copy = { ...entry };
    if (typeof entry.file_name === 'string' && !entry.hf_hub_url && !entry.ms_hub_url && !entry.script_url && !entry.cloud_file_name) {
      const src = folder.locate(config.dataset_dir, entry.file_name);
      if (await folder.exists(src)) copy.file_name = place(src);
    }
    out[n] = copy;
  }
  return out;
}

const fileName = (path: string) => path.split(/[\\/]/).pop() ?? path;

function extension(path: string): string {
  const m = /\.[^./\\]*$/.exec(fileName(path));
  return m && m.index > 0 ? m[0] : '';
}

function stemOf(path: string): string {
  const f = fileName(path);
  return f.slice(0, f.length - extension(f).length);
}

/** `dir/name`, a trailing slash of `dir` dropped. */
const joinPath = (dir: string, name: string) => `${dir.replace(/[\\/]+$/, '') || '.'}/${name}`;
