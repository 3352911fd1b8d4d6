// `crucible preview <config.yaml>`: examples as the trainer will see them: the template applied,
// which tokens carry a loss (train_on_prompt, mask_history), truncation at cutoff_len.

import { commandConfig, flagInt, type CommandDef } from './args';
import { loadEngine, type PreviewSample } from './engines';
import type { CliIO } from './io';
import { keysHelp } from './keys';

/** Trained text in green on a terminal, else between ⟦ ⟧ marks. */
export function renderSample(s: PreviewSample, color: boolean): string {
  const body = s.segments
    .map((seg) => (!seg.trained ? seg.text : color ? `\x1b[32m${seg.text}\x1b[0m` : `⟦${seg.text}⟧`))
    .join('');
  const head = `--- ${s.dataset} #${s.index}: ${s.tokens} tokens, ${s.trainedTokens} trained${s.truncated ? ', truncated at cutoff_len' : ''}`;
  return `${head}\n${body}\n`;
}

export const previewCommand: CommandDef = {
  name: 'preview',
  summary: 'Show dataset examples as training sees them (template, loss mask)',
  usage: '<config.yaml> [key=value ...] [-n N] [--offset K] [--eval] [--json]',
  details: ['Text that carries a loss is shown in green (or between ⟦ ⟧ when not on a terminal).'],
  flags: [
    { name: 'count', short: 'n', value: 'int', placeholder: 'N', help: 'examples to show (default 3)' },
    { name: 'offset', value: 'int', placeholder: 'K', help: 'start at example K (default 0)' },
    { name: 'eval', help: 'show the evaluation split' },
    { name: 'json', help: 'print JSON' },
    { name: 'keys', help: 'list the config keys preview reads, with defaults' },
  ],
  config: true,
  async run(args, io: CliIO) {
    if (args.flags.keys) {
      io.stdout(keysHelp('preview'));
      return 0;
    }
    const config = await commandConfig(args, io, 'preview');
    const previewDataset = await loadEngine('previewDataset', 'preview', io);
    const result = await previewDataset(config, {
      count: flagInt(args, 'count', 3),
      offset: flagInt(args, 'offset', 0),
      split: args.flags.eval ? 'eval' : 'train',
      onStatus: (m) => io.stderr(`${m}\n`),
      signal: io.signal,
    });
    if (args.flags.json) {
      io.stdout(`${JSON.stringify(result, null, 2)}\n`);
      return 0;
    }
    for (const s of result.samples) io.stdout(renderSample(s, io.interactive));
    io.stderr(`${result.examples} examples in the ${args.flags.eval ? 'evaluation' : 'training'} split\n`);
    return 0;
  },
};
