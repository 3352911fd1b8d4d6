// Kernel family: embedding (shaders/embedding.wgsl, src/kernels/embedding.ts)
import { describe, expect, it } from 'vitest';
import { EMBEDDING_CASES } from '../src/bench/cases/embedding';
import { checkIds, embeddingForward, embeddingBackward, embeddingCsr } from '../src/kernels/embedding';
import { Gpu } from '../src/gpu/runtime';
import { testGpu, poisoned } from './helpers/gpu';
import { expectClose, makeRng } from './helpers/check';
import { embeddingBackwardRef, embeddingRef } from './reference/embedding';

const checked = (direction: 'forward' | 'backward') => EMBEDDING_CASES.filter((c) => !c.bench && c.direction === direction);

describe('embedding', () => {
  it('the reference gradient matches finite differences of the reference forward', () => {
    const rng = makeRng();
    const [V, D] = [5, 3];
    const ids = [4, 0, 4, 2];
    const table = Float64Array.from(rng.randn(V * D)), dOut = rng.randn(ids.length * D);
    const g = embeddingBackwardRef(ids, dOut, V, D, 1.7);
    const loss = () => embeddingRef(ids, table, D, 1.7).reduce((s, v, i) => s + v * dOut[i]!, 0);
    const h = 1e-6;
    for (let i = 0; i < V * D; i++) {
      const v = table[i]!;
      table[i] = v + h;
      const lp = loss();
      table[i] = v - h;
      const lm = loss();
      table[i] = v;
      expect(Math.abs((lp - lm) / (2 * h) - g[i]!), `dTable[${i}] (SEED=${rng.seed})`).toBeLessThan(1e-8);
    }
  });

  it('checkIds names the first bad index; the CSR groups rows by id in order', () => {
    expect(() => checkIds(Int32Array.of(0, 3, 9, -1), 9)).toThrow(/token id 9 at index 2 is outside the vocabulary \[0, 9\)/);
    expect(() => checkIds(Int32Array.of(0, -1), 9)).toThrow(/token id -1 at index 1/);
    expect(() => checkIds(Int32Array.of(0, 8), 9)).not.toThrow();
    const { U, data } = embeddingCsr(Int32Array.of(5, 2, 5, 7, 2, 5), 8);
    expect(U).toBe(3);
    expect(Array.from(data)).toEqual([2, 5, 7, 0, 2, 5, 6, 1, 4, 0, 2, 5, 3]);
  });

  it('forward on a single and a split table, one token and odd widths, with a scale', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    for (const { T, V, D } of checked('forward')) {
      const table = rng.randn(V * D);
      const ids = rng.int(T, V);
      ids[0] = V - 1;
      const scale = Math.fround(Math.sqrt(D));
      const tIds = gpu.upload(ids, [T], 'i32'), tTable = gpu.upload(table, [V, D]);
      const out = poisoned(gpu, [T, D]);
      embeddingForward(gpu, tIds, tTable, out, scale);
      const ref = embeddingRef(ids, table, D, scale);
      expectClose(await gpu.readF32(out), ref, 1e-6, `T ${T} V ${V} D ${D}`, rng.seed);
      if (V >= 3) {
        // three row parts
        const cuts = [0, Math.floor(V / 3), Math.floor((2 * V) / 3), V];
        const parts = cuts.slice(1).map((c, i) => gpu.upload(table.subarray(cuts[i]! * D, c * D), [c - cuts[i]!, D]));
        const outSplit = poisoned(gpu, [T, D]);
        embeddingForward(gpu, tIds, parts, outSplit, scale);
        expectClose(await gpu.readF32(outSplit), ref, 1e-6, `split table T ${T} V ${V} D ${D}`, rng.seed);
        gpu.release(outSplit, ...parts);
      }
      gpu.release(tIds, tTable, out);
    }
  });

  it('ids outside the vocabulary give NaN rows on the GPU, valid rows are still written', async () => {
    const gpu = await testGpu();
    const [V, D] = [6, 5];
    const table = Float32Array.from({ length: V * D }, (_, i) => i);
    const ids = Int32Array.of(2, -1, 6, 5, 1000);
    const parts = [gpu.upload(table.subarray(0, 4 * D), [4, D]), gpu.upload(table.subarray(4 * D), [2, D])];
    const out = gpu.tensor([ids.length, D]);
    gpu.write(out, new Float32Array(ids.length * D).fill(123));
    embeddingForward(gpu, gpu.upload(ids, [ids.length], 'i32'), parts, out);
    const o = await gpu.readF32(out);
    for (let d = 0; d < D; d++) {
      expect(o[d]).toBe(2 * D + d);
      expect(o[3 * D + d]).toBe(5 * D + d);
      for (const t of [1, 2, 4]) expect(o[t * D + d]).toBeNaN();
    }
  });

  it('backward: overwrite (absent ids zero), accumulate, deterministic', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    for (const { T, V, D } of checked('backward')) {
      const ids = rng.int(T, V);
      const dOut = rng.randn(T * D);
      const tdOut = gpu.upload(dOut, [T, D]);
      const dTable = poisoned(gpu, [V, D]);
      embeddingBackward(gpu, ids, tdOut, dTable, 0.5);
      const first = await gpu.readF32(dTable);
      expectClose(first, embeddingBackwardRef(ids, dOut, V, D, 0.5), 1e-6, `dTable T ${T} V ${V} D ${D}`, rng.seed);
      embeddingBackward(gpu, ids, tdOut, dTable, 0.5);
      expect(Array.from(await gpu.readF32(dTable)), 'deterministic').toEqual(Array.from(first));

      const init = rng.randn(V * D);
      const acc = gpu.upload(init, [V, D]);
      embeddingBackward(gpu, ids, tdOut, acc, 0.5, true);
      expectClose(await gpu.readF32(acc), embeddingBackwardRef(ids, dOut, V, D, 0.5, init), 1e-6, `accumulated T ${T}`, rng.seed);
      gpu.release(tdOut, dTable, acc);
    }
    const gpu2 = await testGpu();
    expect(() => embeddingBackward(gpu2, Int32Array.of(0, 4), gpu2.tensor([2, 3]), gpu2.tensor([4, 3]))).toThrow(/token id 4 at index 1/);
  });

  it('token and distinct-id counts beyond one grid dimension fold into y', async () => {
    const gpu = foldingGpu(await testGpu());
    const rng = makeRng();
    const T = 2040, V = T + 7, D = 3;
    expect(gpu.grid(T)[1]).toBeGreaterThan(1);
    const ids = Int32Array.from({ length: T }, (_, t) => (t * 7919) % V);
    ids[T - 1] = ids[0]!; // one repeated id
    const table = rng.randn(V * D), dOut = rng.randn(T * D);
    const out = poisoned(gpu, [T, D]), dTable = poisoned(gpu, [V, D]);
    embeddingForward(gpu, gpu.upload(ids, [T], 'i32'), gpu.upload(table, [V, D]), out);
    embeddingBackward(gpu, ids, gpu.upload(dOut, [T, D]), dTable);
    expectClose(await gpu.readF32(out), embeddingRef(ids, table, D), 0, 'out', rng.seed);
    expectClose(await gpu.readF32(dTable), embeddingBackwardRef(ids, dOut, V, D), 1e-7, 'dTable', rng.seed);
  });

  it('an f16 table gives the f16-rounded rows (packed pairs: any device)', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [T, V, D] = [9, 12, 70];
    const table = rng.randn(V * D);
    const bits = Uint16Array.from(table, (v) => floatToHalf(v));
    const rounded = new Float32Array(V * D);
    for (let i = 0; i < V * D; i++) rounded[i] = halfToFloatRef(bits[i]!);
    const ids = rng.int(T, V);
    const out = poisoned(gpu, [T, D]);
    embeddingForward(gpu, gpu.upload(ids, [T], 'i32'), gpu.upload(bits, [V, D], 'f16'), out, 3);
    expectClose(await gpu.readF32(out), embeddingRef(ids, rounded, D, 3), 1e-7, 'f16 table', rng.seed);
  });
});

/** The same device with a small per-dimension workgroup limit, so that grid() folds cheaply. */
function foldingGpu(gpu: Gpu, maxPerDim = 1000): Gpu {
  return new Gpu(gpu.device, { ...gpu.caps, limits: { ...gpu.caps.limits, maxComputeWorkgroupsPerDimension: maxPerDim } });
}

/** f32 -> f16 bits, round to nearest even (finite, normal-range test values). */
function floatToHalf(x: number): number {
  const f = new Float32Array([x]);
  const b = new Uint32Array(f.buffer)[0]!;
  const sign = (b >>> 16) & 0x8000;
  const e = ((b >>> 23) & 0xff) - 127 + 15;
  const m = b & 0x7fffff;
  if (e <= 0) return sign; // tiny values flush to zero (randn never gets there)
  let h = (e << 10) | (m >>> 13);
  const rest = m & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
  return sign | h;
}

function halfToFloatRef(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
