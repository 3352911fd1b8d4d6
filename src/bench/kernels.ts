// Kernel throughput: GFLOP/s (and GB/s for memory-bound kernels) of every family's benchmark cases
// (src/bench/cases/, the lists the kernel tests check), timed with timestamp queries when the
// device has them, else by wall clock around a sync. Tier cases (f16, subgroup matrices) run where
// the device has the tier. Where GEMM tuning is on, the GEMM cases run once first and are tuned,
// and each GEMM result names the tile it ran with.

import type { Gpu } from '../gpu/runtime';
import { Profiler } from '../gpu/profiler';
import { subgroupMatrixTier, type SubgroupMatrixTier } from '../kernels/subgroup-matrix';
import { gemmTuningPending, tuneRecordedGemms } from '../kernels/gemm-tuner';
import { GATED_ACT_CASES, gatedActTimed } from './cases/act';
import { ATTENTION_CASES, attentionTimed } from './cases/attention';
import { CONV1D_CASES, conv1dTimed } from './cases/conv1d';
import { DELTA_RULE_CASES, deltaRuleDecodeTimed, deltaRuleTimed } from './cases/delta-rule';
import { SSD_CASES, ssdDecodeTimed, ssdTimed } from './cases/ssd';
import { ELEMENTWISE_CASES, elementwiseTimed } from './cases/elementwise';
import { EMBEDDING_CASES, embeddingTimed } from './cases/embedding';
import { LORA_CASES, loraTimed } from './cases/lora';
import { LOSS_CASES, lossTimed } from './cases/loss';
import { GEMM_CASES, gemmTimed } from './cases/matmul';
import { GEMM_F16_CASES, gemmF16Timed } from './cases/matmul-f16';
import { SUBGROUP_GEMM_CASES, subgroupGemmTimed } from './cases/matmul-subgroup';
import { RMS_NORM_CASES, rmsNormTimed } from './cases/norm';
import { OPTIM_CASES, optimTimed } from './cases/optim';
import { QLINEAR_CASES, qlinearTimed } from './cases/quant';
import { ROPE_CASES, ropeTimed } from './cases/rope';
import { SAMPLE_CASES, sampleTimed } from './cases/sample';
import type { Scale, Timed } from './cases/timed';

export interface KernelResult {
  kernel: string;
  shape: string;
  ms: number;
  gflops: number;
  gbps?: number;
  /** GEMMs: the tile (gemm-tiles.ts) this device uses for the shape. */
  tile?: string;
}

const bench = <C extends { bench?: boolean }>(list: readonly C[]) => list.filter((c) => c.bench);

/** The GEMM tiers' benchmark cases this device runs. */
function gemmCases(gpu: Gpu, n: Scale, matrices: SubgroupMatrixTier | string): (() => Timed)[] {
  return [
    ...bench(GEMM_CASES).map((c) => () => gemmTimed(gpu, c, n)),
    ...(gpu.caps.f16 ? bench(GEMM_F16_CASES).map((c) => () => gemmF16Timed(gpu, c, n)) : []),
    ...(typeof matrices === 'string' ? [] : bench(SUBGROUP_GEMM_CASES).map((c) => () => subgroupGemmTimed(gpu, matrices, c, n))),
  ];
}

/** Every family's benchmark cases, each set up only when its turn comes. */
function cases(gpu: Gpu, n: Scale, matrices: SubgroupMatrixTier | string): (() => Timed)[] {
  const both = <C>(list: readonly C[], timed: (gpu: Gpu, c: C, n: Scale, backward: boolean) => Timed) =>
    list.flatMap((c) => [() => timed(gpu, c, n, false), () => timed(gpu, c, n, true)]);
  return [
    ...gemmCases(gpu, n, matrices),
    ...bench(QLINEAR_CASES).map((c) => () => qlinearTimed(gpu, c, n)),
    ...both(bench(LORA_CASES), loraTimed),
    ...both(bench(ATTENTION_CASES), attentionTimed),
    ...bench(LOSS_CASES).map((c) => () => lossTimed(gpu, c, n)),
    ...both(bench(RMS_NORM_CASES), rmsNormTimed),
    ...bench(ROPE_CASES).map((c) => () => ropeTimed(gpu, c, n)),
    ...both(bench(GATED_ACT_CASES), gatedActTimed),
    ...both(bench(CONV1D_CASES), conv1dTimed),
    ...both(bench(DELTA_RULE_CASES), deltaRuleTimed),
    ...bench(DELTA_RULE_CASES).map((c) => () => deltaRuleDecodeTimed(gpu, c)),
    ...both(bench(SSD_CASES), ssdTimed),
    ...bench(SSD_CASES).map((c) => () => ssdDecodeTimed(gpu, c)),
    ...bench(ELEMENTWISE_CASES).map((c) => () => elementwiseTimed(gpu, c, n)),
    ...bench(EMBEDDING_CASES).map((c) => () => embeddingTimed(gpu, c, n)),
    ...bench(OPTIM_CASES).map((c) => () => optimTimed(gpu, c, n)),
    ...bench(SAMPLE_CASES).map((c) => () => sampleTimed(gpu, c, n)),
  ];
}

export async function benchKernels(gpu: Gpu, opts: { small: boolean; repeats?: number }): Promise<KernelResult[]> {
  const n: Scale = opts.small ? (x) => Math.max(16, Math.round(x / 16)) : (x) => x;
  const repeats = opts.repeats ?? 3;
  const results: KernelResult[] = [];
  const matrices = await subgroupMatrixTier(gpu);
  if (gemmTuningPending(gpu)) {
    for (const setup of gemmCases(gpu, n, matrices)) {
      const c = setup();
      c.run(); // recorded: the shapes to tune
      c.release();
    }
    await tuneRecordedGemms(gpu);
  }
  for (const setup of cases(gpu, n, matrices)) {
    const c = setup();
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
    results.push({ kernel: c.kernel, shape: c.shape, ms: round(ms), gflops: round(c.flops / ms / 1e6), ...(c.bytes ? { gbps: round(c.bytes / ms / 1e6) } : {}), ...(c.tile ? { tile: c.tile } : {}) });
    c.release();
  }
  return results;
}

const round = (x: number) => Math.round(x * 1000) / 1000;
