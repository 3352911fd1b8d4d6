// GEMM tile tuning (src/kernels/gemm-tiles.ts, gemm-tuner.ts, src/engine/gemm-tuning-node.ts):
// the tuner keeps the fastest candidate by the measured time (an injected fake timer: timings on a
// software adapter mean nothing), a failing candidate falls back to the next and finally to the
// default, tuned products still match the CPU reference, and the per-adapter cache survives a
// round trip and ignores corrupt, foreign and stale entries with a notice. Each test uses shape
// classes of its own: choices live per device for the whole file.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeGemmTuning, nodeTuningStore } from '../src/engine/gemm-tuning-node';
import { crucibleCacheDir } from '../src/files/cache-dir';
import { chosenTile, defaultTile, GEMM_TILES, shapeClass, type GemmShape } from '../src/kernels/gemm-tiles';
import {
  enableGemmTuning, formatTuningEntry, gemmKernelsHash, parseTuningEntry, tuneGemms, tuneRecordedGemms, tuningEnabled, tuningKey,
  type GemmTimer, type TuningStore,
} from '../src/kernels/gemm-tuner';
import { gemm, linear } from '../src/kernels/matmul';
import { expectClose, makeRng } from './helpers/check';
import { poisoned, testGpu } from './helpers/gpu';
import { refGemm } from './reference/matmul';

const gpu = await testGpu();
const [DEF, B, C] = GEMM_TILES.f32.map((t) => t.name) as [string, string, string];
const f32Shape = (layout: string, M: number, N: number, K: number): GemmShape => ({ tier: 'f32', layout, M, N, K, a: 'f32', b: 'f32', c: 'f32' });

/** A timer that runs the product once (it must work) and reports the time `ms` gives the tile; it logs what it timed. */
function fakeTimer(ms: (tile: string, shape: GemmShape) => number, log: string[] = []): GemmTimer {
  return async ({ gpu: g, tile, shape, run }) => {
    run();
    await g.sync();
    log.push(`${shapeClass(shape.tier, shape.layout, shape.M, shape.N, shape.K)} ${tile.name}`);
    return ms(tile.name, shape);
  };
}

function memoryStore(initial: Record<string, string> = {}): TuningStore & { data: Map<string, string> } {
  const data = new Map(Object.entries(initial));
  return { where: 'memory', data, load: async (k) => data.get(k) ?? null, save: async (k, t) => void data.set(k, t) };
}

