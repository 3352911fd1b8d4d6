// The demo SFT check: a short LoRA run on the demo identity dataset changes the demo model's
// answers. Prints the answers before, the loss curve, and the answers after (adapter on, and off
// for one question, to show the base is untouched).
//
//   node --import ./bin/register.js scripts/demo/check-sft.ts [--model=public/demo/model] [--steps=30]
//     [--lr=1e-2] [--save=DIR (writes the adapter)]

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildDataset } from '../../src/data';
import { nodeFileAccess } from '../../src/data/node';
import { Session } from '../../src/engine/session';
import { nodeGpu } from '../../src/gpu/node';
import { dirFiles } from '../../src/model/files-node';
import type { TrainOptions } from '../../src/train/trainer';
import { arg, DATA_DIR, MODEL_DIR } from './common';
import { chatAnswer } from './samples';

export const SFT_QUESTIONS = ['Who are you?', 'What is your name?', 'Who made you?'];

/** The demo LoRA recipe (also what the app's demo preset should use). */
export function demoLoraOptions(steps: number, lr: number): TrainOptions {
  return {
    finetuningType: 'lora',
    lora: { rank: 8, alpha: 16, targets: 'all', dropout: 0 },
    learningRate: lr,
    scheduler: 'cosine',
    warmupSteps: 0,
    warmupRatio: 0,
    epochs: 0,
    maxSteps: steps,
    batchSize: 8,
    gradAccum: 1,
    maxGradNorm: 1.0,
    weightDecay: 0,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    neftuneAlpha: 0,
    seed: 42,
    loggingSteps: 1,
    saveSteps: 0,
    evalSteps: 0,
    cutoffLen: 64,
    recompute: false,
  };
}

async function answers(session: Session, useAdapter: boolean, questions = SFT_QUESTIONS): Promise<string[]> {
  const out: string[] = [];
  for (const q of questions) out.push(await chatAnswer(session, q, { maxNewTokens: 24, useAdapter }));
  return out;
}

async function main() {
  const steps = Number(arg('steps', '30'));
  const lr = Number(arg('lr', '1e-2'));
  const gpu = await nodeGpu();
  const session = await Session.open(gpu, dirFiles(arg('model', MODEL_DIR)));
  const before = await answers(session, true);
  SFT_QUESTIONS.forEach((q, i) => console.log(`before  ${q} -> ${JSON.stringify(before[i])}`));

  // template unset: the model's own chat_template (ChatML) formats the conversations
  const data = await buildDataset(
    { stage: 'sft', dataset: 'identity', dataset_dir: DATA_DIR, cutoff_len: 64, seed: 42 },
    { tokenizer: session.tokenizer, ...nodeFileAccess() },
  );
  console.log(`identity: ${data.train.length} examples, ${data.stats.train.learnedTokens} learned tokens`);
  const t0 = performance.now();
  const losses: number[] = [];
  await session.train(demoLoraOptions(steps, lr), data.train, [], null, {
    onLog: (r) => {
      if (r.loss !== undefined) losses.push(r.loss);
    },
  });
  console.log(`LoRA r=8, ${steps} steps x 8, lr ${lr}: ${((performance.now() - t0) / 1000).toFixed(0)} s, loss ${losses.map((l) => l.toFixed(2)).join(' ')}`);

  const after = await answers(session, true);
  SFT_QUESTIONS.forEach((q, i) => console.log(`after   ${q} -> ${JSON.stringify(after[i])}`));
  // the same question with the adapter switched off: the base model is untouched
  const base = await answers(session, false, SFT_QUESTIONS.slice(0, 1));
  console.log(`base    ${SFT_QUESTIONS[0]} -> ${JSON.stringify(base[0])}`);
  const save = arg('save');
  if (save) {
    mkdirSync(save, { recursive: true });
    const files = await session.exportAdapter(null);
    for (const [name, content] of Object.entries(files)) writeFileSync(join(save, name), content);
    console.log(`adapter -> ${save}`);
  }
  session.release();
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
