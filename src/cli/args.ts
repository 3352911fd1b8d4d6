// Command-line parsing shared by the commands: flags (--name value, --name=value, -x value),
// positional arguments, and config overrides as LLaMA-Factory takes them: `key=value`, and for
// known config keys also `--key value` / `--key=value`.

import { CONFIG_KEYS, IGNORED_KEYS, RENAMED_KEYS, UNSUPPORTED_KEYS, argSpec, isConfigPath, loadConfig, parseConfig, checkConfigFor, checkOutputDir, nearest } from '../config';
import type { Command, CrucibleConfig } from '../config';
import { CliError, type CliIO } from './io';

export interface FlagSpec {
  name: string;
  short?: string;
  /** Takes a value (default: a switch). */
  value?: 'string' | 'int';
  /** Shown in help, e.g. "N". */
  placeholder?: string;
  /** A value flag given more than once collects its values (read them with flagList). */
  repeatable?: boolean;
  help: string;
}

export interface ParsedArgs {
  positional: string[];
  overrides: string[];
  flags: Record<string, string | boolean | undefined>;
  help: boolean;
}

export interface CommandDef {
  name: string;
  summary: string;
  /** Usage after "crucible <name>". */
  usage: string;
  /** Extra help paragraphs. */
  details?: readonly string[];
  flags: readonly FlagSpec[];
  /** Accepts key=value / --key value config overrides. */
  config: boolean;
  run(args: ParsedArgs, io: CliIO): Promise<number>;
}

const OVERRIDE = /^[A-Za-z_][A-Za-z0-9_.]*=/;

function isConfigKey(name: string): boolean {
  return argSpec(name) !== undefined || Object.hasOwn(IGNORED_KEYS, name) || Object.hasOwn(UNSUPPORTED_KEYS, name) || Object.hasOwn(RENAMED_KEYS, name);
}

export function parseArgs(argv: readonly string[], cmd: Pick<CommandDef, 'name' | 'flags' | 'config'>): ParsedArgs {
  const out: ParsedArgs = { positional: [], overrides: [], flags: {}, help: false };
  const byName = new Map(cmd.flags.map((f) => [f.name, f]));
  const byShort = new Map(cmd.flags.filter((f) => f.short).map((f) => [f.short!, f]));
  let onlyPositional = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (onlyPositional) {
      out.positional.push(a);
      continue;
    }
    if (a === '--') {
      onlyPositional = true;
      continue;
    }
    if (a === '-h' || a === '--help') {
      out.help = true;
      continue;
    }
    if (a.startsWith('-') && a !== '-') {
      const long = a.startsWith('--');
      const body = long ? a.slice(2) : a.slice(1);
      const eq = body.indexOf('=');
      const name = eq >= 0 ? body.slice(0, eq) : body;
      const inline = eq >= 0 ? body.slice(eq + 1) : undefined;
      const flag = long ? byName.get(name) : byShort.get(name);
      if (flag) {
        if (!flag.value) {
          if (inline !== undefined) throw new CliError(`option --${flag.name} takes no value`);
          out.flags[flag.name] = true;
          continue;
        }
        const v = inline ?? argv[++i];
        if (v === undefined) throw new CliError(`option --${flag.name} needs a value`);
        if (flag.value === 'int' && !/^\d+$/.test(v)) throw new CliError(`option --${flag.name} expects a whole number, got "${v}"`);
        const earlier = out.flags[flag.name];
        out.flags[flag.name] = flag.repeatable && typeof earlier === 'string' ? `${earlier},${v}` : v;
        continue;
      }
      if (long && cmd.config && isConfigKey(name)) {
        // HF-style --key value; a bare --key (next is another option or nothing) means true
        let v = inline;
        if (v === undefined) {
          const next = argv[i + 1];
          if (next === undefined || (next.startsWith('--') && next.length > 2)) v = 'true';
          else v = argv[++i]!;
        }
        out.overrides.push(`${name}=${v}`);
        continue;
      }
      const names = [...cmd.flags.map((f) => `--${f.name}`), '--help', ...(cmd.config ? CONFIG_KEYS.map((k) => `--${k}`) : [])];
      const hint = long ? ` (did you mean ${nearest(`--${name}`, names)}?)` : '';
      throw new CliError(`unknown option ${a} for crucible ${cmd.name}${hint}; see crucible ${cmd.name} --help`);
    }
    if (cmd.config && OVERRIDE.test(a)) out.overrides.push(a);
    else out.positional.push(a);
  }
  return out;
}

export function flagString(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags[name];
  return typeof v === 'string' ? v : undefined;
}

/** The values of a repeatable flag, each of which may also be a comma-separated list. */
export function flagList(args: ParsedArgs, name: string): string[] {
  return (flagString(args, name) ?? '').split(',').map((v) => v.trim()).filter(Boolean);
}

export function flagInt(args: ParsedArgs, name: string, fallback: number): number {
  const v = flagString(args, name);
  return v === undefined ? fallback : Number(v);
}

/**
 * The config of a command: an optional YAML/JSON file (first positional) plus overrides.
 * Notices go to stderr, one line each; then the command's own requirements are checked.
 */
export async function commandConfig(args: ParsedArgs, io: CliIO, command: Command | null): Promise<CrucibleConfig> {
  const [file, ...extra] = args.positional;
  if (extra.length > 0) throw new CliError(`unexpected argument "${extra[0]}" (overrides are key=value)`);
  if (file !== undefined && !isConfigPath(file)) {
    throw new CliError(`expected a config file (.yaml, .yml or .json), got "${file}"`);
  }
  const { resolve } = await import('node:path');
  const { config, notices } =
    file !== undefined
      ? await loadConfig(resolve(io.cwd, file), args.overrides, { fileName: file, cwd: io.cwd })
      : parseConfig('', args.overrides, { fileName: 'command line' });
  for (const n of notices) io.stderr(`${n}\n`);
  if (command) checkConfigFor(config, command);
  if (command === 'train' || command === 'export') await checkOutputDir(config, command);
  return config;
}
