// The Generator's burst decoding (sample -> feed -> forward recorded several times per readback)
// against a one-token-per-readback driver built from the same primitives: the same tokens for
// greedy and seeded sampling, the same stop, a cache that stays right after a stop inside a burst.

import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { logitsForRows } from '../src/kernels/loss';
import { sampleToken } from '../src/kernels/sample';
import { dirFiles } from '../src/model/files-node';
import { allocKVCache, forwardCached, Workspace } from '../src/model/forward';
import { Generator, type SamplingOptions } from '../src/model/generate';
import { Model } from '../src/model/model';
import { testGpu } from './helpers/gpu';

const MODEL = join(import.meta.dirname, 'fixtures/tiny-chat');
const CAPACITY = 128;

/** Generation with a readback after every token: the plain loop the Generator must agree with. */
async function stepwise(model: Model, prompt: number[], opts: SamplingOptions): Promise<number[]> {
  const gpu = model.gpu;
  const cache = allocKVCache(model, CAPACITY);
  const logits = gpu.tensor([model.spec.vocab], 'f32');
  const token = gpu.tensor([1], 'u32');
  const history = gpu.tensor([CAPACITY], 'u32');
  const workspaces = new Map<number, Workspace>();
  const run = (ids: number[]) => {
    let ws = workspaces.get(ids.length);
    if (!ws) workspaces.set(ids.length, (ws = new Workspace(model, 1, ids.length, true)));
    ws.load({ B: 1, S: ids.length, ids: Int32Array.from(ids), labels: new Int32Array(ids.length).fill(-100), positions: Int32Array.from(ids, (_, j) => cache.length + j) });
    forwardCached(ws, cache);
    logitsForRows(gpu, ws.final, model.lmHead.weight, logits, { row: ws.T - 1, rows: 1 });
  };
  const tokens = [...prompt];
  gpu.write(history, Uint32Array.from(tokens));
  run(tokens);
  let rng = (opts.seed ?? 0) >>> 0 || 0x9e3779b9;
  const uniform = () => {
    rng ^= rng << 13; rng >>>= 0; rng ^= rng >>> 17; rng ^= rng << 5; rng >>>= 0;
    return rng / 4294967296;
  };
  const out: number[] = [];
  for (let i = 0; i < opts.maxNewTokens; i++) {
    sampleToken(gpu, logits, token, {
      temperature: opts.temperature ?? 0, topK: opts.topK ?? 0, topP: opts.topP ?? 1,
      repetitionPenalty: opts.repetitionPenalty ?? 1, history, historyLen: tokens.length, random: uniform(),
    });
    const id = (await gpu.read(token))[0]!;
    if (opts.stopIds?.includes(id)) break;
    out.push(id);
    tokens.push(id);
    gpu.write(history, Uint32Array.of(id), (tokens.length - 1) * 4);
    run([id]);
  }
  for (const ws of workspaces.values()) ws.release();
  gpu.release(...cache.k, ...cache.v, logits, token, history);
  return out;
}

async function collect(gen: Generator, prompt: number[], opts: SamplingOptions): Promise<number[]> {
  const out: number[] = [];
  for await (const id of gen.generate(prompt, opts)) out.push(id);
  return out;
}

const PROMPT = [1, 17, 42, 99, 7, 130, 64, 3];
const SAMPLED: SamplingOptions = { maxNewTokens: 20, temperature: 0.9, topK: 40, topP: 0.95, repetitionPenalty: 1.3, seed: 7, stopIds: [] };

describe('Generator bursts', () => {
  it('gives the tokens of one-readback-per-token decoding, greedy and sampled, with one readback per burst', async () => {
    const gpu = await testGpu();
    const model = await Model.load(gpu, dirFiles(MODEL));
    for (const opts of [{ maxNewTokens: 18, stopIds: [] }, SAMPLED]) {
      const expected = await stepwise(model, PROMPT, opts);
      const gen = new Generator(model, CAPACITY);
      const read = vi.spyOn(gpu, 'read');
      const got = await collect(gen, PROMPT, opts);
      // bursts of 1, 2, 4, 8 and the 5 (or 3) that remain
      expect(read.mock.calls.length).toBe(5);
      read.mockRestore();
      expect(got).toEqual(expected);
      expect(got).toHaveLength(opts.maxNewTokens);
      // the next turn reuses the cache: its last generated token was never fed, so it runs now
      const next = [...PROMPT, ...got, 5, 11];
      const turn = { ...opts, maxNewTokens: 3 };
      expect(await collect(gen, next, turn)).toEqual(await stepwise(model, next, turn));
      gen.release();
    }
    model.release();
  }, 300_000);

  it('stops at a stop token inside a burst, and the next turn reuses a cache without the dropped steps', async () => {
    const gpu = await testGpu();
    const model = await Model.load(gpu, dirFiles(MODEL));
    const free = await stepwise(model, PROMPT, SAMPLED);
    // a stop id first produced at index 5: inside the burst of 4 (indices 3..6)
    const at = free.findIndex((id, i) => i >= 4 && i <= 5 && free.indexOf(id) === i);
    expect(at).toBeGreaterThanOrEqual(4);
    const opts = { ...SAMPLED, stopIds: [free[at]!] };
    const expected = await stepwise(model, PROMPT, opts);
    expect(expected).toEqual(free.slice(0, at));

    const gen = new Generator(model, CAPACITY);
    expect(await collect(gen, PROMPT, opts)).toEqual(expected);
    // second turn: the answer, the stop token and a new user turn extend the prompt
    const next = [...PROMPT, ...expected, free[at]!, 5, 11, 23];
    const again = await collect(gen, next, { ...SAMPLED, seed: 9, maxNewTokens: 12 });
    expect(again).toEqual(await stepwise(model, next, { ...SAMPLED, seed: 9, maxNewTokens: 12 }));
    gen.release();
    model.release();
  }, 300_000);
});
