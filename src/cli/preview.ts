// `crucible preview <config.yaml>`: examples as the trainer will see them: the template applied,
// which tokens carry a loss (train_on_prompt, mask_history), truncation at cutoff_len.

import type { PreviewExample, PreviewItem } from '../data/preview';
import { commandConfig, flagInt, type CommandDef } from './args';
import { loadEngine } from './engines';
import { CliError, type CliIO } from './io';
import { keysHelp } from './keys';

/** Learned text in green on a terminal, else between ⟦ ⟧ marks; then the ids and labels. */
export function renderItem(item: PreviewItem, color: boolean): string {
  const body = item.segments.map((seg) => (!seg.learned ? seg.text : color ? `\x1b[32m${seg.text}\x1b[0m` : `⟦${seg.text}⟧`)).join('');
  const learned = item.labels.filter((l) => l !== -100).length;
  return `${body}\n[${item.input_ids.length} tokens, ${learned} learned]\ninput_ids: ${JSON.stringify(item.input_ids)}\nlabels:    ${JSON.stringify(item.labels)}\n`;
}

export function renderExample(e: PreviewExample, index: number, color: boolean): string {
  if ('chosen' in e) return `--- #${index} chosen\n${renderItem(e.chosen, color)}--- #${index} rejected\n${renderItem(e.rejected, color)}`;
  if ('kto_tag' in e) return `--- #${index} (${e.kto_tag ? 'desirable' : 'undesirable'})\n${renderItem(e, color)}`;
  return `--- #${index}\n${renderItem(e, color)}`;
}

/** One JSON object per example: input_ids and labels (preference: chosen and rejected sides). */
export function exampleJson(e: PreviewExample): Record<string, unknown> {
  const side = (i: PreviewItem) => ({ text: i.text, input_ids: i.input_ids, labels: i.labels });
  if ('chosen' in e) return { chosen: side(e.chosen), rejected: side(e.rejected) };
  if ('kto_tag' in e) return { ...side(e), kto_tag: e.kto_tag, kl: side(e.kl) };
  return side(e);
}

export const previewCommand: CommandDef = {
  name: 'preview',
  summary: 'Show dataset examples as training sees them (template, loss mask)',
  usage: '<config.yaml> [key=value ...] [-n N] [--offset K] [--json]',
  details: ['Text that carries a loss is shown in green (or between ⟦ ⟧ when not on a terminal).', '--json prints one JSON object per example per line.'],
  flags: [
    { name: 'count', short: 'n', value: 'int', placeholder: 'N', help: 'examples to show (default 3)' },
    { name: 'offset', value: 'int', placeholder: 'K', help: 'start at example K (default 0)' },
    { name: 'json', help: 'print JSON lines' },
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
    const offset = flagInt(args, 'offset', 0);
    const result = await previewDataset(config, { count: flagInt(args, 'count', 3), offset, onStatus: (m) => io.stderr(`${m}\n`), signal: io.signal });
    if (offset >= result.total) throw new CliError(`--offset ${offset} is past the end: the dataset has ${result.total} example${result.total === 1 ? '' : 's'} (0 to ${result.total - 1})`);
    result.examples.forEach((e, i) => io.stdout(args.flags.json ? `${JSON.stringify(exampleJson(e))}\n` : renderExample(e, offset + i, io.interactive)));
    return 0;
  },
};
