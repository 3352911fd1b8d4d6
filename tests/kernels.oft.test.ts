// Kernel family: oft (shaders/oft.wgsl, src/kernels/oft.ts)
import { describe, expect, it } from 'vitest';
import { oftBackward, oftForward, oftRotationForward, oftSavedShapes, triangleSize, type OftWeights } from '../src/kernels/oft';
import type { Gpu } from '../src/gpu/runtime';
import type { Tensor } from '../src/gpu/tensor';
import { dequantizeHost, quantizeHost } from '../src/kernels/quant';
import { testGpu, poisoned } from './helpers/gpu';
import { expectClose, makeRng, type Rng } from './helpers/check';
import { dotAll, finiteDiff } from './helpers/finite-diff';
import { refOftBackward, refOftForward, refOftRotation, type OftRefProblem } from './reference/oft';

interface OftCase {
  name: string;
  T: number;
  K: number;
  N: number;
  b: number;
  terms: number | null;
  quant?: 'q4' | 'q8';
  /** rows of each weight part */
  parts?: number[];
  accDx?: boolean;
  accG?: boolean;
  noDx?: boolean;
}

const CASES: OftCase[] = [
  { name: 'Neumann 5 terms (PEFT default), b = 8', T: 7, K: 24, N: 10, b: 8, terms: 5 },
  { name: 'Neumann 1 term (R = I)', T: 3, K: 8, N: 5, b: 4, terms: 1 },
  { name: 'Neumann 2 terms', T: 5, K: 12, N: 6, b: 4, terms: 2 },
  { name: 'Neumann 3 terms (the same series as 4)', T: 5, K: 12, N: 6, b: 3, terms: 3 },
  { name: 'Neumann 7 terms, accumulating', T: 9, K: 16, N: 7, b: 8, terms: 7, accDx: true, accG: true },
  { name: 'exact Cayley, b = 8', T: 6, K: 16, N: 9, b: 8, terms: null },
  { name: 'exact Cayley, b = 32, no dx, accumulating grads', T: 4, K: 64, N: 5, b: 32, terms: null, noDx: true, accG: true },
  { name: 'Neumann, b = 32 (one block larger than a workgroup pass)', T: 3, K: 64, N: 4, b: 32, terms: 5 },
  { name: 'split weight (two bindings)', T: 5, K: 16, N: 9, b: 4, terms: 5, parts: [4, 5] },
  { name: 'q8 base (QOFT)', T: 5, K: 64, N: 6, b: 16, terms: 5, quant: 'q8' },
  { name: 'q4 base (QOFT), exact', T: 4, K: 64, N: 6, b: 16, terms: null, quant: 'q4' },
];

type Problem = OftRefProblem & { dy: Float32Array };

function makeProblem(rng: Rng, c: OftCase): { p: Problem; Wq?: Uint8Array } {
  const { T, K, N, b } = c;
  const W = rng.randn(N * K, 0.3);
  let Wq: Uint8Array | undefined;
  if (c.quant) {
    Wq = quantizeHost(W, N, K, c.quant);
    W.set(dequantizeHost(Wq, N, K, c.quant));
  }
  // trained-size generators: |Q| well below 1, where the Neumann series is meant to be used
  const skew = rng.randn((K / b) * triangleSize(b), 0.3 / Math.sqrt(b));
  return { p: { T, K, N, b, x: rng.randn(T * K), W, skew, terms: c.terms, dy: rng.randn(T * N) }, ...(Wq ? { Wq } : {}) };
}

function baseWeight(gpu: Gpu, c: OftCase, W: Float32Array, Wq?: Uint8Array): Tensor | Tensor[] {
  if (Wq) return gpu.upload(Wq, [c.N, c.K], c.quant);
  if (!c.parts) return gpu.upload(W, [c.N, c.K]);
  let n0 = 0;
  return c.parts.map((rows) => {
    const t = gpu.upload(W.subarray(n0 * c.K, (n0 + rows) * c.K), [rows, c.K]);
    n0 += rows;
    return t;
  });
}

const flat = (blocks: readonly Float64Array[]): Float64Array => {
  const out = new Float64Array(blocks.reduce((n, b) => n + b.length, 0));
  let o = 0;
  for (const b of blocks) (out.set(b, o), (o += b.length));
  return out;
};

