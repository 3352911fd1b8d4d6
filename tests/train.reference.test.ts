// Precomputed reference log-probabilities (src/train/reference.ts) and NEFTune in the preference
// stages: the table itself; dpo and kto with full and freeze fine-tuning, where the initial weights
// are the reference; a table scored on the base giving exactly LoRA's adapter-off run (what a
// `ref_model` equal to the base must give); resume keeping the reference it started with.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { KtoExample } from '../src/data/processor';
import { dirFiles } from '../src/model/files-node';
import { Model } from '../src/model/model';
import { ReferenceTable, referenceRows, scoreReference } from '../src/train/reference';
import { Trainer, type LogRecord, type TrainOptions } from '../src/train/trainer';
import type { TrainExample } from '../src/train/trainer';
import { makeRng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { prefOptions, prefTrainOptions, randomPairs } from './helpers/preference';
import { memoryStore } from './helpers/run-store';

const FIXTURE = join(import.meta.dirname, 'fixtures/models/llama_dpo');

/** A fresh copy of the fixture: full and freeze runs change its weights. */
const freshModel = async (): Promise<Model> => Model.load(await testGpu(), dirFiles(FIXTURE));

async function run(model: Model, train: readonly TrainExample[], evalSet: readonly TrainExample[], opts: TrainOptions): Promise<LogRecord[]> {
  const t = await Trainer.create(model, train, evalSet, opts, 0);
  const logs: LogRecord[] = [];
  await t.run(null, { onLog: (r) => logs.push(r) });
  t.release();
  t.adapter?.release();
  return logs;
}

const losses = (logs: LogRecord[]) => logs.filter((r) => r.loss !== undefined).map((r) => r.loss!);

describe('reference table', () => {
  it('keys a sequence by its tokens and labels, round-trips through JSON, and says what is missing or broken', () => {
    const t = new ReferenceTable();
    const a = { input_ids: [5, 6, 7], labels: [-100, 6, 7] };
    t.set(a, -3.25);
    expect(t.get({ input_ids: [5, 6, 7], labels: [-100, 6, 7] })).toBe(-3.25);
    expect(t.has({ input_ids: [5, 6, 7], labels: [-100, -100, 7] })).toBe(false); // other labels, other sequence
    expect(t.has({ input_ids: [5, 6, 8], labels: [-100, 6, 8] })).toBe(false);
    expect(() => t.get({ input_ids: [1, 2], labels: [1, 2] })).toThrow(/no reference log-probability for a 2-token sequence/);
    const back = ReferenceTable.fromJson(t.toJson(), 'x.json');
    expect(back.get(a)).toBe(-3.25);
    expect(back.size).toBe(1);
    expect(() => ReferenceTable.fromJson('{"format":"crucible-reference-logps","logps":{"k":null}}', 'r.json')).toThrow(/r.json: entry k is null/);
    expect(() => ReferenceTable.fromJson('{', 'r.json')).toThrow(/^r\.json, line 1: not valid JSON: /);
    expect(() => ReferenceTable.fromJson('{}', 'r.json')).toThrow(/not a reference log-probability table/);
  });

  it('referenceRows lists chosen and rejected of pairs, targets and KL rows of KTO examples', () => {
    const rng = makeRng();
    const pairs = randomPairs(rng, 2, 50);
    expect(referenceRows(pairs)).toEqual([pairs[0]!.chosen, pairs[0]!.rejected, pairs[1]!.chosen, pairs[1]!.rejected]);
    const kto: KtoExample = { input_ids: [1, 2], labels: [-100, 2], kl_input_ids: [1, 3], kl_labels: [-100, 3], kto_tag: true };
    expect(referenceRows([kto])).toEqual([{ input_ids: [1, 2], labels: [-100, 2] }, { input_ids: [1, 3], labels: [-100, 3] }]);
  });
});

describe('preference runs with a precomputed reference', () => {
  it('LoRA dpo: a table scored on the base gives the same run as switching the adapter off', async () => {
    const model = await freshModel();
    const rng = makeRng();
    const train = randomPairs(rng, 4, model.spec.vocab);
    const opts = prefTrainOptions({ maxSteps: 3, preference: prefOptions({ beta: 0.5 }) });
    const adapterOff = await run(model, train, [], opts);
    const table = new ReferenceTable();
    await scoreReference(model, referenceRows(train), table, { padId: 0, cutoffLen: 32, batchSize: 3 });
    expect(table.size).toBe(8);
    const precomputed = await run(model, train, [], { ...opts, referenceTable: table });
    expect(precomputed.map((r) => r['rewards/margins'])).toEqual(adapterOff.map((r) => r['rewards/margins']).map((m) => expect.closeTo(m!, 4)));
    const [a, b] = [losses(adapterOff), losses(precomputed)];
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!), `step ${i + 1} (SEED=${rng.seed})`).toBeLessThan(1e-4);
  });

  it('full dpo: the initial weights are the reference (step 1: loss ln 2, zero rewards), training wins pairs, a resumed run keeps the reference', async () => {
    const rng = makeRng();
    const model = await freshModel();
    const train = randomPairs(rng, 4, model.spec.vocab);
    const opts = prefTrainOptions({ finetuningType: 'full', learningRate: 2e-3, maxSteps: 4, saveSteps: 2, preference: prefOptions({ beta: 0.5 }) });
    const store = memoryStore();
    const t = await Trainer.create(model, train, [], opts, 0);
    const statuses: string[] = [];
    const logs: LogRecord[] = [];
    await t.run(store, { onLog: (r) => logs.push(r), onStatus: (m) => statuses.push(m) });
    t.release();
    expect(statuses).toEqual(['reference model: scoring 8 sequences with the initial weights']);
    expect(logs[0]!.loss).toBeCloseTo(Math.LN2, 4);
    expect(logs[0]!['rewards/chosen']).toBeCloseTo(0, 4);
    expect(logs.at(-1)!['rewards/margins']!, `SEED=${rng.seed}`).toBeGreaterThan(0);
    expect(logs.at(-1)!.loss!).toBeLessThan(Math.LN2);
    expect(store.files.has('checkpoint-2/reference_logps.json')).toBe(true);

    // a new process: the initial weights again, then the checkpoint's weights; the reference is the stored one
    const resumed = await Trainer.create(await freshModel(), train, [], opts, 0);
    await resumed.resume(store, 'checkpoint-2');
    const after: LogRecord[] = [];
    const again: string[] = [];
    await resumed.run(null, { onLog: (r) => after.push(r), onStatus: (m) => again.push(m) });
    resumed.release();
    expect(again).toEqual([]); // nothing re-scored with the moved weights
    expect(losses(after)).toEqual(losses(logs).slice(2).map((l) => expect.closeTo(l, 4)));
    // the pace is this process's: one step done here, one to go
    expect(after[0]!.current_steps).toBe(3);
    expect(after[0]!.remaining_time).toBeCloseTo(after[0]!.elapsed_time, 2);

    store.files.delete('checkpoint-2/reference_logps.json');
    const lost = await Trainer.create(await freshModel(), train, [], opts, 0);
    await expect(lost.resume(store, 'checkpoint-2')).rejects.toThrow(/checkpoint-2: no reference_logps.json/);
    lost.release();
  });

  it('freeze kto: the initial weights are the reference (step 1: zero rewards and KL), evaluation included', async () => {
    const rng = makeRng();
    const model = await freshModel();
    const pairs = randomPairs(rng, 4, model.spec.vocab);
    const kto: KtoExample[] = pairs.map((p, i) => ({
      ...p.chosen, kl_input_ids: pairs[(i + 1) % 4]!.rejected.input_ids, kl_labels: pairs[(i + 1) % 4]!.rejected.labels, kto_tag: i % 2 === 0,
    }));
    const logs = await run(model, kto, kto.slice(0, 2), prefTrainOptions({
      finetuningType: 'freeze', freezeTrainableLayers: 1, learningRate: 2e-3, maxSteps: 2, evalSteps: 2, batchSize: 4, preference: prefOptions({ stage: 'kto' }),
    }));
    expect(logs[0]!.kl).toBeCloseTo(0, 4);
    expect(logs[0]!['rewards/chosen']).toBeCloseTo(0, 4);
    expect(logs[0]!['rewards/rejected']).toBeCloseTo(0, 4);
    expect(logs[0]!.loss).toBeCloseTo(0.5, 4); // 1 - σ(0) for every example
    const ev = logs.find((r) => r.eval_loss !== undefined)!;
    expect(ev.eval_kl).toBeTypeOf('number');
    expect(ev.eval_loss!).toBeLessThan(0.5);
  });

  it('NEFTune with dpo: noisy training forwards (policy and adapter-off reference), clean evaluation, reproducible', async () => {
    const model = await freshModel();
    const rng = makeRng();
    const train = randomPairs(rng, 2, model.spec.vocab);
    // learning rate 0: the adapter stays at B = 0, so policy and reference differ only by their noise
    const opts = prefTrainOptions({ maxSteps: 2, learningRate: 0, evalSteps: 2, neftuneAlpha: 5, preference: prefOptions({ beta: 0.5 }) });
    const noisy = await run(model, train, train, opts);
    const trainLosses = losses(noisy);
    for (const l of trainLosses) expect(Math.abs(l - Math.LN2)).toBeGreaterThan(1e-4);
    expect(noisy.find((r) => r.eval_loss !== undefined)!.eval_loss).toBeCloseTo(Math.LN2, 4); // records keep 4 decimals
    expect(losses(await run(model, train, train, opts))).toEqual(trainLosses);
    expect(losses(await run(model, train, train, { ...opts, seed: 8 }))).not.toEqual(trainLosses);
  });
});
