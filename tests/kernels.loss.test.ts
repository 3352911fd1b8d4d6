// Kernel family: loss (shaders/loss.wgsl, src/kernels/loss.ts)
import { describe, expect, it } from 'vitest';
import { lossCase } from '../src/bench/cases/loss';
import { lmHeadCrossEntropy, logitsForRows, lossWorkspaceElements } from '../src/kernels/loss';
import { testGpu, poisoned } from './helpers/gpu';
import { expectClose, makeRng, type Rng } from './helpers/check';
import { IGNORE, refAsftProbs, refDftWeights, refEaftWeights, refLoss, refLossGrad, refObjective, type LossProblem } from './reference/loss';

function problem(rng: Rng, T: number, D: number, V: number, ignored: number[] = [], softcap?: number): LossProblem & { h: Float32Array; w: Float32Array; labels: Int32Array } {
  const h = rng.randn(T * D), w = rng.randn(V * D, 0.3);
  const labels = rng.int(T, V);
  for (const t of ignored) labels[t] = IGNORE;
  return { h, w, labels, T, D, V, softcap };
}

describe('loss', () => {
  it('loss, dH and accumulated dW match the reference with V not a multiple of the chunk and ignored rows', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const c = lossCase('chunks that do not divide V');
    const p = problem(rng, c.T, c.D, c.V, [2, 5]);
    const { T, D, V } = p;
    const scale = 1 / 5;
    const th = gpu.upload(p.h, [T, D]), tw = gpu.upload(p.w, [V, D]), tl = gpu.upload(p.labels, [T], 'i32');
    const dW0 = rng.randn(V * D);
    const loss = poisoned(gpu, [T]), dH = poisoned(gpu, [T, D]), dW = gpu.upload(dW0, [V, D]);
    lmHeadCrossEntropy(gpu, th, tw, tl, { loss, dH, dW }, { gradScale: scale, chunk: c.chunk });
    const ref = refLossGrad(p, scale);
    const lossOut = await gpu.readF32(loss);
    expectClose(lossOut, refLoss(p), 1e-5, 'loss', rng.seed);
    expect(lossOut[2]).toBe(0);
    expect(lossOut[5]).toBe(0);
    expectClose(await gpu.readF32(dH), ref.dH, 1e-4, 'dH', rng.seed);
    const dWRef = ref.dW.map((g, i) => g + dW0[i]!);
    const dWOut = await gpu.readF32(dW);
    expectClose(dWOut, dWRef, 1e-5, 'dW accumulated', rng.seed);
    expectClose(dWOut.map((x, i) => x - dW0[i]!), ref.dW, 1e-4, 'dW increment', rng.seed);
    const dHOut = await gpu.readF32(dH);
    for (const t of [2, 5]) for (let d = 0; d < D; d++) expect(dHOut[t * D + d]).toBe(0);
  });

  it('one row, one chunk (no recompute), soft-capping', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const c = lossCase('one row, one chunk, soft-capped');
    const p = problem(rng, c.T, c.D, c.V, [], c.softcap);
    const { T, D, V } = p;
    const th = gpu.upload(p.h, [T, D]), tw = gpu.upload(p.w, [V, D]), tl = gpu.upload(p.labels, [T], 'i32');
    const loss = poisoned(gpu, [T]), dH = poisoned(gpu, [T, D]), dW = gpu.tensor([V, D]);
    gpu.zero(dW);
    lmHeadCrossEntropy(gpu, th, tw, tl, { loss, dH, dW }, { gradScale: 0.5, softcap: c.softcap });
    const ref = refLossGrad(p, 0.5);
    expectClose(await gpu.readF32(loss), refLoss(p), 1e-5, 'loss', rng.seed);
    expectClose(await gpu.readF32(dH), ref.dH, 1e-4, 'dH', rng.seed);
    expectClose(await gpu.readF32(dW), ref.dW, 1e-4, 'dW', rng.seed);
  });

  it('a split weight whose parts the chunk does not divide, soft-capping, a caller workspace, unaligned dW chunk offsets', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const c = lossCase('split weight, soft-capped, caller workspace');
    const p = problem(rng, c.T, c.D, c.V, [0], c.softcap); // chunk rows of dW start at 18000-byte steps
    const { T, D, V } = p;
    const split = c.split!;
    const th = gpu.upload(p.h, [T, D]), tl = gpu.upload(p.labels, [T], 'i32');
    const parts = [gpu.upload(p.w.subarray(0, split * D), [split, D]), gpu.upload(p.w.subarray(split * D), [V - split, D])];
    const ws = gpu.tensor([lossWorkspaceElements(T, c.chunk!)]);
    const loss = poisoned(gpu, [T]), dH = rng.randn(T * D), tdH = gpu.upload(dH, [T, D]), dW = gpu.tensor([V, D]);
    gpu.zero(dW);
    lmHeadCrossEntropy(gpu, th, parts, tl, { loss, dH: tdH, dW }, { gradScale: 1 / 8, softcap: c.softcap, workspace: ws, accumulateDH: true });
    const ref = refLossGrad(p, 1 / 8);
    expectClose(await gpu.readF32(loss), refLoss(p), 1e-5, 'loss', rng.seed);
    expectClose(await gpu.readF32(tdH), ref.dH.map((g, i) => g + dH[i]!), 1e-5, 'dH accumulated', rng.seed);
    expectClose(await gpu.readF32(dW), ref.dW, 1e-4, 'dW', rng.seed);
  });

  it('forward only (per-token -logprob for DPO) and all-ignored rows', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const c = lossCase('forward only');
    const p = problem(rng, c.T, c.D, c.V);
    const { T, D, V } = p;
    const th = gpu.upload(p.h, [T, D]), tw = gpu.upload(p.w, [V, D]);
    const loss = poisoned(gpu, [T]);
    lmHeadCrossEntropy(gpu, th, tw, gpu.upload(p.labels, [T], 'i32'), { loss }, { gradScale: 1, chunk: c.chunk });
    expectClose(await gpu.readF32(loss), refLoss(p), 1e-5, 'forward-only loss', rng.seed);

    const none = new Int32Array(T).fill(IGNORE);
    const dH = poisoned(gpu, [T, D]), dW0 = rng.randn(V * D), dW = gpu.upload(dW0, [V, D]);
    lmHeadCrossEntropy(gpu, th, tw, gpu.upload(none, [T], 'i32'), { loss, dH, dW }, { gradScale: 1, chunk: 128 });
    expect([...(await gpu.readF32(loss))]).toEqual(new Array(T).fill(0));
    expect([...(await gpu.readF32(dH))].every((x) => x === 0)).toBe(true);
    expect(await gpu.readF32(dW)).toEqual(dW0);
  });

  it.each([
    ['DFT', { kind: 'dft' }],
    ['label smoothing 0.1', { kind: 'label_smoothing', epsilon: 0.1 }],
    ['EAFT alpha 1', { kind: 'eaft', alpha: 1 }],
    ['EAFT alpha 0.5', { kind: 'eaft', alpha: 0.5 }],
  ] as const)('%s: loss, dH and dW match the reference over chunks, with ignored rows and soft-capping', async (_, tokenLoss) => {
    const gpu = await testGpu();
    const rng = makeRng();
    for (const name of ['chunks that do not divide V', 'one row, one chunk, soft-capped']) {
      const c = lossCase(name);
      const p = { ...problem(rng, c.T, c.D, c.V, c.T > 3 ? [2] : [], c.softcap), tokenLoss };
      const { T, D, V } = p;
      const th = gpu.upload(p.h, [T, D]), tw = gpu.upload(p.w, [V, D]), tl = gpu.upload(p.labels, [T], 'i32');
      const loss = poisoned(gpu, [T]), dH = poisoned(gpu, [T, D]), dW = gpu.tensor([V, D]);
      gpu.zero(dW);
      lmHeadCrossEntropy(gpu, th, tw, tl, { loss, dH, dW }, { gradScale: 0.3, chunk: c.chunk, softcap: c.softcap, tokenLoss });
      const ref = refLossGrad(p, 0.3);
      const what = `${tokenLoss.kind} ${name}`;
      expectClose(await gpu.readF32(loss), refLoss(p), 1e-5, `${what} loss`, rng.seed);
      expectClose(await gpu.readF32(dH), ref.dH, 1e-4, `${what} dH`, rng.seed);
      expectClose(await gpu.readF32(dW), ref.dW, 1e-4, `${what} dW`, rng.seed);
      // the variant changes the numbers: plain cross-entropy's are not these
      expect(Math.abs(refLoss({ ...p, tokenLoss: { kind: 'ce' } })[0]! - refLoss(p)[0]!)).toBeGreaterThan(1e-4);
      gpu.release(th, tw, tl, loss, dH, dW);
    }
  });

  it('ASFT: loss, dH and dW match the reference over chunks, with ignored rows and soft-capping; the reference gets no gradient', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    for (const [name, alpha] of [['chunks that do not divide V', 0.1], ['one row, one chunk, soft-capped', 0.8]] as const) {
      const c = lossCase(name);
      const base = problem(rng, c.T, c.D, c.V, c.T > 3 ? [2] : [], c.softcap);
      const { T, D, V } = base;
      // the reference model: a nearby point, as a base model is to its fine-tuned policy
      const hRef = base.h.map((x) => x + 0.5 * rng.randn(1)[0]!);
      // the second case gives the reference its own lm_head (a run that trains the head)
      const wRef = alpha > 0.5 ? base.w.map((x) => x + 0.2 * rng.randn(1)[0]!) : undefined;
      const p = { ...base, hRef, ...(wRef ? { wRef } : {}), tokenLoss: { kind: 'asft', alpha } as const };
      const th = gpu.upload(p.h, [T, D]), tw = gpu.upload(p.w, [V, D]), tl = gpu.upload(p.labels, [T], 'i32'), tr = gpu.upload(hRef, [T, D]);
      const twRef = wRef ? gpu.upload(wRef, [V, D]) : undefined;
      const loss = poisoned(gpu, [T]), dH = poisoned(gpu, [T, D]), dW = gpu.tensor([V, D]);
      gpu.zero(dW);
      lmHeadCrossEntropy(gpu, th, tw, tl, { loss, dH, dW }, { gradScale: 0.3, chunk: c.chunk, softcap: c.softcap, tokenLoss: p.tokenLoss, referenceH: tr, ...(twRef ? { referenceW: twRef } : {}) });
      const ref = refLossGrad(p, 0.3);
      const what = `ASFT ${name}`;
      expectClose(await gpu.readF32(loss), refLoss(p), 1e-5, `${what} loss`, rng.seed);
      expectClose(await gpu.readF32(dH), ref.dH, 1e-4, `${what} dH`, rng.seed);
      expectClose(await gpu.readF32(dW), ref.dW, 1e-4, `${what} dW`, rng.seed);
      // the KL term counts: DFT alone is not this
      expect(Math.abs(refLoss({ ...p, tokenLoss: { kind: 'dft' } })[0]! - refLoss(p)[0]!)).toBeGreaterThan(1e-4);
      expect(await gpu.readF32(tr)).toEqual(Float32Array.from(hRef));
      if (wRef) expect(Math.abs(refLoss({ ...p, wRef: undefined })[0]! - refLoss(p)[0]!), 'the reference head counts').toBeGreaterThan(1e-4);
      gpu.release(th, tw, tl, tr, loss, dH, dW, ...(twRef ? [twRef] : []));
    }
    const [th, tl] = [gpu.upload(new Float32Array(8), [2, 4]), gpu.upload(new Int32Array(2), [2], 'i32')];
    expect(() => lmHeadCrossEntropy(gpu, th, gpu.upload(new Float32Array(12), [3, 4]), tl, { loss: gpu.tensor([2]) }, { gradScale: 1, tokenLoss: { kind: 'asft', alpha: 0.1 } }))
      .toThrow(/ASFT needs referenceH, f32 \[2, 4\]/);
  });

  it('reference gradients agree with central finite differences of the reference loss', () => {
    const rng = makeRng();
    const variants = [{ softcap: 0 }, { softcap: 1.5 }, { softcap: 0, tokenLoss: { kind: 'label_smoothing', epsilon: 0.2 } as const },
      { softcap: 1.5, tokenLoss: { kind: 'dft' } as const }, { softcap: 0, tokenLoss: { kind: 'eaft', alpha: 0.7 } as const },
      { softcap: 1.5, tokenLoss: { kind: 'asft', alpha: 0.4 } as const }];
    for (const { softcap, tokenLoss } of variants) {
      const pb = problem(rng, 3, 6, 11, [1], softcap);
      const base = { ...pb, tokenLoss, hRef: rng.randn(pb.T * pb.D) };
      // DFT's weights (and ASFT's reference softmax) are constants of the gradient: freeze them at this point
      const p = tokenLoss?.kind === 'dft' ? { ...base, frozenWeights: refDftWeights(base) }
        : tokenLoss?.kind === 'asft' ? { ...base, frozenWeights: refDftWeights(base), frozenRefProbs: refAsftProbs(base) }
        : tokenLoss?.kind === 'eaft' ? { ...base, frozenWeights: refEaftWeights(base, tokenLoss.alpha) } : base;
      const scale = 0.7;
      const { dH, dW } = refLossGrad(p, scale);
      const eps = 1e-6;
      const probe = (arr: Float32Array, i: number): number => {
        const x = Float64Array.from(arr);
        const f = (v: number) => {
          x[i] = v;
          return refObjective({ ...p, [arr === p.h ? 'h' : 'w']: x }, scale);
        };
        const x0 = arr[i]!;
        return (f(x0 + eps) - f(x0 - eps)) / (2 * eps);
      };
      for (let k = 0; k < 6; k++) {
        const i = Math.floor(rng.next() * p.h.length);
        expect(Math.abs(probe(p.h, i) - dH[i]!), `dH[${i}] softcap ${softcap} ${tokenLoss?.kind ?? 'ce'} (SEED=${rng.seed})`).toBeLessThan(1e-6);
        const j = Math.floor(rng.next() * p.w.length);
        expect(Math.abs(probe(p.w, j) - dW[j]!), `dW[${j}] softcap ${softcap} ${tokenLoss?.kind ?? 'ce'} (SEED=${rng.seed})`).toBeLessThan(1e-6);
      }
    }
  });

  it('logitsForRows picks rows out of h, with a split weight and soft-capping', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [T, D, V] = [6, 20, 90];
    const h = rng.randn(T * D), w = rng.randn(V * D, 0.4);
    const th = gpu.upload(h, [T, D]);
    const parts = [gpu.upload(w.subarray(0, 50 * D), [50, D]), gpu.upload(w.subarray(50 * D), [V - 50, D])];
    for (const softcap of [0, 2]) {
      const out = poisoned(gpu, [2, V]);
      logitsForRows(gpu, th, parts, out, { row: 3, rows: 2, softcap });
      const ref = new Float64Array(2 * V);
      for (let r = 0; r < 2; r++)
        for (let v = 0; v < V; v++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += h[(3 + r) * D + d]! * w[v * D + d]!;
          ref[r * V + v] = softcap ? softcap * Math.tanh(s / softcap) : s;
        }
      expectClose(await gpu.readF32(out), ref, 1e-5, `logits softcap ${softcap}`, rng.seed);
    }
  });

  it('reports shape mismatches', async () => {
    const gpu = await testGpu();
    const h = gpu.tensor([4, 8]), w = gpu.tensor([10, 8]), loss = gpu.tensor([4]);
    expect(() => lmHeadCrossEntropy(gpu, h, gpu.tensor([10, 7]), gpu.tensor([4], 'i32'), { loss }, { gradScale: 1 })).toThrow(/7\] does not have 8 columns/);
    expect(() => lmHeadCrossEntropy(gpu, h, w, gpu.tensor([4]), { loss }, { gradScale: 1 })).toThrow(/labels must be i32/);
    expect(() => lmHeadCrossEntropy(gpu, h, w, gpu.tensor([4], 'i32'), { loss, dW: gpu.tensor([9, 8]) }, { gradScale: 1 })).toThrow(/dW must be/);
  });
});
