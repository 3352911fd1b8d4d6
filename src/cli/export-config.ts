// `crucible export-config`: a config as a LLaMA-Factory run. Without --out the YAML goes to
// stdout. With --out DIR, DIR holds the YAML, a dataset_info.json and copies of the data files
// (LLaMA-Factory knows datasets only by name), so DIR can be copied to a cluster as is. The plan
// (src/config/llamafactory-export.ts) is the app's too.

import { access, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { datasetInfoText, planLlamaFactoryExport, type DataFolder } from '../config';
import { commandConfig, flagString, type CommandDef } from './args';
import { CliError, type CliIO } from './io';

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

function diskFolder(io: CliIO): DataFolder {
  return {
    locate: (dir, name) => (isAbsolute(name) ? name : resolve(io.cwd, dir, name)),
    exists,
    read: async (path) => new Uint8Array(await readFile(path)),
    shown: (path) => relative(io.cwd, path),
  };
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
    const source = args.positional[0];
    const plan = await planLlamaFactoryExport(config, diskFolder(io), { ...(source !== undefined ? { source } : {}), ...(out !== undefined ? { out } : {}) }).catch((e: unknown) => {
      throw new CliError((e as Error).message);
    });
    const { run, yamlName, copies, command } = plan;
    if (out === undefined) {
      io.stdout(run.yaml);
      return 0;
    }
    const dir = resolve(io.cwd, out);
    await mkdir(dir, { recursive: true });
    const wrote = [yamlName, ...(run.datasetInfo ? ['dataset_info.json'] : []), ...copies.values()];
    if (args.flags.force !== true) {
      for (const name of wrote) {
        if (await exists(join(dir, name))) throw new CliError(`${relative(io.cwd, join(dir, name))} already exists (use --force to overwrite)`);
      }
    }
    for (const [src, name] of copies) await copyFile(src, join(dir, name));
    await writeFile(join(dir, yamlName), run.yaml);
    if (run.datasetInfo) await writeFile(join(dir, 'dataset_info.json'), datasetInfoText(run.datasetInfo));
    io.stderr(`wrote ${wrote.map((w) => join(out, w)).join(', ')}\nrun it with: llamafactory-cli ${command} ${join(out, yamlName)}\n`);
    return 0;
  },
};
