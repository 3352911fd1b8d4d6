// Kernel family: optim (shaders/optim.wgsl, src/kernels/optim.ts), the fused arena kernels:
// adamwSegments and gradNormSquaredSegments over tensors laid out in one buffer by a segment table.
import { describe, expect, it } from 'vitest';
import type { Gpu } from '../src/gpu/runtime';
import { adamwSegments, gradNormSquaredSegments, segmentTable, type Segment } from '../src/kernels/optim';
import { testGpu } from './helpers/gpu';
import { expectClose, makeRng, type Rng } from './helpers/check';
import { refAdamW, refSumSq } from './reference/optim';

/** Tensors of odd lengths at 64-element-aligned offsets (as the trainer's arena lays them out), in `groups` groups. */
function layout(sizes: readonly number[], groups: number, start = 0): Segment[] {
  let at = start;
  return sizes.map((n, k) => {
    const first = at;
    at = Math.ceil((first + n) / 64) * 64 + (k % 2) * 64; // some gaps wider than the alignment
    return { first, end: first + n, group: k % groups };
  });
}

/** An arena buffer: the segments' values from `fill`, `pad` everywhere else. */
function arena(segs: readonly Segment[], span: number, pad: number, fill: (n: number) => Float32Array): { host: Float32Array; parts: Float32Array[] } {
  const host = new Float32Array(span).fill(pad);
  const parts = segs.map((s) => {
    const part = fill(s.end - s.first);
    host.set(part, s.first);
    return part;
  });
  return { host, parts };
}

const PAD = 12345.5;

function checkPadding(got: Float32Array, segs: readonly Segment[], what: string): void {
  const inside = new Uint8Array(got.length);
  for (const s of segs) inside.fill(1, s.first, s.end);
  got.forEach((x, i) => {
    if (!inside[i] && x !== PAD) expect.fail(`${what}: padding element ${i} was written (${x})`);
  });
}

async function runAdamW(gpu: Gpu, rng: Rng, sizes: number[], groups: { lrScale: number; decay: boolean }[]): Promise<void> {
  {
    const segs = layout(sizes, groups.length, 64);
    const span = segs.at(-1)!.end + 64;
    const p0 = arena(segs, span, PAD, (n) => rng.randn(n));
    const p = gpu.upload(p0.host, [span]);
    const m = gpu.upload(new Float32Array(span).fill(PAD), [span]), v = gpu.upload(new Float32Array(span).fill(PAD), [span]);
    for (const s of segs) {
      gpu.write(m, new Float32Array(s.end - s.first), s.first * 4);
      gpu.write(v, new Float32Array(s.end - s.first), s.first * 4);
    }
    const table = segmentTable(gpu, segs);
    const base = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
    const scaleValue = 0.625;
    const scale = gpu.upload(Float32Array.of(scaleValue), [1]);
    const ref = segs.map((_, k) => ({ p: Float64Array.from(p0.parts[k]!), m: new Float64Array(sizes[k]!), v: new Float64Array(sizes[k]!) }));
    for (let step = 1; step <= 3; step++) {
      // padding of the gradients is NaN: reading it into any update would show
      const g = arena(segs, span, NaN, (n) => rng.randn(n, step === 2 ? 1e-3 : 1));
      adamwSegments(gpu, p, gpu.upload(g.host, [span]), m, v, table, {
        ...base, step, gradScale: scale, groups: groups.map((r) => ({ lr: base.lr * r.lrScale, weightDecay: r.decay ? base.weightDecay : 0 })),
      });
      segs.forEach((s, k) => {
        const r = groups[s.group]!;
        refAdamW(ref[k]!.p, g.parts[k]!, ref[k]!.m, ref[k]!.v, { ...base, step, gradScale: scaleValue, lr: base.lr * r.lrScale, weightDecay: r.decay ? base.weightDecay : 0 });
      });
    }
    const [pOut, mOut, vOut] = [await gpu.readF32(p), await gpu.readF32(m), await gpu.readF32(v)];
    segs.forEach((s, k) => {
      const got = pOut.subarray(s.first, s.end), p0k = p0.parts[k]!;
      // moves measured against the segment's rate (the net move of one element may cancel)
      const rate = base.lr * groups[s.group]!.lrScale;
      got.forEach((x, i) => {
        const err = Math.abs(x - p0k[i]! - (ref[k]!.p[i]! - p0k[i]!));
        if (err > 1e-4 * rate) expect.fail(`segment ${k} (n ${sizes[k]}) element ${i}: error ${err} > ${1e-4 * rate} (SEED=${rng.seed})`);
      });
      expectClose(mOut.subarray(s.first, s.end), ref[k]!.m, 1e-5, `m of segment ${k}`, rng.seed);
      expectClose(vOut.subarray(s.first, s.end), ref[k]!.v, 1e-5, `v of segment ${k}`, rng.seed);
    });
    for (const [what, out] of [['p', pOut], ['m', mOut], ['v', vOut]] as const) checkPadding(out, segs, what);
    gpu.release(p, m, v, scale, table.tensor);
  }
}

describe('optim segments', () => {
  it('adamwSegments: each segment takes its group\'s rate and decay, clipped, over three steps; padding untouched', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const groups = [{ lrScale: 1, decay: true }, { lrScale: 16, decay: true }, { lrScale: 1, decay: false }, { lrScale: 0.5, decay: false }];
    await runAdamW(gpu, rng, [1, 7, 300, 64, 65, 4099, 3, 1000], groups);
  });

  it('adamwSegments: eight groups, one segment each', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const groups = Array.from({ length: 8 }, (_, k) => ({ lrScale: 1 + k, decay: k % 3 !== 0 }));
    await runAdamW(gpu, rng, [5, 129, 1, 63, 257, 2, 77, 640], groups);
  });

  it('gradNormSquaredSegments over two arenas is accurate, skips the padding and is bitwise reproducible', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const arenas = [[1, 255, 257, 4097, 12345], [3, 700_001, 9]].map((sizes) => {
      const segs = layout(sizes, 1);
      const span = segs.at(-1)!.end;
      const g = arena(segs, span, NaN, (n) => rng.randn(n));
      return { grads: gpu.upload(g.host, [span]), table: segmentTable(gpu, segs), parts: g.parts };
    });
    const a = gpu.upload(Float32Array.of(NaN), [1]), b = gpu.upload(Float32Array.of(NaN), [1]);
    gradNormSquaredSegments(gpu, arenas, a);
    gradNormSquaredSegments(gpu, [...arenas], b);
    const [ra, rb] = [(await gpu.readF32(a))[0]!, (await gpu.readF32(b))[0]!];
    expect(ra).toBe(rb);
    const want = refSumSq(arenas.flatMap((x) => x.parts));
    expect(Math.abs(ra - want) / want, `sum ${ra} vs ${want} (SEED=${rng.seed})`).toBeLessThan(1e-5);
  });

  it('segmentTable refuses overlapping, unsorted or empty segments and unknown groups', async () => {
    const gpu = await testGpu();
    expect(() => segmentTable(gpu, [{ first: 0, end: 10, group: 0 }, { first: 5, end: 20, group: 0 }])).toThrow(/segment 1 \[5, 20\) is empty, unsorted or overlaps/);
    expect(() => segmentTable(gpu, [{ first: 64, end: 64, group: 0 }])).toThrow(/segment 0/);
    expect(() => segmentTable(gpu, [{ first: 0, end: 4, group: 8 }])).toThrow(/group 8; groups are 0 to 7/);
    expect(() => segmentTable(gpu, [])).toThrow(/at least one segment/);
  });
});
