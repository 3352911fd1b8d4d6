// GPU runtime: program order of host writes and recorded commands, capabilities, clear errors.
import { describe, expect, it } from 'vitest';
import { axpy } from '../src/kernels/elementwise';
import { gemm } from '../src/kernels/matmul';
import { testGpu } from './helpers/gpu';

describe('gpu runtime', () => {
  it('a host write after recorded commands lands after them (program order)', async () => {
    const gpu = await testGpu();
    const t = gpu.upload(new Float32Array([1, 2, 3, 4]), [4]);
    gpu.zero(t); // recorded, not yet submitted
    gpu.write(t, new Float32Array([5, 6, 7, 8]));
    expect([...(await gpu.readF32(t))]).toEqual([5, 6, 7, 8]);
  });

  it('an arena of views is freed with its last view, once, and refuses unaligned views', async () => {
    const gpu = await testGpu();
    const before = gpu.allocated;
    const [a, b] = gpu.views(1024, [{ shape: [3], offset: 0 }, { shape: [10], offset: 256 }], 'f32', 'test arena');
    const size = gpu.allocated - before;
    expect(size).toBe(1024);
    gpu.write(b!, new Float32Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    expect([...(await gpu.readF32(b!))]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    gpu.release(a, a, { ...b!, shape: [2] }); // a copy of a view is not the view
    expect(gpu.allocated - before).toBe(size);
    expect([...(await gpu.readF32(b!))]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    gpu.release(b);
    expect(gpu.allocated).toBe(before);
    expect(() => gpu.views(1024, [{ shape: [4], offset: 100 }], 'f32', 'bad')).toThrow(/arena bad: a view \[4\] at byte 100 is unaligned/);
    expect(() => gpu.views(512, [{ shape: [100], offset: 256 }], 'f32', 'bad')).toThrow(/outside its 512 bytes/);
  });

  it('reports capabilities as a plain object', async () => {
    const gpu = await testGpu();
    const caps = JSON.parse(JSON.stringify(gpu.caps));
    expect(caps.adapter).toBeTypeOf('string');
    expect(caps.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 2 ** 20);
    expect(typeof caps.f16).toBe('boolean');
  });

  it('refuses a binding larger than the device allows, naming the limit', async () => {
    const gpu = await testGpu();
    const limit = gpu.caps.limits.maxStorageBufferBindingSize;
    const rows = Math.floor(limit / 4 / 8) + 1;
    if ((rows * 8 * 4) > gpu.caps.limits.maxBufferSize) return;
    const big = { buffer: gpu.tensor([1]).buffer, shape: [rows, 8], dtype: 'f32' as const, offset: 0 };
    expect(() => gemm(gpu, { a: big, b: gpu.tensor([8, 1]), c: gpu.tensor([rows, 1]), M: rows, N: 1, K: 8 })).toThrow(/binding limit; split the tensor/);
  });

  it('allocationOnly counts allocations and binds buffers but runs no kernel (the memory-target bench)', async () => {
    const gpu = await testGpu();
    const a = gpu.upload(new Float32Array([1, 2, 3, 4]), [2, 2]);
    const c = gpu.upload(new Float32Array([9, 9, 9, 9]), [2, 2]);
    const before = gpu.allocated;
    gpu.allocationOnly = true;
    try {
      const t = gpu.tensor([256]);
      expect(gpu.allocated - before).toBe(1024);
      expect(gpu.peakAllocated).toBeGreaterThanOrEqual(gpu.allocated);
      gemm(gpu, { a, b: a, c, M: 2, N: 2, K: 2 });
      expect([...(await gpu.readF32(c))]).toEqual([9, 9, 9, 9]);
      gpu.release(t);
    } finally {
      gpu.allocationOnly = false;
    }
    gemm(gpu, { a, b: a, c, M: 2, N: 2, K: 2 });
    expect([...(await gpu.readF32(c))]).toEqual([7, 10, 15, 22]);
  });

  it('each dispatch reads its own parameters, also past the capacity of one submit\'s arena', async () => {
    const gpu = await testGpu();
    const x = gpu.upload(new Float32Array([1, 2, 3, 4]), [4]), y = gpu.upload(new Float32Array(4), [4]);
    await gpu.sync();
    gpu.resetCounters();
    let sum = 0;
    for (let i = 0; i < 5000; i++) {
      const alpha = (i % 7) - 3;
      axpy(gpu, x, y, alpha);
      sum += alpha;
    }
    expect([...(await gpu.readF32(y))]).toEqual([sum, 2 * sum, 3 * sum, 4 * sum]);
    expect(gpu.counters.dispatches).toBe(5000);
    expect(gpu.counters.submits).toBeGreaterThanOrEqual(2); // the arena filled once at least
  });

  it('counts dispatches, compute passes and submits until reset', async () => {
    const gpu = await testGpu();
    const a = gpu.upload(new Float32Array([1, 2, 3, 4]), [2, 2]), c = gpu.tensor([2, 2]);
    await gpu.sync();
    gpu.resetCounters();
    expect(gpu.counters).toEqual({ dispatches: 0, passes: 0, submits: 0, encodeMs: 0 });
    gemm(gpu, { a, b: a, c, M: 2, N: 2, K: 2 });
    gemm(gpu, { a, b: a, c, M: 2, N: 2, K: 2 });
    gpu.zero(a); // ends the pass
    gemm(gpu, { a, b: a, c, M: 2, N: 2, K: 2 });
    gpu.flush();
    expect(gpu.counters).toMatchObject({ dispatches: 3, passes: 2, submits: 1 });
    expect(gpu.counters.encodeMs).toBeGreaterThan(0);
  });
});
