// Kernel family: attention (shaders/attention.wgsl, src/kernels/attention.ts)
import { describe, expect, it } from 'vitest';
import { attentionForward, attentionBackward, chooseTiles, type AttentionOptions, type AttentionShape } from '../src/kernels/attention';
import { ATTENTION_CASES, type AttentionCase } from '../src/bench/cases/attention';
import type { Gpu } from '../src/gpu/runtime';
import { testGpu, poisoned } from './helpers/gpu';
import { expectClose, makeRng, type Rng } from './helpers/check';
import { refAttention, refAttentionBackward, refAttentionLoss, refVisible, type RefShape } from './reference/attention';

// SwiftShader compiles a kernel in time proportional to its workgroup memory (Dawn zero-initializes
// it), so cases run with the tiles of an 8 KiB budget unless they ask otherwise.
const SMALL: AttentionOptions = { storageBytes: 8192 };

function segmentIds(rng: Rng, B: number, S: number, pNew: number): Int32Array {
  const seg = new Int32Array(B * S);
  for (let b = 0; b < B; b++) {
    let id = 0;
    for (let i = 0; i < S; i++) {
      if (i > 0 && rng.next() < pNew) id++;
      seg[b * S + i] = id;
    }
  }
  return seg;
}

async function runCase(gpu: Gpu, rng: Rng, c: AttentionCase): Promise<void> {
  const { batch: B, qLen: Sq, heads: Hq, kvHeads: Hkv, headDim: Dh } = c;
  const cap = c.kvCapacity ?? c.kvLen;
  const seg = c.packed !== undefined ? segmentIds(rng, B, Sq, c.packed) : undefined;
  const ref: RefShape = { ...c, scale: c.scale ?? 1 / Math.sqrt(Dh), segments: seg };
  const q = rng.randn(B * Sq * Hq * Dh, 1.5);
  const k = rng.randn(B * cap * Hkv * Dh);
  const v = rng.randn(B * cap * Hkv * Dh);
  // cache rows past kvLen hold garbage the kernels must never read
  for (let b = 0; b < B; b++) k.fill(NaN, (b * cap + c.kvLen) * Hkv * Dh, (b + 1) * cap * Hkv * Dh);
  for (let b = 0; b < B; b++) v.fill(NaN, (b * cap + c.kvLen) * Hkv * Dh, (b + 1) * cap * Hkv * Dh);

  const tq = gpu.upload(q, [B, Sq, Hq, Dh]);
  const tk = gpu.upload(k, [B, cap, Hkv, Dh]);
  const tv = gpu.upload(v, [B, cap, Hkv, Dh]);
  const tseg = seg ? gpu.upload(seg, [B * Sq], 'i32') : undefined;
  const shape: AttentionShape = { ...ref, segments: tseg };
  const opts = c.opts === 'device' ? undefined : (c.opts ?? SMALL);
  const out = poisoned(gpu, [B, Sq, Hq, Dh]);
  const lse = poisoned(gpu, [B, Hq, Sq]);
  attentionForward(gpu, tq, tk, tv, out, c.noLse ? null : lse, shape, opts);
  const r = refAttention(q, k, v, ref);
  const what = `${c.name} [B=${B} Sq=${Sq} kv=${c.kvLen}/${cap} Hq=${Hq} Hkv=${Hkv} Dh=${Dh}]`;
  expectClose(await gpu.readF32(out), r.out, 1e-4, `${what} out`, rng.seed);
  if (!c.noLse) expectClose(await gpu.readF32(lse), r.lse, 1e-5, `${what} lse`, rng.seed);

  if (c.backward) {
    const dO = rng.randn(B * Sq * Hq * Dh);
    const tdO = gpu.upload(dO, [B, Sq, Hq, Dh]);
    const dq = poisoned(gpu, [B, Sq, Hq, Dh]);
    const dk = poisoned(gpu, [B, cap, Hkv, Dh]);
    const dv = poisoned(gpu, [B, cap, Hkv, Dh]);
    attentionBackward(gpu, tdO, tq, tk, tv, out, lse, dq, dk, dv, shape, opts);
    const g = refAttentionBackward(dO, q, k, v, ref);
    expectClose(await gpu.readF32(dq), g.dq, 1e-4, `${what} dq`, rng.seed);
    expectClose(await gpu.readF32(dk), g.dk, 1e-4, `${what} dk`, rng.seed);
    expectClose(await gpu.readF32(dv), g.dv, 1e-4, `${what} dv`, rng.seed);
    if (c.twice) {
      const dq2 = poisoned(gpu, [B, Sq, Hq, Dh]), dk2 = poisoned(gpu, [B, cap, Hkv, Dh]), dv2 = poisoned(gpu, [B, cap, Hkv, Dh]);
      attentionBackward(gpu, tdO, tq, tk, tv, out, lse, dq2, dk2, dv2, shape, opts);
      for (const [a, b2, n] of [[dq, dq2, 'dq'], [dk, dk2, 'dk'], [dv, dv2, 'dv']] as const) {
        expect(new Uint32Array((await gpu.readF32(b2)).buffer), `${what} ${n} is deterministic`).toEqual(new Uint32Array((await gpu.readF32(a)).buffer));
      }
      gpu.release(dq2, dk2, dv2);
    }
    gpu.release(tdO, dq, dk, dv);
  }
  gpu.release(tq, tk, tv, tseg, out, lse);
}

