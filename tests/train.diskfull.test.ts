// A full disk (ENOSPC injected into node:fs/promises) during a checkpoint, the log or the final
// save: a clear error naming the file and the space, the last complete checkpoint intact, no
// temporary or half-written files left, and a rerun resumes from that checkpoint.
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';

/** Writes to a path this predicate accepts fail as on a full disk. */
let diskFullFor: ((path: string) => boolean) | null = null;

vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  const full = (path: string) => Object.assign(new Error(`ENOSPC: no space left on device, write`), { code: 'ENOSPC', errno: -28, syscall: 'write' });
  const open: typeof fs.open = async (path, flags, mode) => {
    const handle = await fs.open(path, flags, mode);
    const p = String(path);
    if (!diskFullFor?.(p)) return handle;
    return Object.assign(Object.create(Object.getPrototypeOf(handle)), handle, {
      writeFile: async () => { throw full(p); },
      sync: () => handle.sync(),
      close: () => handle.close(),
    });
  };
  return { ...fs, default: { ...fs, open }, open };
});

const { configFromObject } = await import('../src/config');
const { runTraining } = await import('../src/engine/train-node');
const { testGpu } = await import('./helpers/gpu');

const MODEL = join(import.meta.dirname, 'fixtures/tiny-chat');
const DATA = join(import.meta.dirname, 'fixtures/tiny-chat-data');
const cfg = (out: string) =>
  configFromObject({
    model_name_or_path: MODEL, stage: 'sft', do_train: true, finetuning_type: 'lora', lora_rank: 4, lora_target: 'all',
    dataset: 'identity', dataset_dir: DATA, cutoff_len: 48, output_dir: out, per_device_train_batch_size: 2,
    learning_rate: 1e-2, max_steps: 4, logging_steps: 1, save_steps: 2, seed: 5,
  }).config;

/** Every file under `dir`, relative. */
function tree(dir: string, prefix = ''): string[] {
  return readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? tree(join(dir, n), `${prefix}${n}/`) : [`${prefix}${n}`]));
}

describe('a full disk', () => {
  it('during a checkpoint: names the file and the space; checkpoint-2 intact, no temporary files; the rerun resumes from it', async () => {
    const gpu = await testGpu();
    const out = mkdtempSync(join(tmpdir(), 'diskfull-'));
    diskFullFor = (p) => p.includes('checkpoint-4') && p.includes('optimizer.safetensors');
    const err = await runTraining(cfg(out), {}, { gpu }).then(() => null, (e: Error) => e);
    diskFullFor = null;
    expect(err?.name).toBe('StorageError');
    expect(err?.message).toMatch(new RegExp(`^no space left on the disk writing ${join(out, 'checkpoint-4', 'optimizer.safetensors')} \\([\\d.]+ [KMG]?i?B needed, [\\d.]+ [KMGT]?i?B free\\); free some space and rerun`));
    const files = tree(out);
    expect(files.filter((f) => f.includes('.tmp-'))).toEqual([]);
    expect(files).toContain('checkpoint-2/trainer_state.json');
    expect(files).not.toContain('checkpoint-4/trainer_state.json');
    expect(files).not.toContain('train_results.json');

    const again = await runTraining(cfg(out), {}, { gpu });
    expect(again).toMatchObject({ interrupted: false, globalStep: 4 });
    const steps = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).current_steps);
    expect(steps).toEqual([1, 2, 3, 4]);
  });

  it('while writing the log or the final adapter: the same clear error, no half-written file under its final name', async () => {
    const gpu = await testGpu();
    for (const target of ['trainer_log.jsonl', 'adapter_model.safetensors']) {
      const out = mkdtempSync(join(tmpdir(), 'diskfull-'));
      // the log is appended in place; the adapter is written to a temporary file first
      diskFullFor = (p) => (target === 'trainer_log.jsonl' ? p === join(out, target) : p.startsWith(join(out, target)));
      const err = await runTraining(cfg(out), {}, { gpu }).then(() => null, (e: Error) => e);
      diskFullFor = null;
      expect(err?.message, target).toMatch(new RegExp(`^no space left on the disk writing ${join(out, target)}`));
      expect(tree(out).filter((f) => f.includes('.tmp-')), target).toEqual([]);
      expect(existsSync(join(out, 'checkpoint-4', 'trainer_state.json')), target).toBe(true);
      if (target === 'adapter_model.safetensors') expect(existsSync(join(out, target))).toBe(false);
    }
  });
});
