// Kernel family: sample (shaders/sample.wgsl, src/kernels/sample.ts)
import { describe, expect, it } from 'vitest';
import { SAMPLE_CASES } from '../src/bench/cases/sample';
import { feedToken, sampleToken, type SampleOptions } from '../src/kernels/sample';
import type { Gpu } from '../src/gpu/runtime';
import type { Tensor } from '../src/gpu/tensor';
import { testGpu } from './helpers/gpu';
import { makeRng } from './helpers/check';
import { refArgmax, refPick, refProbs, refProcess, type RefSampleOptions } from './reference/sample';

/** Run many samplings into the slots of one u32 buffer, one readback. */
async function sampleMany(gpu: Gpu, logits: Tensor, runs: Omit<SampleOptions, 'outIndex'>[]): Promise<Uint32Array> {
  const out = gpu.upload(new Uint32Array(runs.length).fill(0xffffffff), [runs.length], 'u32');
  runs.forEach((o, i) => sampleToken(gpu, logits, out, { ...o, outIndex: i }));
  return (await gpu.read(out)) as Uint32Array;
}

describe('sample', () => {
  it('greedy is the argmax (lowest index on ties), for a row of a [R, V] tensor', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [R, V] = [3, 1000];
    const x = rng.randn(R * V);
    x[1 * V + 617] = 9; // row 1: a tie between 617 and 40 -> 40
    x[1 * V + 40] = 9;
    const t = gpu.upload(x, [R, V]);
    const got = await sampleMany(gpu, t, [0, 1, 2].map((row) => ({ temperature: 0, random: 0.5, row, topK: 5, topP: 0.5 })));
    expect([...got]).toEqual([0, 1, 2].map((r) => refArgmax(x.subarray(r * V, (r + 1) * V))));
    expect(got[1]).toBe(40);
    // V smaller than the workgroup, one token
    expect([...(await sampleMany(gpu, gpu.upload(Float32Array.of(-3, -1, -2), [3]), [{ temperature: 0, random: 0 }]))]).toEqual([1]);
    expect([...(await sampleMany(gpu, gpu.upload(Float32Array.of(4), [1]), [{ temperature: 0.7, random: 0.9 }]))]).toEqual([0]);
  });

  it('repetition penalty changes the argmax as HF does (divide positive, multiply negative logits)', async () => {
    const gpu = await testGpu();
    const logits = gpu.upload(Float32Array.of(1, 5, 4.5, -0.5, -0.4, 0), [6]);
    const history = gpu.upload(Uint32Array.of(1, 1, 4, 99, 3), [5], 'u32'); // 99 is out of range: ignored
    const neg = gpu.upload(Float32Array.of(-3, -1, -2), [3]);
    const got = await sampleMany(gpu, logits, [
      { temperature: 0, random: 0, repetitionPenalty: 1.2, history, historyLen: 5 }, // 5/1.2 = 4.17 < 4.5
      { temperature: 0, random: 0, repetitionPenalty: 1.05, history, historyLen: 5 }, // 4.76 > 4.5
      { temperature: 0, random: 0, repetitionPenalty: 1.2, history, historyLen: 0 }, // no history used
    ]);
    expect([...got]).toEqual([2, 1, 1]);
    const h2 = gpu.upload(Uint32Array.of(1), [1], 'u32');
    expect([...(await sampleMany(gpu, neg, [{ temperature: 0, random: 0, repetitionPenalty: 3.5, history: h2 }]))]).toEqual([2]); // -1*3.5 < -2
    // penalised values feed the sampling path too: with top-k 1 the token is the penalised argmax
    expect([...(await sampleMany(gpu, logits, [{ temperature: 0.8, topK: 1, random: 0.99, repetitionPenalty: 1.2, history, historyLen: 5 }]))]).toEqual([2]);
  });

  const configs: (RefSampleOptions & { name: string })[] = [
    { name: 'temperature only', temperature: 0.7 },
    { name: 'top-k', temperature: 1.3, topK: 20 },
    { name: 'top-p', temperature: 0.9, topP: 0.8 },
    { name: 'top-k + top-p + penalty + softcap', temperature: 0.6, topK: 40, topP: 0.9, repetitionPenalty: 1.3, softcap: 4 },
  ];
  it('picks the same token as the CPU reference for the same uniform', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    for (const { V, ties } of SAMPLE_CASES.filter((c) => !c.bench)) {
      const x = rng.randn(V, 2).map((v) => (ties ? Math.round(v) : v)); // integer logits: many ties at the cutoffs
      const logits = gpu.upload(x, [V]);
      const hist = rng.int(30, V);
      const history = gpu.upload(Uint32Array.from(hist), [hist.length], 'u32');
      for (const c of configs) {
        const o = { ...c };
        const s = refProcess(x, { ...o, history: hist });
        let ref = refProbs(s, o);
        while (ref.margin < 1e-4) ref = refProbs(s, (o.topP = o.topP! - 0.003, o)); // keep top-p away from a tie of masses
        const us = Array.from({ length: 40 }, () => rng.next());
        const got = await sampleMany(gpu, logits, us.map((random) => ({ ...o, history, historyLen: hist.length, random })));
        let checked = 0;
        us.forEach((u, i) => {
          const r = refPick(ref.probs, Math.fround(u));
          if (r.boundary < 1e-5) return; // too close to a CDF step for f32 vs f64
          checked++;
          expect(got[i], `${c.name} V ${V} u ${u} boundary ${r.boundary} margin ${ref.margin} (SEED=${rng.seed})`).toBe(r.token);
        });
        expect(checked).toBeGreaterThanOrEqual(25);
        // bitwise reproducible
        const again = await sampleMany(gpu, logits, us.slice(0, 5).map((random) => ({ ...o, history, historyLen: hist.length, random })));
        expect([...again]).toEqual([...got.slice(0, 5)]);
      }
    }
  });

  it('empirical frequencies over random uniforms match the reference distribution on a tiny vocabulary', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const x = Float32Array.of(2.0, 1.2, -0.5, 1.9, 0.3, 1.2, -2, 0.9, 1.5, 0.1);
    const o = { temperature: 0.8, topK: 6, topP: 0.9 };
    const { probs } = refProbs(refProcess(x, o), o);
    const N = 400;
    const got = await sampleMany(gpu, gpu.upload(x, [x.length]), Array.from({ length: N }, () => ({ ...o, random: rng.next() })));
    const freq = new Float64Array(x.length);
    for (const t of got) freq[t]! += 1 / N;
    for (let i = 0; i < x.length; i++) {
      if (probs[i] === 0) expect(freq[i], `token ${i} was filtered out`).toBe(0);
      const sd = Math.sqrt((probs[i]! * (1 - probs[i]!)) / N);
      expect(Math.abs(freq[i]! - probs[i]!), `token ${i}: ${freq[i]} vs ${probs[i]} (SEED=${rng.seed})`).toBeLessThan(4 * sd + 0.01);
    }
  });

  it('top-k keeps every token tied with the k-th value; top-p keeps the tie group at its cutoff', async () => {
    const gpu = await testGpu();
    // top-k 2 with three tokens tied at the 2nd value: all four kept, the last tied index is reachable
    const x = Float32Array.of(0, 3, 1, 2, 0, 2, 2, -1);
    const t = gpu.upload(x, [x.length]);
    const o = { temperature: 1, topK: 2 };
    const { probs } = refProbs(refProcess(x, o), o);
    expect([...probs].map((p) => p > 0)).toEqual([false, true, false, true, false, true, true, false]);
    const us = [0.01, 0.5, 0.7, 0.95, 0.999999];
    const got = await sampleMany(gpu, t, us.map((random) => ({ ...o, random })));
    expect([...got]).toEqual(us.map((u) => refPick(probs, Math.fround(u)).token));
    expect(got[4]).toBe(6);
    // top-p 0.5: the max alone has mass e^3 / (e^3 + 3e^2 + ...) < 0.5, so the group at 2 is kept whole
    const op = { temperature: 1, topP: 0.5 };
    const pp = refProbs(refProcess(x, op), op).probs;
    expect([...pp].map((p) => p > 0)).toEqual([false, true, false, true, false, true, true, false]);
    const got2 = await sampleMany(gpu, t, us.map((random) => ({ ...op, random })));
    expect([...got2]).toEqual(us.map((u) => refPick(pp, Math.fround(u)).token));
  });

  it('rejects bad options', async () => {
    const gpu = await testGpu();
    const l = gpu.tensor([10]), out = gpu.tensor([1], 'u32');
    expect(() => sampleToken(gpu, l, out, { temperature: 1, topP: 0, random: 0.5 })).toThrow(/topP/);
    expect(() => sampleToken(gpu, l, out, { temperature: 1, random: 1 })).toThrow(/random/);
    expect(() => sampleToken(gpu, l, out, { temperature: 1, random: 0.1, row: 1 })).toThrow(/row 1/);
    expect(() => sampleToken(gpu, l, out, { temperature: 1, random: 0.1, outIndex: 1 })).toThrow(/outIndex/);
  });

  it('feed_token writes the sampled token as the next input id, its position and a history entry, and nothing else', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const tokens = Uint32Array.from(rng.uniform(8, 0, 50000), Math.floor);
    const sampled = gpu.upload(tokens, [8], 'u32');
    const POISON = -123456;
    const ids = gpu.upload(new Int32Array(2).fill(POISON), [2], 'i32');
    const positions = gpu.upload(new Int32Array(2).fill(POISON), [2], 'i32');
    const before = Uint32Array.from({ length: 16 }, (_, i) => 1000 + i);
    const history = gpu.upload(before, [16], 'u32');
    feedToken(gpu, sampled, ids, positions, { index: 5, position: 1234, history, historyLen: 9 });
    expect([...((await gpu.read(ids)) as Int32Array)]).toEqual([tokens[5], POISON]);
    expect([...((await gpu.read(positions)) as Int32Array)]).toEqual([1234, POISON]);
    const after = [...before];
    after[9] = tokens[5]!;
    expect([...((await gpu.read(history)) as Uint32Array)]).toEqual(after);
    // M-RoPE: a decode step's [3, 1] positions get the position in every component
    const mrope = gpu.upload(new Int32Array(4).fill(POISON), [4], 'i32');
    feedToken(gpu, sampled, ids, mrope, { index: 2, position: 77, history, historyLen: 3, components: 3 });
    expect([...((await gpu.read(mrope)) as Int32Array)]).toEqual([77, 77, 77, POISON]);
    expect(() => feedToken(gpu, sampled, ids, positions, { index: 0, position: 0, history, historyLen: 0, components: 3 })).toThrow(/3 position components/);
    expect(() => feedToken(gpu, sampled, ids, positions, { index: 8, position: 0, history, historyLen: 0 })).toThrow(/index 8/);
    expect(() => feedToken(gpu, sampled, ids, positions, { index: 0, position: 0, history, historyLen: 16 })).toThrow(/historyLen 16/);
    expect(() => feedToken(gpu, sampled, history, positions, { index: 0, position: 0, history, historyLen: 0 })).toThrow(/ids must be i32/);
  });
});
