// `crucible bench <config.yaml>`: training throughput of a config on this GPU (tokens/s, step
// time, peak memory), without writing a run. Kernel benchmarks are `npm run bench`.

import { commandConfig, flagInt, type CommandDef } from './args';
import { loadEngine } from './engines';
import { columns, formatBytes } from './format';
import { interruptSignal } from './io';
import { keysHelp } from './keys';

export const benchCommand: CommandDef = {
  name: 'bench',
  summary: 'Measure training throughput of a config on this GPU',
  usage: '<config.yaml> [key=value ...] [--steps N] [--warmup N] [--json]',
  details: ['Runs optimizer steps on the config\'s model and batch shape and reports tokens/s, step time and peak GPU memory.'],
  flags: [
    { name: 'steps', value: 'int', placeholder: 'N', help: 'measured steps (default 10)' },
    { name: 'warmup', value: 'int', placeholder: 'N', help: 'unmeasured steps first (default 2)' },
    { name: 'json', help: 'print JSON' },
    { name: 'keys', help: 'list the config keys bench reads, with defaults' },
  ],
  config: true,
  async run(args, io) {
    if (args.flags.keys) {
      io.stdout(keysHelp('bench'));
      return 0;
    }
    const config = await commandConfig(args, io, 'bench');
    const benchmarkTraining = await loadEngine('benchmarkTraining', 'bench', io);
    const stop = interruptSignal(io);
    try {
      const r = await benchmarkTraining(config, {
        steps: flagInt(args, 'steps', 10),
        warmup: flagInt(args, 'warmup', 2),
        signal: stop.signal,
        onStatus: (m) => io.stderr(`${m}\n`),
      });
      if (args.flags.json) io.stdout(`${JSON.stringify(r, null, 2)}\n`);
      else {
        io.stdout(
          `${columns([
            ['device', r.device],
            ['model', r.model],
            ['steps', String(r.steps)],
            ['tokens/s', r.tokensPerSecond.toFixed(0)],
            ['step time', `${(r.stepSeconds * 1000).toFixed(1)} ms`],
            ['peak GPU memory', formatBytes(r.peakBytes)],
            ...(r.recompute !== undefined ? [['recomputation', r.recompute ? 'on' : 'off'] as [string, string]] : []),
            ...gemmTileRows(r.gemmTiles),
          ])}\n`,
        );
      }
      return 0;
    } finally {
      stop.dispose();
    }
  },
};

/** Which tile each GEMM shape class runs with (tuned), or that all run the defaults. */
function gemmTileRows(tiles: Record<string, string> | undefined): [string, string][] {
  const entries = Object.entries(tiles ?? {});
  if (entries.length === 0) return [['GEMM tiles', 'defaults (not tuned: CRUCIBLE_GEMM_TUNING=on tunes them)']];
  return entries.map(([cls, tile], i) => [i === 0 ? 'GEMM tiles' : '', `${cls} ${tile}`]);
}
