// Kernel family: lora (shaders/lora.wgsl, src/kernels/lora.ts)
import { describe, expect, it } from 'vitest';
import {
  dropoutKey,
  loraBackward,
  loraDropout,
  loraForward,
  loraSavedShapes,
  loraWeightNorm,
  loraWorkspaceShape,
  type LoraDropout,
  type LoraGrads,
  type LoraSaved,
  type LoraWeights,
} from '../src/kernels/lora';
import type { Gpu } from '../src/gpu/runtime';
import { halfToFloat } from '../src/gpu/runtime';
import type { Tensor } from '../src/gpu/tensor';
import { dequantizeHost, quantizeHost } from '../src/kernels/quant';
import { LORA_CASES, type LoraCase } from '../src/bench/cases/lora';
import { testGpu, poisoned } from './helpers/gpu';
import { expectClose, makeRng, type Rng } from './helpers/check';
import { refDropoutKeep, refLoraBackward, refLoraForward, refLoss, refWeightNorm, type LoraRefProblem } from './reference/lora';

type Problem = LoraRefProblem & { dy: Float32Array; drop?: LoraDropout; mag?: Float32Array; Wq?: Uint8Array[] };

/** Random dropout counters; p in [0.1, 0.6). */
function randomDropout(rng: Rng): LoraDropout {
  const n = () => Math.floor(rng.next() * 2 ** 32);
  return { p: 0.1 + 0.5 * rng.next(), seed: n(), step: n(), micro: n(), site: n() };
}

