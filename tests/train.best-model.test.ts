// load_best_model_at_end and early_stopping_steps through `crucible train` on the tiny model.
// greater_is_better: true on the eval loss makes a falling loss "worse", so the first evaluation
// is the best and the run stops after `patience` evaluations without improvement: the best is
// then an earlier checkpoint than the last, and the test checks it is the model left in
// output_dir. The expected best and stop step are computed from the run's own log with HF's rule.
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { runTraining } from '../src/engine/train-node';
import { openSafetensors, readF32 } from '../src/model/safetensors';
import type { LogRecord } from '../src/train/trainer';
import { testGpu } from './helpers/gpu';
import { memoryStore } from './helpers/run-store';
import { Session } from '../src/engine/session';
import { dirFiles } from '../src/model/files-node';
import { trainOptionsFromConfig } from '../src/engine/options';
import type { TokenExample } from '../src/train/batches';
import type { TrainOptions } from '../src/train/trainer';

const MODEL = join(import.meta.dirname, 'fixtures/tiny-chat');
const DATA = join(import.meta.dirname, 'fixtures/tiny-chat-data');
const MAX_STEPS = 12;
const PATIENCE = 2;

async function tensors(path: string): Promise<Map<string, Float32Array>> {
  const bytes = new Uint8Array(readFileSync(path));
  const file = await openSafetensors({ name: path, size: bytes.length, read: async (o, n) => bytes.subarray(o, o + n) });
  const out = new Map<string, Float32Array>();
  for (const name of file.tensors.keys()) out.set(name, await readF32(file, name));
  return out;
}

const maxDiff = (a: Map<string, Float32Array>, b: Map<string, Float32Array>) => {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let d = 0;
  for (const [k, v] of a) v.forEach((x, i) => (d = Math.max(d, Math.abs(x - b.get(k)![i]!))));
  return d;
};

