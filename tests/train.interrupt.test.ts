// An interrupt never loses a finished step: whenever the abort arrives (during a step, a log, an
// evaluation or a save, with logging_steps 1, 7 and 100), the run ends with a checkpoint of its
// last finished step, and the rerun's trainer_log.jsonl equals an uninterrupted run's: the same
// steps once each, the same losses.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { runTraining as runWithOwnGpu } from '../src/engine/train-node';
import type { TrainRunHooks } from '../src/engine/jobs';
import type { RunStore } from '../src/train/store';
import type { LogRecord } from '../src/train/trainer';
import { Session } from '../src/engine/session';
import { dirFiles } from '../src/model/files-node';
import { testGpu } from './helpers/gpu';
import { memoryStore } from './helpers/run-store';
import { trainOptionsFromConfig } from '../src/engine/options';
import type { TokenExample } from '../src/train/batches';

const MODEL = join(import.meta.dirname, 'fixtures/tiny-chat');
const DATA = join(import.meta.dirname, 'fixtures/tiny-chat-data');
const STEPS = 6;

/** Every run on the file's one device: pipelines compile once. */
const runTraining = async (c: Parameters<typeof runWithOwnGpu>[0], hooks: TrainRunHooks) => runWithOwnGpu(c, hooks, { gpu: await testGpu() });

const runConfig = (out: string, loggingSteps: number) =>
  configFromObject({
    model_name_or_path: MODEL, stage: 'sft', do_train: true, finetuning_type: 'lora', lora_rank: 4, lora_target: 'all',
    dataset: 'identity', dataset_dir: DATA, cutoff_len: 48, output_dir: out, per_device_train_batch_size: 2, val_size: 0.25,
    eval_strategy: 'steps', eval_steps: 3, learning_rate: 1e-2, max_steps: STEPS, logging_steps: loggingSteps, save_steps: 4, seed: 11,
  }).config;

const logFile = (out: string): LogRecord[] => readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));

/** The fields a resumed run must reproduce (times and throughput differ by nature). */
const curve = (log: readonly LogRecord[]) => log.map((r) => ({ step: r.current_steps, loss: r.loss, eval_loss: r.eval_loss, grad_norm: r.grad_norm, lr: r.lr, epoch: r.epoch }));

function expectSameCurve(got: readonly LogRecord[], want: readonly LogRecord[], what: string): void {
  expect(got.map((r) => r.current_steps), `${what}: logged steps`).toEqual(want.map((r) => r.current_steps));
  const g = curve(got), w = curve(want);
  g.forEach((r, i) => {
    for (const k of ['loss', 'eval_loss', 'grad_norm', 'lr', 'epoch'] as const) {
      if (w[i]![k] === undefined) expect(r[k], `${what}: step ${r.step} ${k}`).toBeUndefined();
      else expect(r[k], `${what}: step ${r.step} ${k}`).toBeCloseTo(w[i]![k]!, 3);
    }
  });
}

/** Where the abort is sent from. */
type Point = 'during a log' | 'during an evaluation' | 'after a save' | 'during a step';

function interrupter(point: Point, atStep: number, stop: AbortController): TrainRunHooks {
  switch (point) {
    case 'during a log':
      return { onLog: (r) => void (r.loss !== undefined && r.current_steps === atStep && stop.abort()) };
    case 'during an evaluation':
      return { onLog: (r) => void (r.eval_loss !== undefined && r.current_steps === atStep && stop.abort()) };
    case 'after a save':
      return { onCheckpoint: (_dir, step) => void (step === atStep && stop.abort()) };
    case 'during a step':
      // a random moment once training runs: between logs, inside a step's encoding or its GPU wait
      return { onStatus: (m) => void (m.startsWith('data:') && setTimeout(() => stop.abort(), atStep)) };
  }
}