/** f32 -> f16 bits, round to nearest even (normal range only; test values are O(1)). */
function toHalf(v: number): number {
  const u = new Uint32Array(new Float32Array([v]).buffer)[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  const mant = u & 0x7fffff;
  if (exp <= 0) return sign;
  let h = sign | (exp << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++;
  return h;
}

function makeProblem(rng: Rng, c: LoraCase): Problem {
  const { T, K, N, r } = c;
  const s = c.rsLora ? c.alpha / Math.sqrt(r) : c.alpha / r;
  const x = rng.randn(T * K);
  let W = rng.randn(N * K, 0.3);
  if (c.f16) W = Float32Array.from(W, (v) => halfToFloat(toHalf(v)));
  let Wq: Uint8Array[] | undefined;
  if (c.quant) {
    // quantize each part (blocks lie within rows); the reference sees the dequantized values
    Wq = [];
    let n0 = 0;
    for (const rows of c.parts ?? [N]) {
      const bytes = quantizeHost(W.subarray(n0 * K, (n0 + rows) * K), rows, K, c.quant);
      Wq.push(bytes);
      W.set(dequantizeHost(bytes, rows, K, c.quant), n0 * K);
      n0 += rows;
    }
  }
  const A = rng.randn(r * K, 0.3), B = rng.randn(N * r, 0.3);
  const bias = c.bias ? rng.randn(N) : null;
  const drop = c.dropout ? randomDropout(rng) : undefined;
  const dropout = drop ? { keep: refDropoutKeep(dropoutKey(drop), T, K, drop.p), p: drop.p } : undefined;
  let mag: Float32Array | undefined;
  if (c.dora) {
    const norm = refWeightNorm(W, A, B, s, N, K, r);
    mag = Float32Array.from(norm, (v) => v * (1 + 0.3 * rng.normal()));
  }
  return { T, K, N, r, s, x, drop, dropout, W, Wq, bias, A, B, mag, dy: rng.randn(T * N) };
}

function baseWeight(gpu: Gpu, p: Problem, c: LoraCase): Tensor | Tensor[] {
  if (c.quant) {
    const parts = (c.parts ?? [c.N]).map((rows, i) => gpu.upload(p.Wq![i]!, [rows, c.K], c.quant));
    return c.parts ? parts : parts[0]!;
  }
  return splitWeight(gpu, p.W as Float32Array, c.K, c.parts, !!c.f16);
}

function splitWeight(gpu: Gpu, W: Float32Array, K: number, parts: number[] | undefined, f16: boolean): Tensor | Tensor[] {
  const up = (w: Float32Array, rows: number) =>
    f16 ? gpu.upload(Uint16Array.from(w, toHalf), [rows, K], 'f16') : gpu.upload(w, [rows, K]);
  if (!parts) return up(W, W.length / K);
  let n0 = 0;
  return parts.map((rows) => {
    const t = up(W.subarray(n0 * K, (n0 + rows) * K), rows);
    n0 += rows;
    return t;
  });
}

const plus = (a: ArrayLike<number>, b: ArrayLike<number>) => Float64Array.from(b, (v, i) => v + a[i]!);

async function runCase(gpu: Gpu, rng: Rng, c: LoraCase): Promise<void> {
  const p = makeProblem(rng, c);
  const { T, K, N, r } = c;
  const tol = 1e-5;
  const what = (s: string) => `${c.name}: ${s}`;
  const x = gpu.upload(p.x as Float32Array, [T, K]);
  const base = baseWeight(gpu, p, c);
  const bias = p.bias ? gpu.upload(p.bias as Float32Array, [N]) : null;
  const lora: LoraWeights = {
    A: gpu.upload(p.A as Float32Array, [r, K]),
    B: gpu.upload(p.B as Float32Array, [N, r]),
    scaling: p.s,
    magnitude: p.mag ? gpu.upload(p.mag, [N]) : undefined,
  };
  const saved = Object.fromEntries(
    Object.entries(loraSavedShapes(T, N, r, c.dora)).map(([k, shape]) => [k, poisoned(gpu, shape)]),
  ) as unknown as LoraSaved;
  const y = poisoned(gpu, [T, N]);
  loraForward(gpu, x, base, bias, lora, y, saved, { dropout: p.drop });

  const ref = refLoraForward(p);
  expectClose(await gpu.readF32(y), ref.y, tol, what('y'), rng.seed);
  expectClose(await gpu.readF32(saved.xa), ref.xa, tol, what('saved xa'), rng.seed);
  if (c.dora) {
    expectClose(await gpu.readF32(saved.baseOut!), ref.baseOut!, tol, what('saved baseOut'), rng.seed);
    expectClose(await gpu.readF32(saved.normInv!), ref.norm!.map((v) => 1 / v), tol, what('saved normInv'), rng.seed);
  }

  // backward, optionally accumulating onto random contents
  const init = (n: number, acc: boolean | undefined, shape: number[]) => {
    const v = acc ? rng.randn(n) : null;
    return { v, t: v ? gpu.upload(v, shape) : poisoned(gpu, shape) };
  };
  const dx = c.noDx ? null : init(T * K, c.accDx, [T, K]);
  const dA = init(r * K, c.accG, [r, K]), dB = init(N * r, c.accG, [N, r]);
  const dM = c.dora ? init(N, c.accG, [N]) : null;
  const grads: LoraGrads = { dA: dA.t, dB: dB.t, dMagnitude: dM?.t };
  const ws = c.workspace ? poisoned(gpu, loraWorkspaceShape(T, N, c.dora)!) : undefined;
  loraBackward(gpu, gpu.upload(p.dy, [T, N]), x, base, lora, saved, dx?.t ?? null, grads, {
    accumulateDx: c.accDx,
    accumulateGrads: c.accG,
    dropout: p.drop,
    workspace: ws,
  });
  const g = refLoraBackward(p, p.dy);
  const withInit = (o: { v: Float32Array | null }, v: Float64Array) => (o.v ? plus(o.v, v) : v);
  if (dx) expectClose(await gpu.readF32(dx.t), withInit(dx, g.dx), tol, what('dx'), rng.seed);
  expectClose(await gpu.readF32(dA.t), withInit(dA, g.dA), tol, what('dA'), rng.seed);
  expectClose(await gpu.readF32(dB.t), withInit(dB, g.dB), tol, what('dB'), rng.seed);
  if (dM) expectClose(await gpu.readF32(dM.t), withInit(dM, g.dMag!), tol, what('dMagnitude'), rng.seed);
}

describe('lora', () => {
  const checked = LORA_CASES.filter((c) => !c.bench);
  const plain = (c: LoraCase) => !c.quant && !c.f16;
  const groups: [string, (c: LoraCase) => boolean][] = [
    ['LoRA forward and backward match the f64 reference (r = 3 and 16, bias, rsLoRA, split weight, accumulation)', (c) => plain(c) && !c.dora],
    ['DoRA forward and backward (incl. dMagnitude) match the f64 reference', (c) => plain(c) && c.dora],
    ['DoRA and LoRA on q8 / q4 base weights (QLoRA)', (c) => !!c.quant],
    ['DoRA and LoRA with an f16 base weight (packed pairs: any device)', (c) => !!c.f16],
  ];
  for (const [title, which] of groups)
    it(title, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      for (const c of checked.filter(which)) await runCase(gpu, rng, c);
    });

  it('the weight norm ||W + s B A|| per row, K above one workgroup, split weight', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [N, K, r, s] = [5, 300, 4, 0.7];
    const W = rng.randn(N * K), A = rng.randn(r * K), B = rng.randn(N * r);
    const lora = { A: gpu.upload(A, [r, K]), B: gpu.upload(B, [N, r]), scaling: s };
    const out = poisoned(gpu, [N]), outInv = poisoned(gpu, [N]);
    loraWeightNorm(gpu, gpu.upload(W, [N, K]), lora, out);
    loraWeightNorm(gpu, [gpu.upload(W.subarray(0, 2 * K), [2, K]), gpu.upload(W.subarray(2 * K), [3, K])], lora, outInv, true);
    const ref = refWeightNorm(W, A, B, s, N, K, r);
    expectClose(await gpu.readF32(out), ref, 1e-5, 'norm', rng.seed);
    expectClose(await gpu.readF32(outInv), ref.map((v) => 1 / v), 1e-5, 'inverse norm (split)', rng.seed);
  });

  it('the dropout mask: the TS hash bit for bit, keeps 1 - p, new for every seed / step / micro-batch / site', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [T, K] = [61, 67]; // 4087 elements, rows and columns not multiples of anything
    const n = T * K;
    const ones = gpu.upload(new Float32Array(n).fill(1), [T, K]);
    const gpuKeep = async (d: LoraDropout): Promise<Uint8Array> => {
      const out = poisoned(gpu, [T, K]);
      loraDropout(gpu, ones, out, d);
      const v = await gpu.readF32(out);
      const scale = Math.fround(1 / (1 - d.p));
      return Uint8Array.from(v, (e, i) => {
        if (e !== 0 && e !== scale) throw new Error(`element ${i} = ${e}, expected 0 or ${scale} (SEED=${rng.seed})`);
        return e === 0 ? 0 : 1;
      });
    };
    const fraction = (m: Uint8Array) => m.reduce((a, b) => a + b, 0) / m.length;
    const agreement = (a: Uint8Array, b: Uint8Array, pairs: Array<[number, number]>) => pairs.filter(([i, j]) => a[i] === b[j]).length / pairs.length;
    for (const p of [0.1, 0.5, 0.9]) {
      const d = { ...randomDropout(rng), p };
      const keep = await gpuKeep(d);
      expect(keep, `p ${p}: GPU mask vs refDropoutKeep (SEED=${rng.seed})`).toEqual(refDropoutKeep(dropoutKey(d), T, K, p));
      expect(await gpuKeep(d), 'the same counters give the same mask').toEqual(keep);
      // keep fraction within 5 standard deviations of 1 - p
      expect(Math.abs(fraction(keep) - (1 - p)), `p ${p} (SEED=${rng.seed})`).toBeLessThan(5 * Math.sqrt((p * (1 - p)) / n));
      // two independent masks agree on a fraction p² + (1 - p)² of elements
      const indep = p * p + (1 - p) * (1 - p);
      const bound = 5 * Math.sqrt((indep * (1 - indep)) / n);
      const same = Array.from({ length: n }, (_, i): [number, number] => [i, i]);
      for (const k of ['seed', 'step', 'micro', 'site'] as const) {
        const other = await gpuKeep({ ...d, [k]: (d[k] + 1) % 2 ** 32 });
        expect(Math.abs(agreement(keep, other, same) - indep), `${k} + 1, p ${p} (SEED=${rng.seed})`).toBeLessThan(bound);
      }
      const right = Array.from({ length: T * (K - 1) }, (_, i): [number, number] => [i + Math.floor(i / (K - 1)), i + Math.floor(i / (K - 1)) + 1]);
      const below = Array.from({ length: (T - 1) * K }, (_, i): [number, number] => [i, i + K]);
      expect(Math.abs(agreement(keep, keep, right) - indep), `neighbouring columns, p ${p} (SEED=${rng.seed})`).toBeLessThan(2 * bound);
      expect(Math.abs(agreement(keep, keep, below) - indep), `neighbouring rows, p ${p} (SEED=${rng.seed})`).toBeLessThan(2 * bound);
    }
  });

  it('the reference gradients match central finite differences (DoRA norm held fixed)', () => {
    const rng = makeRng();
    const base = { T: 3, K: 6, N: 5, r: 2, alpha: 4 };
    for (const [dora, dropout] of [[false, false], [false, true], [true, false], [true, true]] as const) {
      const c: LoraCase = { name: '', ...base, bias: true, dora, dropout };
      const p = makeProblem(rng, c);
      const norm = dora ? refWeightNorm(p.W, p.A, p.B, p.s, c.N, c.K, c.r) : undefined;
      const fixed: LoraRefProblem = { ...p, norm };
      const g = refLoraBackward(fixed, p.dy);
      const h = 1e-4;
      const check = (key: 'x' | 'A' | 'B' | 'mag', grad: ArrayLike<number>) => {
        const v = Float64Array.from(p[key] as ArrayLike<number>);
        for (let s = 0; s < 6; s++) {
          const i = Math.floor(rng.next() * v.length);
          const at = (d: number) => {
            const w = Float64Array.from(v);
            w[i]! += d;
            return refLoss({ ...fixed, [key]: w }, p.dy);
          };
          const fd = (at(h) - at(-h)) / (2 * h);
          expect(Math.abs(fd - grad[i]!), `${key}[${i}] dora=${dora} dropout=${dropout}: fd ${fd} vs ${grad[i]} (SEED=${rng.seed})`).toBeLessThan(1e-7 * (1 + Math.abs(fd)));
        }
      };
      check('x', g.dx); // with dropout: the base path plus the LoRA path through the fixed mask
      check('A', g.dA);
      check('B', g.dB);
      if (dora) check('mag', g.dMag!);
    }
  });

  it('the detached norm matters: PEFT gradients differ from those of the norm-dependent function', () => {
    const rng = makeRng();
    const c: LoraCase = { name: '', T: 3, K: 6, N: 5, r: 2, alpha: 4, bias: false, dora: true, dropout: false };
    const p = makeProblem(rng, c);
    const g = refLoraBackward(p, p.dy);
    const h = 1e-5;
    let maxDiff = 0;
    for (let i = 0; i < p.B.length; i++) {
      const at = (d: number) => {
        const w = Float64Array.from(p.B);
        w[i]! += d;
        return refLoss({ ...p, B: w }, p.dy); // norm recomputed from the perturbed B
      };
      maxDiff = Math.max(maxDiff, Math.abs((at(h) - at(-h)) / (2 * h) - g.dB[i]!));
    }
    expect(maxDiff, `SEED=${rng.seed}`).toBeGreaterThan(1e-3);
  });

  it('reports bad shapes and unsupported inputs instead of computing garbage', async () => {
    const gpu = await testGpu();
    const [T, K, N, r] = [4, 32, 8, 2];
    const x = gpu.tensor([T, K]), W = gpu.tensor([N, K]), y = gpu.tensor([T, N]);
    const lora: LoraWeights = { A: gpu.tensor([r, K]), B: gpu.tensor([N, r]), scaling: 1 };
    const saved: LoraSaved = { xa: gpu.tensor([T, r]) };
    expect(() => loraForward(gpu, x, W, null, { ...lora, B: gpu.tensor([N, r + 1]) }, y, saved)).toThrow(/lora B is \[8, 3\], expected \[8, 2\]/);
    expect(() => loraForward(gpu, x, W, null, lora, gpu.tensor([T, N + 1]), saved)).toThrow(/y is \[4, 9\], expected \[4, 8\]/);
    expect(() => loraForward(gpu, x, W, null, { ...lora, magnitude: gpu.tensor([N]) }, y, saved)).toThrow(/DoRA needs saved.baseOut/);
    const grads: LoraGrads = { dA: gpu.tensor([r, K]), dB: gpu.tensor([N, r]) };
    const drop: LoraDropout = { p: 0.1, seed: 1, step: 0, micro: 0, site: 0 };
    expect(() => loraForward(gpu, x, W, null, lora, y, saved, { dropout: { ...drop, p: 1 } })).toThrow(/lora dropout p = 1, expected 0 <= p < 1/);
    expect(() => loraBackward(gpu, gpu.tensor([T, N]), x, W, lora, saved, gpu.tensor([T, K]), grads, { dropout: { ...drop, step: -1 } })).toThrow(/lora dropout step = -1/);
    expect(() => loraDropout(gpu, x, gpu.tensor([T, K + 1]), drop)).toThrow(/out is \[4, 33\], expected \[4, 32\]/);
    const wi32 = gpu.tensor([N, K], 'i32');
    const doraSaved = Object.fromEntries(Object.entries(loraSavedShapes(T, N, r, true)).map(([k, s]) => [k, gpu.tensor(s)])) as unknown as LoraSaved;
    expect(() => loraForward(gpu, x, wi32, null, { ...lora, magnitude: gpu.tensor([N]) }, y, doraSaved)).toThrow(/DoRA base weight must be f32, f16, q4 or q8, not i32/);
    await gpu.sync();
  });
});
