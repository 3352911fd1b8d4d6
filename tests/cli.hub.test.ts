// `crucible train` with model_name_or_path: org/name from a (mock) Hub: survives a cut
// connection, refuses a corrupted file with a message that says so, and runs offline from the
// Hugging Face cache afterwards.
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { runTraining } from '../src/engine/train-node';
import { startMockHub, type MockHub } from './mockhub/server';

const MODEL = join(import.meta.dirname, 'fixtures/tiny-chat');
const DATA = join(import.meta.dirname, 'fixtures/tiny-chat-data');
const files = Object.fromEntries(readdirSync(MODEL).map((f) => [f, new Uint8Array(readFileSync(join(MODEL, f)))]));
let hub: MockHub;

const run = (id: string) =>
  runTraining(configFromObject({
    model_name_or_path: id, stage: 'sft', finetuning_type: 'lora', lora_rank: 2, dataset: 'identity', dataset_dir: DATA,
    cutoff_len: 32, per_device_train_batch_size: 2, max_steps: 1, output_dir: mkdtempSync(join(tmpdir(), 'hubrun-')),
  }).config, {});

describe('crucible train against the Hub', () => {
  beforeAll(async () => {
    hub = await startMockHub({ repos: { 'org/tiny': { files }, 'org/broken': { files } } });
    process.env.HF_ENDPOINT = hub.url;
    process.env.HF_HOME = mkdtempSync(join(tmpdir(), 'hfhome-'));
  });
  afterAll(async () => {
    delete process.env.HF_HUB_OFFLINE;
    await hub.close();
  });

  it('downloads through a cut connection (resumed with Range) and trains', async () => {
    hub.setFaults({ cut: { file: 'model.safetensors', afterBytes: 20_000 } });
    const r = await run('org/tiny');
    expect(r.globalStep).toBe(1);
    const weights = hub.requests.filter((q) => q.file === 'model.safetensors' && q.bytes > 0);
    expect(weights.some((q) => q.fault)).toBe(true);
    expect(weights.some((q) => q.range?.startsWith('bytes='))).toBe(true);
  });

  it('refuses a corrupted file with a message that says so, leaving nothing that looks complete', async () => {
    hub.setFaults({ corrupt: { file: 'model.safetensors', times: Infinity } });
    await expect(run('org/broken')).rejects.toThrow(/sha256 mismatch.*corrupted/);
    hub.setFaults({});
    const snapshots = join(process.env.HF_HOME!, 'hub/models--org--broken/snapshots');
    const complete = existsSync(snapshots) ? readdirSync(snapshots).filter((rev) => existsSync(join(snapshots, rev, 'model.safetensors'))) : [];
    expect(complete).toEqual([]);
  });

  it('runs offline from the cache afterwards', async () => {
    process.env.HF_HUB_OFFLINE = '1';
    const before = hub.requests.length;
    const r = await run('org/tiny');
    expect(r.globalStep).toBe(1);
    expect(hub.requests.length).toBe(before);
    await expect(run('org/never-downloaded')).rejects.toThrow(/offline/i);
  });
});
