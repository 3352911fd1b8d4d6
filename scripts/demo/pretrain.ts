// Pre-trains the demo model with Crucible's own engine: stage pt (the corpus concatenated, with
// eos after every document, cut into cutoff_len blocks; every token learned), full fine-tuning of
// every weight from the initialised checkpoint, AdamW with warmup and cosine decay. Checkpoints go
// to the run folder, and a rerun resumes from the newest one. At the end the whole model is written
// as a Hugging Face checkpoint folder (model.safetensors with every tensor, config, tokenizer).
//
//   node --import ./bin/register.js scripts/demo/pretrain.ts [--steps=N] [--init=DIR] [--run=DIR]
//     [--out=public/demo/model] [--lr=3e-3] [--batch=8] [--cutoff=128] [--save-steps=50]

import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildDataset } from '../../src/data';
import { nodeFileAccess } from '../../src/data/node';
import { Session } from '../../src/engine/session';
import { nodeGpu } from '../../src/gpu/node';
import { dirFiles } from '../../src/model/files-node';
import { saveModelSafetensors } from '../../src/export/save';
import { folderStore } from '../../src/train/store-node';
import type { TrainOptions } from '../../src/train/trainer';
import { arg, MODEL_DIR, ROOT, WORK_DIR } from './common';
import { printSamples } from './samples';

export const PRETRAIN_DEFAULTS = {
  steps: 480,
  lr: 4e-3,
  batch: 4,
  cutoff: 128,
  /** Held-out documents of the corpus, for eval_loss. */
  valSize: 10,
};

function latestCheckpoint(run: string): string | undefined {
  if (!existsSync(run)) return undefined;
  const steps = readdirSync(run)
    .map((d) => /^checkpoint-(\d+)$/.exec(d))
    .filter((m): m is RegExpExecArray => !!m && existsSync(join(run, m[0], 'trainer_state.json')))
    .map((m) => Number(m[1]));
  return steps.length ? `checkpoint-${Math.max(...steps)}` : undefined;
}

async function main() {
  const init = arg('init', join(WORK_DIR, 'init'));
  const run = arg('run', join(WORK_DIR, 'run'));
  const out = arg('out', MODEL_DIR);
  const num = (k: string, d: number) => Number(arg(k, String(d)));
  const steps = num('steps', PRETRAIN_DEFAULTS.steps);
  const cutoff = num('cutoff', PRETRAIN_DEFAULTS.cutoff);
  const batch = num('batch', PRETRAIN_DEFAULTS.batch);

  const gpu = await nodeGpu();
  const session = await Session.open(gpu, dirFiles(init));
  const data = await buildDataset(
    { stage: 'pt', dataset: 'c4_demo', dataset_dir: join(ROOT, 'scripts/demo'), cutoff_len: cutoff, val_size: PRETRAIN_DEFAULTS.valSize, seed: 42 },
    { tokenizer: session.tokenizer, ...nodeFileAccess() },
  );
  const s = data.stats;
  console.log(`data: ${s.train.examples} train blocks (${s.train.tokens} tokens), ${s.eval.examples} eval blocks of ${s.cutoffLen} tokens`);
  const epochs = (steps * batch) / data.train.length;
  console.log(`pretrain: ${steps} steps x ${batch} x ${cutoff} tokens = ${((steps * batch * cutoff) / 1e6).toFixed(2)} M tokens (${epochs.toFixed(1)} epochs)`);

  const opts: TrainOptions = {
    finetuningType: 'full',
    learningRate: num('lr', PRETRAIN_DEFAULTS.lr),
    scheduler: 'cosine',
    warmupSteps: 0,
    warmupRatio: 0.05,
    epochs: 0,
    maxSteps: steps,
    batchSize: batch,
    gradAccum: 1,
    maxGradNorm: 1.0,
    weightDecay: 0.01,
    beta1: 0.9,
    beta2: 0.95,
    eps: 1e-8,
    neftuneAlpha: 0,
    seed: 42,
    loggingSteps: num('logging-steps', 10),
    saveSteps: num('save-steps', 50),
    evalSteps: num('eval-steps', 100),
    cutoffLen: cutoff,
    recompute: false,
  };
  mkdirSync(run, { recursive: true });
  const resumeFrom = latestCheckpoint(run);
  if (resumeFrom) console.log(`resuming from ${join(run, resumeFrom)}`);
  const logFile = join(run, 'trainer_log.jsonl');
  const t0 = performance.now();
  await session.train(opts, data.train, data.eval, folderStore(run), {
    ...(resumeFrom ? { resumeFrom } : {}),
    onLog: (r) => {
      appendFileSync(logFile, JSON.stringify(r) + '\n');
      const what = r.loss !== undefined ? `loss ${r.loss.toFixed(4)}  grad_norm ${r.grad_norm?.toFixed(3)}` : `eval_loss ${r.eval_loss?.toFixed(4)}`;
      console.log(`step ${r.current_steps}/${r.total_steps}  ${what}  lr ${r.lr.toExponential(2)}  epoch ${r.epoch.toFixed(2)}  ${r.tokens_per_second} tok/s  ${r.elapsed_time.toFixed(0)} s elapsed, ${r.remaining_time.toFixed(0)} s left`);
    },
    onCheckpoint: (dir) => console.log(`saved ${join(run, dir)}`),
  });
  console.log(`pretraining took ${((performance.now() - t0) / 1000).toFixed(0)} s`);

  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'model.safetensors'), await saveModelSafetensors(session.model));
  for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json']) {
    if (join(init, f) !== join(out, f)) copyFileSync(join(init, f), join(out, f));
  }
  console.log(`wrote ${out}`);
  await printSamples(session, 40);
  session.release();
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