describe('gemm tuning', () => {
  it('picks the fastest candidate per shape class by the measured time, and the product then runs with it correctly', async () => {
    const rng = makeRng();
    // x Wᵀ: B fastest; dYᵀ·X (split-K): C fastest
    const shapes = [f32Shape('NT', 70, 65, 37), f32Shape('TN', 16, 70, 1000)];
    const table: Record<string, Record<string, number>> = { NT: { [DEF]: 3, [B]: 1, [C]: 2 }, TN: { [DEF]: 3, [B]: 2, [C]: 0.5 } };
    const log: string[] = [];
    const results = await tuneGemms(gpu, shapes, { timer: fakeTimer((t, s) => table[s.layout]![t]!, log), only: { f32: [B, C] }, warmup: 1, reps: 1 });
    expect(results.map((r) => r.tile)).toEqual([B, C]);
    expect(log).toHaveLength(6); // every candidate of both classes timed
    expect(results[0]!.times).toEqual(table.NT);
    expect(chosenTile(gpu, 'f32', 'NT', 70, 65, 37).name).toBe(B);
    expect(chosenTile(gpu, 'f32', 'NT', 80, 100, 60).name, 'a shape of the same class').toBe(B);
    expect(chosenTile(gpu, 'f32', 'NT', 700, 65, 37).name, 'another class keeps the default').toBe(DEF);
    // the launcher now runs the chosen tiles: still the right product
    for (const s of shapes) {
      const [tA, tB] = [s.layout[0] === 'T', s.layout[1] === 'T'];
      const a = rng.randn(s.M * s.K), b = rng.randn(s.K * s.N);
      const tc = poisoned(gpu, [s.M, s.N]);
      gemm(gpu, { a: gpu.upload(a, tA ? [s.K, s.M] : [s.M, s.K]), b: gpu.upload(b, tB ? [s.N, s.K] : [s.K, s.N]), c: tc, M: s.M, N: s.N, K: s.K, transA: tA, transB: tB });
      expectClose(await gpu.readF32(tc), refGemm(a, b, s.M, s.N, s.K, tA, tB), 1e-5, `${s.layout} with its tuned tile`, rng.seed);
    }
  });

  it('a candidate that fails to compile or to run falls back to the next fastest, and finally to the default', async () => {
    const notices: string[] = [];
    const timer = fakeTimer((t) => ({ [DEF]: 5, [B]: 1, [C]: 2 })[t]!);
    // B (fastest) does not compile: C wins
    const failB = async (_g: unknown, _s: GemmShape, tile: { name: string }) => (tile.name === B ? ['injected: no such builtin'] : []);
    let [r] = await tuneGemms(gpu, [f32Shape('NT', 3, 5, 7)], { timer, check: failB, only: { f32: [B, C] }, warmup: 1, reps: 1, notice: (m) => notices.push(m) });
    expect(r!.tile).toBe(C);
    expect(r!.times[B]).toMatch(/does not compile: injected/);
    expect(notices.join('\n')).toMatch(new RegExp(`tile ${B.replace('/', '\\/')} does not compile.*trying the next`));
    // B does not compile and C throws while it runs: the default stays
    const failing: GemmTimer = async (t) => {
      if (t.tile.name === C) throw new Error('injected device error');
      return timer(t);
    };
    [r] = await tuneGemms(gpu, [f32Shape('NN', 3, 5, 7)], { timer: failing, check: failB, only: { f32: [B, C] }, warmup: 1, reps: 1 });
    expect(r!.tile).toBe(DEF);
    expect(r!.times[C]).toMatch(/failed: injected device error/);
    // a real validation error (a binding past the end of its buffer) drops the candidate the same way
    const invalid: GemmTimer = async (t) => {
      if (t.tile.name !== B) return timer(t);
      const small = gpu.tensor([1]);
      const past = { ...small, shape: [1 << 20] };
      gemm(gpu, { a: past, b: past, c: past, M: 64, N: 64, K: 64, tile: B });
      await gpu.sync();
      return 0.1;
    };
    [r] = await tuneGemms(gpu, [f32Shape('NT', 3, 6, 7)], { timer: invalid, only: { f32: [B] }, warmup: 1, reps: 1 });
    expect(r!.times[B]).toMatch(/validation error/);
    expect(r!.tile).toBe(DEF);
    gpu.check(); // the error was caught by the tuner's scope, not left for the next step
  });

  it('the default timer (timestamps, else wall time around a sync) gives each candidate a finite time', async () => {
    const [r] = await tuneGemms(gpu, [f32Shape('TN', 40, 24, 8)], { only: { f32: [B] }, warmup: 1, reps: 2 });
    for (const name of [DEF, B]) expect(Number.isFinite(r!.times[name]) && (r!.times[name] as number) >= 0, `${name}: ${r!.times[name]}`).toBe(true);
    expect([DEF, B]).toContain(r!.tile);
  });

  it('stops at the time budget: the classes left keep the default tile, with a notice', async () => {
    const notices: string[] = [];
    const results = await tuneGemms(gpu, [f32Shape('NT', 9, 9, 9), f32Shape('NN', 9, 9, 9)], { budgetMs: 0, timer: fakeTimer(() => 1), notice: (m) => notices.push(m) });
    expect(results).toEqual([]);
    expect(notices.join('\n')).toMatch(/budget ran out; 2 shape classes keep the default tile/);
    expect(chosenTile(gpu, 'f32', 'NT', 9, 9, 9).name).toBe(DEF);
  });

  it('records the products run at first use, tunes the ones not cached, and the cache round-trips', async () => {
    const store = memoryStore();
    // a linear layer's forward at 200 tokens: one x Wᵀ product of class 256x64x32
    const x = gpu.tensor([200, 20]), w = gpu.tensor([33, 20]), y = gpu.tensor([200, 33]);
    const log: string[] = [];
    await enableGemmTuning(gpu, store, { timer: fakeTimer((t) => (t === C ? 1 : 2), log), only: { f32: [C] }, warmup: 1, reps: 1 });
    linear(gpu, x, w, y);
    const results = await tuneRecordedGemms(gpu);
    expect(results.map((r) => [r.cls, r.tile])).toEqual([['f32:NT:256x64x32', C]]);
    expect(log).toEqual([`f32:NT:256x64x32 ${DEF}`, `f32:NT:256x64x32 ${C}`]);
    expect(await tuneRecordedGemms(gpu), 'tuned once').toEqual([]);
    const text = store.data.get(tuningKey(gpu))!;
    const parsed = parseTuningEntry(text, gpu.caps.identity, gemmKernelsHash());
    expect(parsed instanceof Map && parsed.get('f32:NT:256x64x32')).toBe(C);
    // the next run: the cached class is not timed again, a new one is
    log.length = 0;
    await enableGemmTuning(gpu, store, { timer: fakeTimer(() => 1, log), only: { f32: [] }, warmup: 1, reps: 1 });
    linear(gpu, x, w, y);
    gemm(gpu, { a: x, b: gpu.tensor([200, 20]), c: gpu.tensor([20, 20]), M: 20, N: 20, K: 200, transA: true, transB: false });
    await tuneRecordedGemms(gpu);
    expect(log).toEqual([`f32:TN:32x32x256 ${DEF}`]);
    expect(chosenTile(gpu, 'f32', 'NT', 200, 33, 20).name).toBe(C);
  });

  it('a corrupt, foreign or stale cache entry is ignored with a notice, never a crash', async () => {
    const key = tuningKey(gpu);
    const good = (choices: Record<string, string>, adapter = gpu.caps.identity, kernels = gemmKernelsHash()) =>
      formatTuningEntry(adapter, kernels, new Map(Object.entries(choices)));
    const cases: [string, string, RegExp][] = [
      ['truncated JSON', '{"format": "crucible-gemm', /is corrupt \(/],
      ['not an entry', '[1, 2]', /is corrupt \(not a tuning entry\)/],
      ['unknown tile', good({ 'f32:NT:8x8x8': 'no-such-tile' }), /is corrupt \(gemm tile "no-such-tile" is not a f32 tile/],
      ['another adapter', good({ 'f32:NT:8x8x8': B }, 'Other/gpu/driver'), /is for another adapter \(Other\/gpu\/driver\)/],
      ['other kernels', good({ 'f32:NT:8x8x8': B }, gpu.caps.identity, '00000000'), /is stale \(the GEMM kernels changed since\)/],
    ];
    for (const [what, text, notice] of cases) {
      const notices: string[] = [];
      await enableGemmTuning(gpu, memoryStore({ [key]: text }), { notice: (m) => notices.push(m) });
      expect(notices.join('\n'), what).toMatch(notice);
      expect(notices.join('\n'), what).toMatch(/ignoring it and tuning afresh/);
      expect(chosenTile(gpu, 'f32', 'NT', 8, 8, 8).name, what).toBe(DEF);
    }
    // a store that cannot be read: a notice, tuning goes on
    const notices: string[] = [];
    const broken: TuningStore = { where: 'nowhere', load: async () => { throw new Error('EIO'); }, save: async () => {} };
    await enableGemmTuning(gpu, broken, { notice: (m) => notices.push(m) });
    expect(notices.join('\n')).toMatch(/could not read nowhere: EIO/);
    // and a good entry applies at once
    await enableGemmTuning(gpu, memoryStore({ [key]: good({ 'f32:NT:8x8x8': B }) }));
    expect(chosenTile(gpu, 'f32', 'NT', 7, 8, 5).name).toBe(B);
  });

  it('the Node store writes one file per adapter in the cache folder, atomically; auto mode is off on software adapters', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crucible-tune-'));
    const store = nodeTuningStore(dir);
    expect(await store.load('k')).toBeNull();
    await store.save('k', 'text\n');
    expect(readFileSync(join(dir, 'k.json'), 'utf8')).toBe('text\n');
    expect(await store.load('k')).toBe('text\n');
    writeFileSync(join(dir, `${tuningKey(gpu)}.json`), '\u0000garbage');
    const notices: string[] = [];
    expect(await nodeGemmTuning(gpu, { mode: 'on', store, notice: (m) => notices.push(m) })).toBe(true);
    expect(notices.join('\n')).toMatch(/in .*crucible-tune-.* is corrupt/);

    expect(crucibleCacheDir({ XDG_CACHE_HOME: '/x' })).toBe('/x/crucible');
    expect(crucibleCacheDir({ CRUCIBLE_CACHE_DIR: '/c', XDG_CACHE_HOME: '/x' })).toBe('/c');
    expect(crucibleCacheDir({ HOME: '/h' })).toBe('/h/.cache/crucible');
    const sw = { ...gpu, caps: { ...gpu.caps, software: true } } as typeof gpu;
    const hw = { ...gpu, caps: { ...gpu.caps, software: false } } as typeof gpu;
    expect([tuningEnabled(sw, undefined), tuningEnabled(sw, 'auto'), tuningEnabled(hw, ''), tuningEnabled(sw, 'on'), tuningEnabled(hw, 'off')]).toEqual([false, false, true, true, false]);
    expect(() => tuningEnabled(hw, 'fast')).toThrow(/"fast" is not one of auto, on, off/);
    expect(defaultTile('f32').name).toBe('64x64x16/4x4');
  });
});
