// Kernel throughput: GFLOP/s (or GB/s for memory-bound ones) per kernel and shape, timed with
// timestamp queries when the device has them, else by wall clock around a sync.

import type { Gpu } from '../gpu/runtime';
import { Profiler } from '../gpu/profiler';
import { attentionForward, attentionBackward } from '../kernels/attention';
import { lmHeadCrossEntropy } from '../kernels/loss';
import { gemm } from '../kernels/matmul';
import { qlinearForward, quantize } from '../kernels/quant';

export interface KernelResult {
  kernel: string;
  shape: string;
  ms: number;
  gflops: number;
  gbps?: number;
}

interface Case {
  kernel: string;
  shape: string;
  flops: number;
  bytes?: number;
  run: () => void;
  release: () => void;
}

export async function benchKernels(gpu: Gpu, opts: { small: boolean; repeats?: number }): Promise<KernelResult[]> {
  const s = opts.small ? 1 / 16 : 1;
  const n = (x: number) => Math.max(16, Math.round(x * s));
  const cases: Case[] = [];
  const rnd = (len: number) => Float32Array.from({ length: len }, (_, i) => Math.sin(i * 12.9898) * 0.5);

  for (const [T, K, N] of [[n(4096), n(4096), n(4096)], [n(4096), n(896), n(4864)]] as const) {
    for (const [name, tA, tB] of [['matmul x·Wᵀ', false, true], ['matmul dY·W', false, false], ['matmul dYᵀ·X', true, false]] as const) {
      const [M, NN, KK] = name === 'matmul dYᵀ·X' ? [N, K, T] : name === 'matmul dY·W' ? [T, K, N] : [T, N, K];
      const a = gpu.upload(rnd(M * KK), tA ? [KK, M] : [M, KK]);
      const b = gpu.upload(rnd(KK * NN), tB ? [NN, KK] : [KK, NN]);
      const c = gpu.tensor([M, NN]);
      cases.push({ kernel: name, shape: `${M}x${NN}x${KK}`, flops: 2 * M * NN * KK, run: () => gemm(gpu, { a, b, c, M, N: NN, K: KK, transA: tA, transB: tB }), release: () => gpu.release(a, b, c) });
    }
  }
  for (const [T, K, N] of [[1, n(4096), n(4096)], [n(512), n(4096), n(4096)]] as const) {
    const w = gpu.upload(rnd(N * K), [N, K]);
    const q = quantize(gpu, w, 'q4');
    gpu.release(w);
    const x = gpu.upload(rnd(T * K), [T, K]), y = gpu.tensor([T, N]);
    cases.push({ kernel: 'qlinear q4', shape: `${T}x${N}x${K}`, flops: 2 * T * N * K, bytes: (N * K) / 2 + (N * K) / 16, run: () => qlinearForward(gpu, x, q, y), release: () => gpu.release(q, x, y) });
  }
  {
    const [B, S, H, Hkv, Dh] = [1, n(2048), 14, 2, 64];
    const q = gpu.upload(rnd(B * S * H * Dh), [B, S, H, Dh]), k = gpu.upload(rnd(B * S * Hkv * Dh), [B, S, Hkv, Dh]), v = gpu.upload(rnd(B * S * Hkv * Dh), [B, S, Hkv, Dh]);
    const o = gpu.tensor([B, S, H, Dh]), lse = gpu.tensor([B, H, S]);
    const dq = gpu.tensor([B, S, H, Dh]), dk = gpu.tensor([B, S, Hkv, Dh]), dv = gpu.tensor([B, S, Hkv, Dh]);
    const shape = { batch: B, qLen: S, kvLen: S, heads: H, kvHeads: Hkv, headDim: Dh, scale: 1 / 8 };
    const flops = 2 * 2 * B * H * S * S * Dh / 2; // causal: half the score matrix, QK and PV
    attentionForward(gpu, q, k, v, o, lse, shape);
    cases.push({ kernel: 'attention fwd', shape: `S=${S} H=${H}/${Hkv} Dh=${Dh}`, flops, run: () => attentionForward(gpu, q, k, v, o, lse, shape), release: () => {} });
    cases.push({ kernel: 'attention bwd', shape: `S=${S} H=${H}/${Hkv} Dh=${Dh}`, flops: 2.5 * flops, run: () => attentionBackward(gpu, o, q, k, v, o, lse, dq, dk, dv, shape), release: () => gpu.release(q, k, v, o, lse, dq, dk, dv) });
  }
  {
    const [T, D, V] = [n(2048), n(896), n(151936)];
    const h = gpu.upload(rnd(T * D), [T, D]), w = gpu.upload(rnd(V * D), [V, D]);
    const labels = gpu.upload(Int32Array.from({ length: T }, (_, i) => (i * 31) % V), [T], 'i32');
    const loss = gpu.tensor([T]), dH = gpu.tensor([T, D]);
    cases.push({ kernel: 'lm_head + cross-entropy fwd+bwd', shape: `T=${T} D=${D} V=${V}`, flops: 3 * 2 * T * D * V, run: () => lmHeadCrossEntropy(gpu, h, w, labels, { loss, dH }, { gradScale: 1 / T }), release: () => gpu.release(h, w, labels, loss, dH) });
  }

  const repeats = opts.repeats ?? 3;
  const results: KernelResult[] = [];
  for (const c of cases) {
    c.run(); // compile and warm
    await gpu.sync();
    let ms: number;
    if (gpu.caps.timestampQuery) {
      gpu.profiler = new Profiler(gpu.device);
      for (let i = 0; i < repeats; i++) c.run();
      gpu.flush();
      await gpu.profiler.collect();
      const total = [...gpu.profiler.totals.values()].reduce((a, v) => a + v.ns, 0);
      gpu.profiler = null;
      ms = total / 1e6 / repeats;
    } else {
      const t0 = performance.now();
      for (let i = 0; i < repeats; i++) c.run();
      await gpu.sync();
      ms = (performance.now() - t0) / repeats;
    }
    results.push({ kernel: c.kernel, shape: c.shape, ms: round(ms), gflops: round(c.flops / ms / 1e6), ...(c.bytes ? { gbps: round(c.bytes / ms / 1e6) } : {}) });
    c.release();
  }
  return results;
}

const round = (x: number) => Math.round(x * 1000) / 1000;