describe('best model and early stopping in crucible train', () => {
  it('stops after early_stopping_steps evaluations without improvement and leaves the best checkpoint\'s adapter', async () => {
    const out = mkdtempSync(join(tmpdir(), 'best-model-'));
    const status: string[] = [];
    const { config } = configFromObject({
      model_name_or_path: MODEL, stage: 'sft', do_train: true, finetuning_type: 'lora', lora_rank: 4, lora_target: 'all',
      dataset: 'identity', dataset_dir: DATA, cutoff_len: 48, output_dir: out, per_device_train_batch_size: 2, val_size: 0.25,
      learning_rate: 1e-2, max_steps: MAX_STEPS, logging_steps: 1, seed: 11,
      eval_strategy: 'steps', eval_steps: 2, save_steps: 2, save_total_limit: 1, eval_on_start: true,
      load_best_model_at_end: true, metric_for_best_model: 'loss', greater_is_better: true, early_stopping_steps: PATIENCE,
    });
    const result = await runTraining(config, { onStatus: (m) => status.push(m) }, { gpu: await testGpu() });

    const log: LogRecord[] = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const evals = log.filter((r) => r.eval_loss !== undefined);
    // eval_on_start: a record at step 0, not a candidate
    expect(evals[0]!.current_steps).toBe(0);
    // HF's rule on the logged values: strictly greater is better; the count resets on improvement
    let best: LogRecord | null = null;
    let counter = 0;
    let stop = MAX_STEPS;
    for (const r of evals.slice(1)) {
      counter = best === null || r.eval_loss! > best.eval_loss! ? 0 : counter + 1;
      if (best === null || r.eval_loss! > best.eval_loss!) best = r;
      if (counter >= PATIENCE) {
        stop = r.current_steps;
        break;
      }
    }
    expect(evals.map((r) => r.current_steps)).toEqual([0, ...Array.from({ length: stop / 2 }, (_, i) => 2 * (i + 1))]);
    expect(stop, 'the eval loss fell, so the run stops early').toBeLessThan(MAX_STEPS);
    expect(Math.max(...log.map((r) => r.current_steps))).toBe(stop);
    expect(result).toMatchObject({ interrupted: false, globalStep: stop, bestCheckpoint: join(out, `checkpoint-${best!.current_steps}`) });
    expect(result.stopped).toMatch(new RegExp(`^early stopping at step ${stop}: eval_loss has not improved on ${best!.eval_loss} \\(step ${best!.current_steps}\\) for 2 evaluations \\(early_stopping_steps: 2\\)$`));
    expect(status).toContain(result.stopped);
    expect(status.some((m) => m.startsWith(`loading the best model from checkpoint-${best!.current_steps}`))).toBe(true);

    // save_total_limit 1 keeps the best and the newest
    expect(readdirSync(out).filter((f) => f.startsWith('checkpoint-')).sort()).toEqual([`checkpoint-${best!.current_steps}`, `checkpoint-${stop}`].sort());

    // the adapter in output_dir is the best checkpoint's, not the last one's
    const final = await tensors(join(out, 'adapter_model.safetensors'));
    expect(maxDiff(final, await tensors(join(out, `checkpoint-${best!.current_steps}`, 'adapter_model.safetensors')))).toBe(0);
    expect(maxDiff(final, await tensors(join(out, `checkpoint-${stop}`, 'adapter_model.safetensors')))).toBeGreaterThan(1e-4);

    // trainer_state.json (output_dir and checkpoints) with HF's fields
    const state = JSON.parse(readFileSync(join(out, 'trainer_state.json'), 'utf8'));
    expect(state).toMatchObject({
      global_step: stop, max_steps: MAX_STEPS, best_metric: best!.eval_loss, best_global_step: best!.current_steps,
      best_model_checkpoint: `checkpoint-${best!.current_steps}`, eval_steps: 2, save_steps: 2, logging_steps: 1, train_batch_size: 2,
      stateful_callbacks: { EarlyStoppingCallback: { args: { early_stopping_patience: 2, early_stopping_threshold: 0 }, attributes: { early_stopping_patience_counter: 2 } } },
    });
    expect(state.log_history).toHaveLength(log.length);
    const bestState = JSON.parse(readFileSync(join(out, `checkpoint-${best!.current_steps}`, 'trainer_state.json'), 'utf8'));
    expect(bestState).toMatchObject({ global_step: best!.current_steps, best_global_step: best!.current_steps, best_model_checkpoint: `checkpoint-${best!.current_steps}` });

    // the final model's evaluation is the best checkpoint's
    const evalResults = JSON.parse(readFileSync(join(out, 'eval_results.json'), 'utf8'));
    expect(evalResults).toEqual({ epoch: best!.epoch, eval_loss: best!.eval_loss });
    expect(JSON.parse(readFileSync(join(out, 'all_results.json'), 'utf8'))).toEqual({ eval_loss: best!.eval_loss, epoch: best!.epoch, train_loss: result.trainLoss });
    expect(result.evalLoss).toBe(best!.eval_loss);
    expect(existsSync(join(out, 'train_results.json'))).toBe(true);

    // a rerun does not train on after an early stop
    const again = await runTraining(config, {}, { gpu: await testGpu() });
    expect(again).toMatchObject({ interrupted: false, globalStep: stop });
    expect(readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').trim().split('\n')).toHaveLength(log.length);
  }, 240_000);

  it('a resumed run keeps the best model and the early-stopping count of its checkpoint', async () => {
    const session = await Session.open(await testGpu(), dirFiles(MODEL));
    const { config: c } = configFromObject({ stage: 'sft', finetuning_type: 'lora', lora_rank: 4, lora_target: 'all', learning_rate: 1e-2, max_steps: 10, logging_steps: 1, save_steps: 1, seed: 5, per_device_train_batch_size: 2 });
    const opts: TrainOptions = { ...trainOptionsFromConfig(c), evalSteps: 1, bestModel: { metric: 'eval_loss', greaterIsBetter: true, loadAtEnd: true, patience: 3 } };
    const rows = (n: number, k: number): TokenExample[] => Array.from({ length: n }, (_, i) => {
      const ids = Array.from({ length: 12 }, (_, j) => ((i + k) * 7 + j * 3) % 200 + 5);
      return { input_ids: ids, labels: ids.slice() };
    });
    const [train, evalSet] = [rows(8, 0), rows(2, 50)];
    const whole = memoryStore();
    const w = (await session.train(opts, train, evalSet, whole)).state;
    expect(w.stopped, 'the eval loss fell, so the run stops early').not.toBeNull();
    expect(w.global_step).toBe(w.best.best_global_step! + 3);
    // stopped one evaluation after the best, resumed there: the count (1) comes back from trainer_state.json
    const store = memoryStore();
    const stop = new AbortController();
    const at = w.best.best_global_step! + 1;
    await session.train(opts, train, evalSet, store, { signal: stop.signal, onCheckpoint: (_d, step) => void (step === at && stop.abort()) });
    const saved = JSON.parse(store.files.get(`checkpoint-${at}/trainer_state.json`) as string);
    expect(saved.stateful_callbacks.EarlyStoppingCallback.attributes.early_stopping_patience_counter).toBe(1);
    const r = (await session.train(opts, train, evalSet, store, { resumeFrom: `checkpoint-${at}` })).state;
    expect([r.global_step, r.best.best_global_step, r.best.best_metric, r.stopped]).toEqual([w.global_step, w.best.best_global_step, w.best.best_metric, w.stopped]);
    session.release();
  }, 120_000);
});
