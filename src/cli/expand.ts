// `crucible expand <model> <output_dir> --num-expand N`: LLaMA Pro block expansion, as
// LLaMA-Factory's scripts/llama_pro.py; then train the copies with use_llama_pro.

import type { CommandDef } from './args';
import { CliError } from './io';

export const expandCommand: CommandDef = {
  name: 'expand',
  summary: 'Add LLaMA Pro blocks to a model (then train them with use_llama_pro)',
  usage: '<model> <output_dir> --num-expand N [--shard-size GB]',
  details: [
    'As LLaMA-Factory\'s scripts/llama_pro.py: after every L/N layers a copy of the last one is inserted with',
    'o_proj and down_proj set to zero, so the expanded model computes what the original does.',
  ],
  flags: [
    { name: 'num-expand', value: 'int', placeholder: 'N', help: 'layers to add (must divide the layer count)' },
    { name: 'shard-size', value: 'string', placeholder: 'GB', help: 'largest weight file, in GB (default 5)' },
  ],
  config: false,
  async run(args, io) {
    const [model, outputDir, ...extra] = args.positional;
    if (!model || !outputDir || extra.length) throw new CliError('expand needs a model and an output folder: crucible expand <model> <output_dir> --num-expand N');
    const numExpand = Number(args.flags['num-expand']);
    if (!Number.isInteger(numExpand) || numExpand < 1) throw new CliError(`--num-expand must be a positive integer, got ${JSON.stringify(args.flags['num-expand'] ?? null)}`);
    const shardGb = args.flags['shard-size'] === undefined ? 5 : Number(args.flags['shard-size']);
    if (!(shardGb > 0)) throw new CliError(`--shard-size must be a positive number of GB, got ${JSON.stringify(args.flags['shard-size'])}`);
    const { expandModel } = await import('../engine/expand-node');
    const r = await expandModel(model, outputDir, { numExpand, shardGb, onStatus: (m) => io.stderr(`${m}\n`) });
    for (const f of r.files) io.stdout(`${f}\n`);
    io.stderr(`expanded ${r.from} to ${r.to} layers in ${r.outputDir}; train it with:\n`
      + `  model_name_or_path: ${r.outputDir}\n  finetuning_type: freeze\n  freeze_trainable_layers: ${numExpand}\n  use_llama_pro: true\n`);
    return 0;
  },
};
