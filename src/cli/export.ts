// `crucible export <config.yaml>`: merge a LoRA adapter into its model and write the result to
// export_dir as safetensors shards, as `llamafactory-cli export` (examples/merge_lora/*.yaml).

import { commandConfig, type CommandDef } from './args';
import { loadEngine } from './engines';
import { interruptSignal } from './io';
import { keysHelp } from './keys';

export const exportCommand: CommandDef = {
  name: 'export',
  summary: 'Merge a LoRA adapter into its model and write it to export_dir',
  usage: '<config.yaml> [key=value ...]',
  details: [
    'Reads LLaMA-Factory merge YAMLs: model_name_or_path, adapter_name_or_path, template, export_dir, export_size.',
    'Writes safetensors shards of export_size GB, config.json, the tokenizer files and generation_config.json.',
  ],
  flags: [
    { name: 'adapter-only', help: 'copy the adapter (checked against the model) instead of merging it' },
    { name: 'keys', help: 'list the config keys export reads, with defaults' },
  ],
  config: true,
  async run(args, io) {
    if (args.flags.keys) {
      io.stdout(keysHelp('export'));
      return 0;
    }
    const config = await commandConfig(args, io, 'export');
    const exportModel = await loadEngine('exportModel', 'export', io);
    const adapters = config.adapter_name_or_path ? ` + ${config.adapter_name_or_path.join(', ')}` : '';
    io.stderr(`export: ${config.model_name_or_path}${adapters} -> ${config.export_dir}\n`);
    const stop = interruptSignal(io);
    try {
      const result = await exportModel(config, { signal: stop.signal, onStatus: (m) => io.stderr(`${m}\n`), adapterOnly: !!args.flags['adapter-only'] });
      for (const f of result.files) io.stdout(`${f}\n`);
      io.stderr(`wrote ${result.files.length} files to ${result.exportDir}\n`);
      return 0;
    } finally {
      stop.dispose();
    }
  },
};
