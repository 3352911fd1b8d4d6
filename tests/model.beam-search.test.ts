// Beam search: the GPU Generator (beams as one batch over a KV cache reordered by parent beam)
// against a plain f64 beam search over the reference model (tests/reference/beam-search.ts, full
// sequences re-run each step): the same answer and score, under each length_penalty /
// early_stopping rule, stop ids and the repetition penalty. num_beams 1 stays greedy decoding.
// The bookkeeping (src/model/beam-search.ts) is also checked on hand-made logits.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BeamSearch } from '../src/model/beam-search';
import { dirFiles } from '../src/model/files-node';
import { Generator } from '../src/model/generate';
import { Model } from '../src/model/model';
import { testGpu } from './helpers/gpu';
import { tensorsOf } from './helpers/parity';
import { refBeamSearch, type RefBeamOptions } from './reference/beam-search';
import { refLogits } from './reference/transformer';

const MODEL = join(import.meta.dirname, 'fixtures/tiny-chat');
const config = JSON.parse(readFileSync(join(MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
const V = Number(config.vocab_size);

async function referenceLogits(): Promise<(sequences: number[][]) => Float64Array[]> {
  const weights = await tensorsOf(join(MODEL, 'model.safetensors'));
  return (sequences) => {
    const S = sequences[0]!.length;
    const all = refLogits(config, weights, sequences);
    return sequences.map((_, b) => all.slice((b * S + S - 1) * V, (b * S + S) * V));
  };
}

/** Greedy decoding over the reference, to pick stop ids the beams meet. */
function refGreedy(next: (s: number[][]) => Float64Array[], prompt: number[], n: number): number[] {
  const seq = [...prompt];
  for (let i = 0; i < n; i++) {
    const row = next([seq])[0]!;
    seq.push(row.indexOf(Math.max(...row)));
  }
  return seq.slice(prompt.length);
}

describe('beam search on the GPU', () => {
  it('gives the f64 reference beam search answer and score', async () => {
    const gpu = await testGpu();
    const model = await Model.load(gpu, dirFiles(MODEL));
    const next = await referenceLogits();
    const prompts = [[1, 17, 42, 99, 7, 130, 64, 3], [5, 200, 31]];
    const gen = new Generator(model, 64);
    let differsFromGreedy = 0;
    let stoppedEarly = 0;
    for (const prompt of prompts) {
      const greedy = refGreedy(next, prompt, 6);
      const cases: RefBeamOptions[] = [
        { numBeams: 4, maxNewTokens: 10, lengthPenalty: 1, earlyStopping: false, repetitionPenalty: 1, stopIds: [2, greedy[3]!] },
        { numBeams: 3, maxNewTokens: 8, lengthPenalty: 2, earlyStopping: 'never', repetitionPenalty: 1, stopIds: [greedy[2]!] },
        { numBeams: 2, maxNewTokens: 9, lengthPenalty: -0.5, earlyStopping: true, repetitionPenalty: 1.3, stopIds: [greedy[1]!, greedy[4]!] },
        { numBeams: 5, maxNewTokens: 7, lengthPenalty: 1, earlyStopping: false, repetitionPenalty: 1, stopIds: [] },
      ];
      for (const c of cases) {
        const want = refBeamSearch(prompt, next, c);
        const got = await gen.beamSearch(prompt, c);
        expect(got?.tokens, JSON.stringify(c)).toEqual(want.tokens);
        expect(got!.score).toBeCloseTo(want.score, 4);
        if (c === cases[0]) {
          // the streaming interface yields the same answer
          const streamed: number[] = [];
          for await (const id of gen.generate(prompt, c)) streamed.push(id);
          expect(streamed).toEqual(want.tokens);
        }
        if (want.tokens.join() !== refGreedy(next, prompt, want.tokens.length).join()) differsFromGreedy++;
        if (got!.stopped) stoppedEarly++;
      }
    }
    // the cases reach beams that greedy decoding misses, and answers that end at a stop id
    expect(differsFromGreedy).toBeGreaterThan(0);
    expect(stoppedEarly).toBeGreaterThan(0);
    gen.release();
    model.release();
  }, 300_000);

  it('keeps num_beams 1 greedy and refuses sampling with beams by name', async () => {
    const gpu = await testGpu();
    const model = await Model.load(gpu, dirFiles(MODEL));
    const gen = new Generator(model, 64);
    const prompt = [1, 17, 42, 99];
    const collect = async (opts: Parameters<Generator['generate']>[1]) => {
      const out: number[] = [];
      for await (const id of gen.generate(prompt, opts)) out.push(id);
      return out;
    };
    expect(await collect({ maxNewTokens: 8, stopIds: [], numBeams: 1, lengthPenalty: 3 })).toEqual(await collect({ maxNewTokens: 8, stopIds: [] }));
    await expect(collect({ maxNewTokens: 8, numBeams: 3, temperature: 0.7 })).rejects.toThrow(/beam search with sampling \(do_sample with num_beams 3\) is not supported/);
    gen.release();
    model.release();
  }, 120_000);
});

describe('BeamSearch bookkeeping', () => {
  /** Logits whose softmax gives these probabilities (vocab 3). */
  const logitsOf = (...rows: number[][]) => Float32Array.from(rows.flat().map(Math.log));

  it('finds the sequence greedy decoding misses, and ends at the stop id', () => {
    // token 0 looks best first but leads to flat continuations; token 1 leads to a sure stop (2)
    const s = new BeamSearch([9], { numBeams: 2, maxNewTokens: 5, stopIds: [2] });
    let step = s.step(logitsOf([0.5, 0.4, 0.1], [0.5, 0.4, 0.1]));
    expect(step).toEqual({ parents: [0, 0], tokens: [0, 1] });
    // beam 0 (after 0): 0.34/0.33/0.33; beam 1 (after 1): stop with 0.98
    step = s.step(logitsOf([0.34, 0.33, 0.33], [0.01, 0.01, 0.98]));
    // the stop candidate (1, 2) finishes with log(0.4 * 0.98) / 2; the running set keeps beam 0's continuations
    expect(step.parents).toEqual([0, 0]);
    expect(s.done).toBe(false);
    s.step(logitsOf([0.34, 0.33, 0.33], [0.34, 0.33, 0.33]));
    // one stored hypothesis is not num_beams: the search goes on until a second one is stored
    expect(s.done).toBe(false);
    while (!s.done) s.step(logitsOf([0.01, 0.01, 0.98], [0.01, 0.01, 0.98]));
    const r = s.result();
    expect(r.tokens).toEqual([1]);
    expect(r.stopped).toBe(true);
    expect(r.score).toBeCloseTo(Math.log(0.4 * 0.98) / 2, 6);
  });

  it('length_penalty and early_stopping decide between a short and a long answer', () => {
    // step 1: stop at once (p 0.55) or go on (0.45); after that a near-sure stop (0.99)
    const run = (lengthPenalty: number, earlyStopping: boolean | 'never') => {
      const s = new BeamSearch([9], { numBeams: 1, maxNewTokens: 4, stopIds: [2], lengthPenalty, earlyStopping });
      s.step(logitsOf([0.45, 0.0001, 0.5499]));
      while (!s.done) s.step(logitsOf([0.005, 0.005, 0.99]));
      return s.result();
    };
    const short = { tokens: [], stopped: true };
    // one beam, stored: early_stopping true ends there
    expect(run(1, true)).toMatchObject({ ...short, score: expect.closeTo(Math.log(0.5499), 6) });
    // false: the running beam at its current length, log(0.45) / 1, cannot beat log(0.5499)
    expect(run(1, false)).toMatchObject(short);
    // 'never' with length_penalty 1 bounds it at max_new_tokens, log(0.45) / 4: go on, and the
    // longer answer log(0.45 * 0.99) / 2 wins
    expect(run(1, 'never')).toMatchObject({ tokens: [0], stopped: true, score: expect.closeTo(Math.log(0.45 * 0.99) / 2, 6) });
    // a small length_penalty: log(0.45) / 4 ** 0.1 is below log(0.5499), stop
    expect(run(0.1, 'never')).toMatchObject(short);
  });

  it('refuses bad settings by name', () => {
    expect(() => new BeamSearch([1], { numBeams: 0, maxNewTokens: 4, stopIds: [] })).toThrow(/num_beams/);
    const s = new BeamSearch([1], { numBeams: 2, maxNewTokens: 4, stopIds: [] });
    expect(() => s.step(new Float32Array(5))).toThrow(/do not split into 2 beams/);
  });
});
