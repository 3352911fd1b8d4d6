// bin/crucible.js as users run it: plain node (no build step), and through npx.

import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function crucible(args: string[], env: Record<string, string> = {}, command = process.execPath, pre: string[] = ['bin/crucible.js']) {
  const r = spawnSync(command, [...pre, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, CRUCIBLE_DEBUG: '', ...env },
    timeout: 60_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('bin/crucible.js', () => {
  it('prints help with plain node', () => {
    const r = crucible(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('Usage: crucible <command>');
  });

  it('runs env --json (GPU through Dawn) and exits', () => {
    const r = crucible(['env', '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out);
    expect(report.dawn.version).toMatch(/^\d/);
    expect(report.gpu !== null || typeof report.gpuError === 'string').toBe(true);
  });

  it('fails with status 1 and one line, a stack only with CRUCIBLE_DEBUG=1', () => {
    const r = crucible(['train', 'missing.yaml']);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toBe('error: cannot read config missing.yaml: no such file\n');
    const d = crucible(['train', 'missing.yaml'], { CRUCIBLE_DEBUG: '1' });
    expect(d.code).toBe(1);
    expect(d.err).toMatch(/^\s+at .*load\.ts/m);
  });

  it('registers loaders that import TypeScript with .wgsl shaders (as the engine modules do)', () => {
    // the same two registrations as bin/crucible.js, then a kernel module that imports a shader
    const script = [
      "import { register } from 'node:module';",
      "import { register as registerTsx } from 'tsx/esm/api';",
      'registerTsx();',
      "register('./bin/wgsl-hooks.js', new URL('file://' + process.cwd() + '/'));",
      "const m = await import('./src/kernels/matmul.ts');",
      'console.log(Object.keys(m).length > 0);',
    ].join('\n');
    const r = crucible(['--input-type=module', '-e', script], {}, process.execPath, []);
    expect(r.err).toBe('');
    expect(r.out.trim()).toBe('true');
  });

  it('works through npx', () => {
    const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';
    const r = crucible(['--help'], {}, npx, ['--no-install', 'crucible']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('Commands:');
  });
});
