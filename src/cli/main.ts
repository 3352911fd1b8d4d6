// The `crucible` command line: subcommands with per-command help, LLaMA-Factory style configs.
// Errors end the process with status 1 and one line on stderr (CRUCIBLE_DEBUG=1 adds the stack).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { nearest } from '../config';
import { apiCommand } from './api';
import { parseArgs, type CommandDef } from './args';
import { benchCommand } from './bench';
import { chatCommand } from './chat';
import { envCommand } from './env';
import { exportCommand } from './export';
import { exportConfigCommand } from './export-config';
import { evalCommand } from './eval';
import { expandCommand } from './expand';
import { columns } from './format';
import { CliError, processIO, type CliIO } from './io';
import { previewCommand } from './preview';
import { trainCommand } from './train';

export const COMMANDS: readonly CommandDef[] = [
  trainCommand,
  chatCommand,
  exportCommand,
  apiCommand,
  previewCommand,
  benchCommand,
  envCommand,
  exportConfigCommand,
  evalCommand,
  expandCommand,
];

export function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

export function mainHelp(): string {
  const rows = COMMANDS.map((c) => [`  ${c.name}`, c.summary]);
  return [
    `Crucible ${version()}: fine-tune open LLMs with LoRA/QLoRA on WebGPU, with LLaMA-Factory configs`,
    '',
    'Usage: crucible <command> [arguments]',
    '',
    'Commands:',
    columns(rows),
    '',
    'crucible <command> --help shows a command\'s arguments; crucible train --keys lists the config keys.',
    'Configs are LLaMA-Factory YAMLs; override keys with key=value (e.g. crucible train run.yaml learning_rate=1.0e-4).',
    'Environment: HF_HOME, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE; API_HOST, API_PORT, API_KEY;',
    'CRUCIBLE_DEBUG=1 prints stack traces with errors.',
    '',
  ].join('\n');
}

export function commandHelp(cmd: CommandDef): string {
  const rows = cmd.flags.map((f) => [
    `  ${f.short ? `-${f.short}, ` : '    '}--${f.name}${f.value ? ` ${f.placeholder ?? 'VALUE'}` : ''}`,
    f.help,
  ]);
  rows.push(['  -h, --help', 'show this help']);
  const out = [`Usage: crucible ${cmd.name} ${cmd.usage}`, '', `${cmd.summary}.`];
  if (cmd.details?.length) out.push('', ...cmd.details);
  out.push('', 'Options:', columns(rows), '');
  return out.join('\n');
}

/** Runs the command line; resolves with the exit status. */
export async function main(argv: readonly string[], io: CliIO = processIO()): Promise<number> {
  try {
    const [first, ...rest] = argv;
    if (first === undefined || first === '-h' || first === '--help') {
      io.stdout(mainHelp());
      return 0;
    }
    if (first === '--version' || first === '-V' || first === 'version') {
      io.stdout(`${version()}\n`);
      return 0;
    }
    if (first === 'help') {
      if (rest[0] === undefined) {
        io.stdout(mainHelp());
        return 0;
      }
      io.stdout(commandHelp(findCommand(rest[0])));
      return 0;
    }
    const cmd = findCommand(first);
    const args = parseArgs(rest, cmd);
    if (args.help) {
      io.stdout(commandHelp(cmd));
      return 0;
    }
    return await cmd.run(args, io);
  } catch (e) {
    return reportError(e, io);
  }
}

function findCommand(name: string): CommandDef {
  const cmd = COMMANDS.find((c) => c.name === name);
  if (cmd) return cmd;
  const hint = name.startsWith('-') ? '' : ` (did you mean "${nearest(name, COMMANDS.map((c) => c.name))}"?)`;
  throw new CliError(`unknown command "${name}"${hint}; see crucible --help`);
}

const JS_FAULTS = ['TypeError', 'RangeError', 'ReferenceError', 'SyntaxError', 'EvalError', 'URIError', 'AggregateError', 'InternalError'];

/** Prints the one-line error (and the stack with CRUCIBLE_DEBUG=1); returns the exit status. */
export function reportError(e: unknown, io: CliIO): number {
  const debug = /^(1|true|yes)$/i.test(io.env.CRUCIBLE_DEBUG ?? '');
  const err = e instanceof Error ? e : new Error(String(e));
  // JavaScript's own error classes are bugs; Crucible's errors (plain Error included) speak to the user
  const expected = !JS_FAULTS.includes(err.name);
  if (err instanceof CliError && err.exitCode === 130) {
    io.stderr('interrupted\n');
    return 130;
  }
  let message = err.message.replace(/\s*\n\s*/g, ' ').trim() || err.name;
  if (!expected && err.name && err.name !== 'Error') message = `${err.name}: ${message}`;
  // a message passed on from another error (a worker, a wrapped cause) may still start with its class
  if (expected) message = message.replace(/^(?:[A-Z]\w*Error: )+/, '');
  io.stderr(`error: ${message}${!expected && !debug ? ' (CRUCIBLE_DEBUG=1 shows where)' : ''}\n`);
  if (debug && err.stack) io.stderr(`${err.stack}\n`);
  return 1;
}