async function runCase(gpu: Gpu, rng: Rng, c: OftCase): Promise<void> {
  const { p, Wq } = makeProblem(rng, c);
  const { T, K, N, b } = c;
  const nb = K / b;
  const what = (s: string) => `${c.name}: ${s}`;
  const x = gpu.upload(p.x as Float32Array, [T, K]);
  const base = baseWeight(gpu, c, p.W as Float32Array, Wq);
  const oft: OftWeights = { skew: gpu.upload(p.skew as Float32Array, [nb, triangleSize(b)]), blockSize: b, neumannTerms: c.terms };
  const saved = { rotation: poisoned(gpu, oftSavedShapes(K, b).rotation!) };
  const y = poisoned(gpu, [T, N]);
  oftForward(gpu, x, base, oft, y, saved);
  expectClose(await gpu.readF32(saved.rotation), flat(refOftRotation(p.skew, nb, b, c.terms)), 1e-5, what('rotation'), rng.seed);
  expectClose(await gpu.readF32(y), refOftForward(p), 1e-5, what('y'), rng.seed);

  const init = (n: number, acc: boolean | undefined, shape: number[]) => {
    const v = acc ? rng.randn(n) : null;
    return { v, t: v ? gpu.upload(v, shape) : poisoned(gpu, shape) };
  };
  const dx = c.noDx ? null : init(T * K, c.accDx, [T, K]);
  const dSkew = init(nb * triangleSize(b), c.accG, [nb, triangleSize(b)]);
  oftBackward(gpu, gpu.upload(p.dy, [T, N]), x, base, oft, saved, dx?.t ?? null, { dSkew: dSkew.t }, { accumulateDx: c.accDx, accumulateGrads: c.accG });
  const g = refOftBackward(p, p.dy);
  const withInit = (o: { v: Float32Array | null }, v: Float64Array) => (o.v ? Float64Array.from(v, (e, i) => e + o.v![i]!) : v);
  if (dx) expectClose(await gpu.readF32(dx.t), withInit(dx, g.dx), 1e-5, what('dx'), rng.seed);
  expectClose(await gpu.readF32(dSkew.t), withInit(dSkew, g.dSkew), 1e-4, what('dSkew'), rng.seed);
}

describe('oft', () => {
  const groups: [string, (c: OftCase) => boolean][] = [
    ['Cayley-Neumann rotations, forward and backward, match the f64 reference (1 to 7 terms, accumulation, split weight)', (c) => c.terms !== null && !c.quant],
    ['exact Cayley rotations (Gauss-Jordan) forward and backward match the f64 reference', (c) => c.terms === null && !c.quant],
    ['on q8 / q4 base weights (QOFT)', (c) => !!c.quant],
  ];
  for (const [title, which] of groups)
    it(title, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      for (const c of CASES.filter(which)) await runCase(gpu, rng, c);
    });

  it('the reference gradient matches finite differences of the reference forward (Neumann and exact)', () => {
    const rng = makeRng();
    for (const terms of [5, 3, 2, null]) {
      const c: OftCase = { name: `terms ${terms}`, T: 3, K: 8, N: 4, b: 4, terms };
      const { p } = makeProblem(rng, c);
      const skew = Float64Array.from(p.skew), x = Float64Array.from(p.x);
      const q: Problem = { ...p, skew, x };
      const loss = () => dotAll(p.dy, refOftForward(q));
      const g = refOftBackward(q, p.dy);
      for (let i = 0; i < skew.length; i += 3) {
        expect(Math.abs(finiteDiff(skew, i, loss) - g.dSkew[i]!), `dSkew[${i}] terms ${terms} (SEED=${rng.seed})`).toBeLessThan(1e-6);
      }
      for (let i = 0; i < x.length; i += 5) {
        expect(Math.abs(finiteDiff(x, i, loss) - g.dx[i]!), `dx[${i}] terms ${terms} (SEED=${rng.seed})`).toBeLessThan(1e-6);
      }
    }
  });

  it('exact Cayley blocks are orthogonal; the Neumann series approaches the transpose of the exact one', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const b = 16, nb = 2;
    const skew = rng.randn(nb * triangleSize(b), 0.02); // ||Q|| well below 1: the 12-term series error is far under the bound
    const run = async (terms: number | null) => {
      const rot = poisoned(gpu, [nb, b, b]);
      oftRotationForward(gpu, { skew: gpu.upload(skew, [nb, triangleSize(b)]), blockSize: b, neumannTerms: terms }, rot);
      return gpu.readF32(rot);
    };
    const exact = await run(null), series = await run(12);
    for (let blk = 0; blk < nb; blk++) {
      for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) {
        let dot = 0;
        for (let k = 0; k < b; k++) dot += exact[blk * b * b + i * b + k]! * exact[blk * b * b + j * b + k]!;
        expect(Math.abs(dot - (i === j ? 1 : 0)), `RRᵀ[${i}][${j}] (SEED=${rng.seed})`).toBeLessThan(1e-5);
        expect(Math.abs(series[blk * b * b + j * b + i]! - exact[blk * b * b + i * b + j]!), `series vs exactᵀ (SEED=${rng.seed})`).toBeLessThan(1e-5);
      }
    }
  });

  it('refuses a block size that does not divide the input and a skew of the wrong shape', async () => {
    const gpu = await testGpu();
    const x = gpu.tensor([2, 12]), y = gpu.tensor([2, 3]), w = gpu.tensor([3, 12]);
    const rotation = gpu.tensor([2, 6, 6]);
    expect(() => oftForward(gpu, x, w, { skew: gpu.tensor([2, 15]), blockSize: 5, neumannTerms: 5 }, y, { rotation })).toThrow(/block size 5 does not divide the 12/);
    expect(() => oftForward(gpu, x, w, { skew: gpu.tensor([2, 14]), blockSize: 6, neumannTerms: 5 }, y, { rotation })).toThrow(/oft_R is f32 \[2, 14\], expected f32 \[2, 15\]/);
  });
});
