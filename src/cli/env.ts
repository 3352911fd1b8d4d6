// `crucible env`: what Crucible runs on here. The GPU adapter and its capabilities (through Dawn),
// versions, and the Hugging Face settings the hub code reads, as text or JSON.

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { homedir } from 'node:os';
import type { Capabilities } from '../gpu/capabilities';
import type { CommandDef } from './args';
import { columns, formatBytes } from './format';
import { CliError, type CliIO } from './io';

export interface EnvReport {
  crucible: { version: string };
  node: { version: string; platform: string; arch: string };
  dawn: { package: string; version: string | null };
  gpu: (Capabilities & { warnings: string[] }) | null;
  gpuError: string | null;
  hub: {
    HF_HOME: string;
    HF_HOME_source: 'env' | 'default';
    HF_ENDPOINT: string;
    HF_ENDPOINT_source: 'env' | 'default';
    HF_HUB_OFFLINE: boolean;
    HF_TOKEN: 'set' | 'not set';
    /** The token file huggingface-cli login writes ($HF_TOKEN_PATH or $HF_HOME/token), when present. */
    tokenFile: string | null;
    cacheDir: string;
  };
  vulkan: { VK_ICD_FILENAMES: string | null };
}

function packageVersion(path: string): string | null {
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
}

function dawnVersion(): string | null {
  try {
    const req = createRequire(import.meta.url);
    let dir = dirname(req.resolve('webgpu'));
    for (let i = 0; i < 4; i++) {
      const v = packageVersion(join(dir, 'package.json'));
      if (v) return v;
      dir = dirname(dir);
    }
  } catch {
    /* not installed */
  }
  return null;
}

export function hubSettings(env: Record<string, string | undefined>): EnvReport['hub'] {
  const set = (v: string | undefined) => v !== undefined && v.trim() !== '';
  const xdg = set(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME! : join(env.HOME || homedir(), '.cache');
  const home = set(env.HF_HOME) ? env.HF_HOME! : join(xdg, 'huggingface');
  const endpoint = (set(env.HF_ENDPOINT) ? env.HF_ENDPOINT! : 'https://huggingface.co').replace(/\/+$/, '');
  return {
    HF_HOME: home,
    HF_HOME_source: set(env.HF_HOME) ? 'env' : 'default',
    HF_ENDPOINT: endpoint,
    HF_ENDPOINT_source: set(env.HF_ENDPOINT) ? 'env' : 'default',
    HF_HUB_OFFLINE: /^(1|true|yes|on)$/i.test(env.HF_HUB_OFFLINE?.trim() ?? ''),
    HF_TOKEN: set(env.HF_TOKEN) || set(env.HUGGING_FACE_HUB_TOKEN) ? 'set' : 'not set',
    tokenFile: ((p) => (existsSync(p) ? p : null))(set(env.HF_TOKEN_PATH) ? env.HF_TOKEN_PATH! : join(home, 'token')),
    cacheDir: set(env.HF_HUB_CACHE) ? env.HF_HUB_CACHE! : join(home, 'hub'),
  };
}

export async function envReport(io: CliIO, options: { software?: boolean } = {}): Promise<EnvReport> {
  const warnings: string[] = [];
  let gpu: EnvReport['gpu'] = null;
  let gpuError: string | null = null;
  try {
    const { nodeGpu } = await import('../gpu/node');
    const g = await nodeGpu({ software: options.software, warn: (m) => warnings.push(m) });
    gpu = { ...g.caps, warnings };
    g.device.destroy();
  } catch (e) {
    gpuError = (e as Error).message;
  }
  return {
    crucible: { version: packageVersion(fileURLToPath(new URL('../../package.json', import.meta.url))) ?? 'unknown' },
    node: { version: process.versions.node, platform: process.platform, arch: process.arch },
    dawn: { package: 'webgpu', version: dawnVersion() },
    gpu,
    gpuError,
    hub: hubSettings(io.env),
    vulkan: { VK_ICD_FILENAMES: io.env.VK_ICD_FILENAMES ?? io.env.VK_DRIVER_FILES ?? null },
  };
}

export function formatEnv(r: EnvReport): string {
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  const rows: string[][] = [
    ['Crucible', r.crucible.version],
    ['Node', `${r.node.version} (${r.node.platform} ${r.node.arch})`],
    ['Dawn', r.dawn.version ? `npm webgpu ${r.dawn.version}` : 'npm webgpu not installed (run npm install)'],
  ];
  if (r.gpu) {
    const g = r.gpu;
    const sm = g.subgroupMatrix.length > 0 ? g.subgroupMatrix.map((c) => `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`).join(', ') : 'none';
    rows.push(
      ['GPU', `${g.adapter}${g.software ? ' (software)' : ''}`],
      ['  backend', g.backend],
      ['  shader-f16', yes(g.f16)],
      ['  subgroups', g.subgroups ? `yes${g.subgroupSize ? ` (size ${g.subgroupSize.min}-${g.subgroupSize.max})` : ''}` : 'no'],
      ['  subgroup matrices', sm],
      ['  timestamp queries', yes(g.timestampQuery)],
      ['  max buffer', formatBytes(g.limits.maxBufferSize)],
      ['  max storage binding', formatBytes(g.limits.maxStorageBufferBindingSize)],
      ['  workgroup storage', formatBytes(g.limits.maxComputeWorkgroupStorageSize)],
      ['  invocations/workgroup', String(g.limits.maxComputeInvocationsPerWorkgroup)],
    );
    for (const w of g.warnings) rows.push(['  note', w]);
  } else rows.push(['GPU', `none: ${r.gpuError}`]);
  const h = r.hub;
  rows.push(
    ['HF_HOME', `${h.HF_HOME}${h.HF_HOME_source === 'default' ? ' (default)' : ''}`],
    ['  model cache', h.cacheDir],
    ['HF_ENDPOINT', `${h.HF_ENDPOINT}${h.HF_ENDPOINT_source === 'default' ? ' (default)' : ''}`],
    ['HF_HUB_OFFLINE', h.HF_HUB_OFFLINE ? '1 (no downloads)' : '0'],
    ['HF_TOKEN', `${h.HF_TOKEN}${h.tokenFile ? ` (token file ${h.tokenFile})` : ''}`],
  );
  if (r.vulkan.VK_ICD_FILENAMES) rows.push(['VK_ICD_FILENAMES', r.vulkan.VK_ICD_FILENAMES]);
  return `${columns(rows)}\n`;
}

export const envCommand: CommandDef = {
  name: 'env',
  summary: 'Show the GPU, its capabilities, versions and Hugging Face settings',
  usage: '[--json] [--software]',
  flags: [
    { name: 'json', help: 'print a JSON object' },
    { name: 'software', help: 'use the SwiftShader software adapter, not the hardware GPU' },
  ],
  config: false,
  async run(args, io) {
    if (args.positional.length > 0) throw new CliError(`crucible env takes no arguments, got "${args.positional[0]}"`);
    const report = await envReport(io, { software: args.flags.software === true });
    io.stdout(args.flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatEnv(report));
    return 0;
  },
};
