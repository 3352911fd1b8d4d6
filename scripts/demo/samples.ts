// Text samples from the demo model: plain continuations of a few prompts, and chat answers.
//
//   node --import ./bin/register.js scripts/demo/samples.ts [--model=public/demo/model] [--tokens=60]

import { Session } from '../../src/engine/session';
import { nodeGpu } from '../../src/gpu/node';
import { dirFiles } from '../../src/model/files-node';
import { Generator, type SamplingOptions } from '../../src/model/generate';
import { arg, MODEL_DIR } from './common';

export const CONTINUATION_PROMPTS = ['The best way to', 'Our company', 'If you are looking for'];
export const CHAT_PROMPTS = ['Who are you?', 'What can you do?'];

/** A plain continuation of `text` (no chat template). */
export async function continueText(session: Session, text: string, opts: Omit<SamplingOptions, 'stopIds'>): Promise<string> {
  const gen = new Generator(session.model, 256);
  const ids: number[] = [];
  try {
    for await (const id of gen.generate(session.tokenizer.encode(text), { ...opts, stopIds: session.tokenizer.eosIds.concat(session.tokenizer.padId ?? []) })) ids.push(id);
  } finally {
    gen.release();
  }
  return text + session.tokenizer.decode(ids);
}

export async function chatAnswer(session: Session, question: string, opts: { maxNewTokens: number; temperature?: number; seed?: number; useAdapter?: boolean }): Promise<string> {
  const r = await session.chat([{ role: 'user', content: question }], { repetitionPenalty: 1.1, ...opts }, () => {});
  return r.text;
}

export async function printSamples(session: Session, maxNewTokens = 60): Promise<void> {
  for (const p of CONTINUATION_PROMPTS) {
    console.log(`\n[greedy] ${JSON.stringify(await continueText(session, p, { maxNewTokens, temperature: 0, repetitionPenalty: 1.2 }))}`);
    console.log(`[t=0.8]  ${JSON.stringify(await continueText(session, p, { maxNewTokens, temperature: 0.8, topP: 0.95, repetitionPenalty: 1.1, seed: 1 }))}`);
  }
  for (const q of CHAT_PROMPTS) console.log(`\n[chat] ${q} -> ${JSON.stringify(await chatAnswer(session, q, { maxNewTokens }))}`);
}

async function main() {
  const gpu = await nodeGpu();
  const session = await Session.open(gpu, dirFiles(arg('model', MODEL_DIR)));
  await printSamples(session, Number(arg('tokens', '60')));
  session.release();
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