describe('interrupting crucible train', () => {
  const baselines = new Map<number, LogRecord[]>();
  const baseline = async (loggingSteps: number) => {
    if (!baselines.has(loggingSteps)) {
      const out = mkdtempSync(join(tmpdir(), 'interrupt-base-'));
      await runTraining(runConfig(out, loggingSteps), {});
      baselines.set(loggingSteps, logFile(out));
    }
    return baselines.get(loggingSteps)!;
  };

  const randomMs = () => 200 + Math.floor(Math.random() * 2000);
  const cases: Array<[number, Point, number]> = [
    [1, 'during a log', 5],
    [1, 'during an evaluation', 3],
    [7, 'after a save', 4],
    [1, 'during a step', randomMs()],
    [100, 'during a step', randomMs()],
  ];

  it.each(cases)('logging_steps %i, abort %s (at %i): checkpoint of the last step, resumed log = uninterrupted log', async (loggingSteps, point, at) => {
    const want = await baseline(loggingSteps);
    const out = mkdtempSync(join(tmpdir(), 'interrupt-'));
    const stop = new AbortController();
    const first = await runTraining(runConfig(out, loggingSteps), { signal: stop.signal, ...interrupter(point, at, stop) });
    const what = `logging_steps ${loggingSteps}, ${point} at ${at}, stopped at step ${first.globalStep}`;
    expect(first.interrupted || first.globalStep === STEPS, what).toBe(true);
    if (first.globalStep > 0 && first.interrupted) {
      expect(first.checkpoint, what).toBe(join(out, `checkpoint-${first.globalStep}`));
      expect(existsSync(join(out, `checkpoint-${first.globalStep}`, 'trainer_state.json')), what).toBe(true);
    }
    if (point !== 'during a step') expect(first.globalStep, what).toBe(at);
    const second = await runTraining(runConfig(out, loggingSteps), {});
    expect(second).toMatchObject({ interrupted: false, globalStep: STEPS });
    expectSameCurve(logFile(out), want, what);
  });

  it('an abort before the first step saves nothing and says so', async () => {
    const out = mkdtempSync(join(tmpdir(), 'interrupt-early-'));
    const stop = new AbortController();
    stop.abort();
    const r = await runTraining(runConfig(out, 1), { signal: stop.signal });
    expect(r).toMatchObject({ interrupted: true, globalStep: 0, checkpoint: null });
    expect(existsSync(join(out, 'checkpoint-1'))).toBe(false);
    expect(logFile(out)).toEqual([]);
  });
});

describe('interrupting the trainer while it saves', () => {
  it('an abort that arrives while a scheduled checkpoint is written ends with that checkpoint, and the next step is not lost', async () => {
    const gpu = await testGpu();
    const session = await Session.open(gpu, dirFiles(MODEL));
    const { config: c } = configFromObject({ stage: 'sft', finetuning_type: 'lora', lora_rank: 4, lora_target: 'all', learning_rate: 1e-2, max_steps: 6, logging_steps: 2, save_steps: 3, seed: 3, per_device_train_batch_size: 2 });
    const rows: TokenExample[] = Array.from({ length: 8 }, (_, i) => {
      const ids = Array.from({ length: 12 }, (_, j) => (i * 7 + j * 3) % 200 + 5);
      return { input_ids: ids, labels: ids.slice() };
    });
    const stop = new AbortController();
    const base = memoryStore();
    // the abort arrives while checkpoint-3's optimizer file is written (an async write in flight)
    const store: RunStore = { ...base, write: async (p, d) => { if (p === 'checkpoint-3/optimizer.safetensors') stop.abort(); await base.write(p, d); } };
    const logs: LogRecord[] = [];
    const first = await session.train(trainOptionsFromConfig(c), rows, [], store, { signal: stop.signal, onLog: (r) => logs.push(r) });
    expect(first.state.global_step).toBe(3);
    expect(base.files.has('checkpoint-3/trainer_state.json')).toBe(true);
    // logging_steps 2 logged step 2; step 3 is kept in the checkpoint as the unlogged interval
    const state = JSON.parse(base.files.get('checkpoint-3/trainer_state.json') as string);
    expect(state.log_interval).toMatchObject({ steps: 1 });
    const resumed: LogRecord[] = [];
    await session.train(trainOptionsFromConfig(c), rows, [], base, { resumeFrom: 'checkpoint-3', onLog: (r) => resumed.push(r) });
    const whole: LogRecord[] = [];
    await session.train(trainOptionsFromConfig(c), rows, [], null, { onLog: (r) => whole.push(r) });
    expectSameCurve([...logs, ...resumed], whole, 'resumed from the checkpoint written during the abort');
    session.release();
  });
});
