// `crucible export-config`: a config as a LLaMA-Factory run. Without --out the YAML goes to
// stdout. With --out DIR, DIR holds the YAML, a dataset_info.json and copies of the data files
// (LLaMA-Factory knows datasets only by name), so DIR can be copied to a cluster as is.

import { copyFile, mkdir, readFile, writeFile, access } from 'node:fs/promises';
import { basename, extname, join, relative, resolve } from 'node:path';
import { datasetInfoFromRecords, isDatasetFile, toLlamaFactory, type CrucibleConfig, type DatasetInfoEntry } from '../config';
import { commandConfig, flagString, type CommandDef } from './args';
import { CliError, type CliIO } from './io';

/** The first records of a data file, for format detection. */
export async function sampleRecords(path: string, count = 20): Promise<unknown[]> {
  const ext = extname(path).toLowerCase();
  if (ext === '.parquet') {
    const { parquetReadObjects } = await import('hyparquet');
    const bytes = await readFile(path);
    const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    return parquetReadObjects({ file, rowEnd: count });
  }
  const text = await readFile(path, 'utf8');
  if (ext === '.jsonl') {
    return text
      .split('\n')
      .filter((l) => l.trim())
      .slice(0, count)
      .map((l, i) => {
        try {
          return JSON.parse(l) as unknown;
        } catch (e) {
          throw new CliError(`${path}:${i + 1}: not a JSON line: ${(e as Error).message}`);
        }
      });
  }
  if (ext === '.json') {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new CliError(`${path}: not valid JSON: ${(e as Error).message}`);
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

interface Plan {
  /** source path -> file name inside the output dir */
  copies: Map<string, string>;
  describe: Map<string, DatasetInfoEntry>;
  named: Record<string, DatasetInfoEntry>;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

async function planDatasets(config: CrucibleConfig, io: CliIO): Promise<Plan> {
  const plan: Plan = { copies: new Map(), describe: new Map(), named: {} };
  const taken = new Set<string>(['dataset_info.json']);
  const place = (src: string): string => {
    const existing = plan.copies.get(src);
    if (existing) return existing;
    const ext = extname(src);
    const stem = basename(src, ext);
    let name = `${stem}${ext}`;
    for (let i = 2; taken.has(name); i++) name = `${stem}_${i}${ext}`;
    taken.add(name);
    plan.copies.set(src, name);
    return name;
  };
  const entries = [...(config.dataset ?? []), ...(config.eval_dataset ?? [])];
  const files = entries.filter(isDatasetFile);
  if (files.length === 0) return plan;

  const dataDir = resolve(io.cwd, config.dataset_dir);
  for (const f of files) {
    // as the data pipeline (and LLaMA-Factory's file_name) reads them: relative to dataset_dir
    const src = resolve(dataDir, f);
    if (!(await exists(src))) throw new CliError(`dataset file ${relative(io.cwd, src)} does not exist`);
    plan.describe.set(f, datasetInfoFromRecords(place(src), await sampleRecords(src), config.stage));
  }
  // Named datasets used next to files move into the new dataset_info.json too.
  const names = entries.filter((e) => !isDatasetFile(e));
  if (names.length > 0) {
    if (config.dataset_dir === 'ONLINE') {
      for (const n of names) plan.named[n] = { hf_hub_url: n };
    } else {
      const dir = dataDir;
      const infoPath = join(dir, 'dataset_info.json');
      let info: Record<string, DatasetInfoEntry>;
      try {
        info = JSON.parse(await readFile(infoPath, 'utf8')) as Record<string, DatasetInfoEntry>;
      } catch (e) {
        throw new CliError(`datasets ${names.join(', ')} are named, but ${relative(io.cwd, infoPath)} cannot be read: ${(e as Error).message}`);
      }
      for (const n of names) {
        const entry = info[n];
        if (!entry) throw new CliError(`dataset "${n}" is not in ${relative(io.cwd, infoPath)}`);
        const copy = { ...entry };
        if (typeof entry.file_name === 'string' && !entry.hf_hub_url && !entry.ms_hub_url && !entry.script_url && !entry.cloud_file_name) {
          const src = resolve(dir, entry.file_name);
          if (await exists(src)) copy.file_name = place(src);
        }
        plan.named[n] = copy;
      }
    }
  }
  return plan;
}

function llamafactoryCommand(config: CrucibleConfig): string {
  if (config.do_train || config.do_eval) return 'train';
  if (config.export_dir !== null) return 'export';
  return 'chat';
}

export const exportConfigCommand: CommandDef = {
  name: 'export-config',
  summary: 'Write a config as a LLaMA-Factory run (YAML, dataset_info.json)',
  usage: '<config.yaml> [key=value ...] --to llamafactory [--out DIR] [--force]',
  details: [
    'Keys at their default are left out; PyTorch settings that came in (tf32, deepspeed, ...) are written back.',
    'Datasets given as files need --out: DIR then holds the YAML, a dataset_info.json naming them, and',
    'copies of the data files, with dataset_dir pointing at DIR (run llamafactory-cli from the current directory,',
    'or edit dataset_dir after moving DIR).',
  ],
  flags: [
    { name: 'to', value: 'string', placeholder: 'FORMAT', help: 'target format: llamafactory' },
    { name: 'out', short: 'o', value: 'string', placeholder: 'DIR', help: 'write the run into DIR instead of printing the YAML' },
    { name: 'force', help: 'overwrite files already in DIR' },
  ],
  config: true,
  async run(args, io) {
    const to = flagString(args, 'to');
    if (to === undefined) throw new CliError('export-config needs --to llamafactory');
    if (to.toLowerCase().replace(/[-_]/g, '') !== 'llamafactory') throw new CliError(`unknown target "${to}" for --to (supported: llamafactory)`);
    if (args.positional.length === 0 && args.overrides.length === 0) throw new CliError('export-config needs a config file (crucible export-config run.yaml --to llamafactory)');
    const config = await commandConfig(args, io, null);
    const out = flagString(args, 'out');
    const plan = await planDatasets(config, io);
    const source = args.positional[0];
    const command = llamafactoryCommand(config);
    const stem = source ? basename(source, extname(source)) : 'crucible';
    const yamlName = out !== undefined ? join(out, `${stem}.yaml`) : `${stem}.yaml`;
    const run = toLlamaFactory(config, {
      describeFile: (p) => plan.describe.get(p)!,
      datasetDir: out,
      namedEntries: plan.named,
      header: [
        `LLaMA-Factory run exported by Crucible${source ? ` from ${source}` : ''}.`,
        `Run: llamafactory-cli ${command} ${yamlName}`,
      ],
    });
    if (out === undefined) {
      if (run.datasetInfo) {
        throw new CliError(
          `datasets given as files (${[...Object.keys(run.datasetNames), ...Object.keys(config.dataset_info ?? {})].join(', ')}) need --out DIR: LLaMA-Factory reads them through a dataset_info.json`,
        );
      }
      io.stdout(run.yaml);
      return 0;
    }
    const dir = resolve(io.cwd, out);
    await mkdir(dir, { recursive: true });
    const targets = [join(dir, `${stem}.yaml`), ...(run.datasetInfo ? [join(dir, 'dataset_info.json')] : []), ...[...plan.copies.values()].map((n) => join(dir, n))];
    if (args.flags.force !== true) {
      for (const t of targets) {
        if (await exists(t)) throw new CliError(`${relative(io.cwd, t)} already exists (use --force to overwrite)`);
      }
    }
    for (const [src, name] of plan.copies) await copyFile(src, join(dir, name));
    await writeFile(join(dir, `${stem}.yaml`), run.yaml);
    if (run.datasetInfo) await writeFile(join(dir, 'dataset_info.json'), `${JSON.stringify(run.datasetInfo, null, 2)}\n`);
    const wrote = [`${stem}.yaml`, ...(run.datasetInfo ? ['dataset_info.json'] : []), ...plan.copies.values()];
    io.stderr(`wrote ${wrote.map((w) => join(out, w)).join(', ')}\nrun it with: llamafactory-cli ${command} ${yamlName}\n`);
    return 0;
  },
};