describe('attention', () => {
  for (const c of ATTENTION_CASES.filter((c) => !c.bench))
    it(`${c.name}: forward${c.backward ? ' and backward' : ''} match the f64 reference`, async () => {
      const gpu = await testGpu();
      await runCase(gpu, makeRng(), c);
    });

  it('rows that see no key give zeros (finite lse), never NaN', async () => {
    // qOffset < 0 hides every key from the first queries; past kvLen with a window, from the last
    const gpu = await testGpu();
    const rng = makeRng();
    for (const c of [
      { batch: 1, qLen: 5, kvLen: 5, qOffset: -2, heads: 2, kvHeads: 1, headDim: 16 },
      { batch: 1, qLen: 4, kvLen: 6, kvCapacity: 8, qOffset: 4, window: 3, heads: 2, kvHeads: 2, headDim: 16 },
      { batch: 1, qLen: 2, kvLen: 0, kvCapacity: 4, heads: 2, kvHeads: 1, headDim: 16 },
    ]) {
      const cap = c.kvCapacity ?? c.kvLen, { batch: B, qLen: Sq, heads: Hq, kvHeads: Hkv, headDim: Dh } = c;
      const ref: RefShape = { ...c, scale: 0.25 }, shape: AttentionShape = { ...c, scale: 0.25 };
      const q = rng.randn(B * Sq * Hq * Dh), k = rng.randn(B * cap * Hkv * Dh), v = rng.randn(B * cap * Hkv * Dh), dO = rng.randn(B * Sq * Hq * Dh);
      const tq = gpu.upload(q, [B, Sq, Hq, Dh]), tk = gpu.upload(k, [B, cap, Hkv, Dh]), tv = gpu.upload(v, [B, cap, Hkv, Dh]);
      const out = poisoned(gpu, [B, Sq, Hq, Dh]), lse = poisoned(gpu, [B, Hq, Sq]);
      const dq = poisoned(gpu, [B, Sq, Hq, Dh]), dk = poisoned(gpu, [B, cap, Hkv, Dh]), dv = poisoned(gpu, [B, cap, Hkv, Dh]);
      attentionForward(gpu, tq, tk, tv, out, lse, shape, SMALL);
      attentionBackward(gpu, gpu.upload(dO, [B, Sq, Hq, Dh]), tq, tk, tv, out, lse, dq, dk, dv, shape, SMALL);
      const r = refAttention(q, k, v, ref), g = refAttentionBackward(dO, q, k, v, ref);
      const gl = await gpu.readF32(lse);
      r.lse.forEach((x, n) => {
        if (x === -Infinity) expect(gl[n]).toBeLessThan(-1e29);
        else expect(Math.abs(gl[n]! - x)).toBeLessThan(1e-4);
      });
      expectClose(await gpu.readF32(out), r.out, 1e-4, 'out', rng.seed);
      for (const [t, want, n] of [[dq, g.dq, 'dq'], [dk, g.dk, 'dk'], [dv, g.dv, 'dv']] as const) {
        const got = await gpu.readF32(t);
        expect(got.every(Number.isFinite), `${n} finite`).toBe(true);
        if (want.some((x) => x !== 0)) expectClose(got, want, 1e-4, n, rng.seed);
        else expect(got.every((x) => x === 0), `${n} zero`).toBe(true);
      }
    }
  });

  it('folds more than 65535 workgroups with grid()', async () => {
    const gpu = await testGpu();
    await runCase(gpu, makeRng(), { name: 'many workgroups', batch: 66000, qLen: 1, kvLen: 2, kvCapacity: 2, heads: 1, kvHeads: 1, headDim: 1, backward: true });
  });

  it('the reference gradient matches central finite differences of the reference forward', () => {
    const rng = makeRng();
    const configs: RefShape[] = [
      { batch: 1, qLen: 6, kvLen: 6, heads: 4, kvHeads: 2, headDim: 5, scale: 0.6, softcap: 1.2, window: 3 },
      { batch: 2, qLen: 7, kvLen: 7, heads: 2, kvHeads: 1, headDim: 3, scale: 0.8, segments: segmentIds(rng, 2, 7, 0.3) },
      { batch: 1, qLen: 3, kvLen: 7, kvCapacity: 9, heads: 2, kvHeads: 2, headDim: 4, scale: 0.7 },
    ];
    for (const s of configs) {
      const cap = s.kvCapacity ?? s.kvLen;
      const nq = s.batch * s.qLen * s.heads * s.headDim, nkv = s.batch * cap * s.kvHeads * s.headDim;
      const q = Float64Array.from(rng.randn(nq)), k = Float64Array.from(rng.randn(nkv)), v = Float64Array.from(rng.randn(nkv));
      const dO = Float64Array.from(rng.randn(nq));
      const g = refAttentionBackward(dO, q, k, v, s);
      const eps = 1e-5;
      for (const [name, x, grad] of [['q', q, g.dq], ['k', k, g.dk], ['v', v, g.dv]] as const) {
        for (let n = 0; n < 8; n++) {
          const idx = Math.floor(rng.next() * x.length);
          const x0 = x[idx]!;
          x[idx] = x0 + eps;
          const lp = refAttentionLoss(dO, q, k, v, s);
          x[idx] = x0 - eps;
          const lm = refAttentionLoss(dO, q, k, v, s);
          x[idx] = x0;
          const fd = (lp - lm) / (2 * eps);
          expect(Math.abs(fd - grad[idx]!), `d${name}[${idx}] fd ${fd} vs ${grad[idx]} (SEED=${rng.seed})`).toBeLessThan(1e-7 * Math.max(1, Math.abs(fd)));
        }
      }
    }
  });

  it('masks by HF sliding-window semantics: a window of W keeps the last W positions', () => {
    const s: RefShape = { batch: 1, qLen: 8, kvLen: 8, heads: 1, kvHeads: 1, headDim: 1, scale: 1, window: 3 };
    const keys = (i: number) => [...Array(8).keys()].filter((j) => refVisible(s, 0, i, j));
    expect(keys(0)).toEqual([0]);
    expect(keys(5)).toEqual([3, 4, 5]);
    // decode: query 0 sits at absolute position qOffset = kvLen - qLen
    expect([...Array(8).keys()].filter((j) => refVisible({ ...s, qLen: 1 }, 0, 0, j))).toEqual([5, 6, 7]);
  });

  it('picks tiles that fit the workgroup storage limit for every real head dim', () => {
    for (const limit of [16384, 32768, 49152])
      for (const Dh of [64, 80, 96, 128, 256])
        for (const kernel of ['fwd', 'kv', 'q'] as const) {
          const t = chooseTiles(kernel, Dh, 4096, 4096, limit);
          expect(t.NT).toBeLessThanOrEqual(256);
          expect(Math.ceil(Dh / t.TD)).toBeLessThanOrEqual(16);
          expect(t.BR).toBeGreaterThanOrEqual(1);
          expect(t.BC).toBeGreaterThanOrEqual(1);
        }
  });

  it('reports shape errors by name', async () => {
    const gpu = await testGpu();
    const q = gpu.tensor([1, 4, 4, 16]), k = gpu.tensor([1, 4, 2, 16]), out = gpu.tensor([1, 4, 4, 16]);
    const shape: AttentionShape = { batch: 1, qLen: 4, kvLen: 4, heads: 4, kvHeads: 2, headDim: 16, scale: 0.25 };
    expect(() => attentionForward(gpu, q, k, gpu.tensor([1, 4, 2, 8]), out, null, shape)).toThrow(/v has shape \[1, 4, 2, 8\]/);
    expect(() => attentionForward(gpu, q, k, k, out, null, { ...shape, kvHeads: 3 })).toThrow(/not a multiple of kvHeads/);
    expect(() => attentionForward(gpu, q, k, k, out, null, { ...shape, kvLen: 5 })).toThrow(/kvLen 5 exceeds kvCapacity 4|k has shape/);
    gpu.release(q, k, out);
  });
});
