// bin/crucible.js as users run it: plain node (no build step), and through npx.

import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

  it('Ctrl-C during training stops within a step with a checkpoint of the last finished step; the rerun continues after it', async () => {
    const out = mkdtempSync(join(tmpdir(), 'sigint-'));
    const args = ['train', `model_name_or_path=${join(ROOT, 'tests/fixtures/tiny-chat')}`, 'stage=sft', 'do_train=true', 'finetuning_type=lora', 'lora_rank=4',
      'dataset=identity', `dataset_dir=${join(ROOT, 'tests/fixtures/tiny-chat-data')}`, 'cutoff_len=48', 'per_device_train_batch_size=2', 'max_steps=200',
      'logging_steps=100', 'save_steps=1000', `output_dir=${out}`];
    const child = spawn(process.execPath, ['bin/crucible.js', ...args], { cwd: ROOT, env: { ...process.env, CRUCIBLE_DEBUG: '' } });
    let err = '';
    let interruptedAt = 0;
    let scheduled = false;
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      // training runs once the data is built: interrupt a moment into the steps, once (a second
      // Ctrl-C would quit without the checkpoint)
      if (!scheduled && /^data: /m.test(err)) {
        scheduled = true;
        setTimeout(() => { interruptedAt = Date.now(); child.kill('SIGINT'); }, 3000);
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    const stoppedWithin = Date.now() - interruptedAt;
    expect(code, err).toBe(130);
    // stopping early is proven by the step count below; this bound only catches a hang (the
    // checkpoint write and exit take seconds on a loaded 2-core machine)
    expect(stoppedWithin, 'ms from Ctrl-C to exit').toBeLessThan(60_000);
    const m = /interrupted at step (\d+)\/200; checkpoint (\S+): rerun the same command to resume/.exec(err);
    expect(m, err).not.toBeNull();
    const step = Number(m![1]);
    expect(step).toBeGreaterThan(0);
    expect(step).toBeLessThan(200);
    expect(m![2]).toBe(join(out, `checkpoint-${step}`));
    expect(existsSync(join(out, `checkpoint-${step}`, 'trainer_state.json'))).toBe(true);
    // the rerun resumes there (max_steps=step+1: one more step) and logs each step once
    const r = crucible([...args.filter((a) => !a.startsWith('max_steps=')), `max_steps=${step + 1}`]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain(`resuming from checkpoint-${step}`);
    const logged = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).current_steps);
    expect(logged).toEqual([step + 1]);
  }, 180_000);
});
