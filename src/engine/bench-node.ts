// `crucible bench <config.yaml>`: training throughput of a config's model and method on this GPU
// (random token rows of per_device_train_batch_size x cutoff_len; the job is bench.ts).

import type { CrucibleConfig } from '../config';
import { nodeGpu } from '../gpu/node';
import { nodeGemmTuning } from './gemm-tuning-node';
import { Model } from '../model/model';
import { benchmarkModel } from './bench';
import type { BenchOptions, BenchResult } from './jobs';
import { resolveModelFiles } from './node-model';
import { basePrecision } from './precision';

export async function benchmarkTraining(config: CrucibleConfig, opts: BenchOptions): Promise<BenchResult> {
  if (!config.model_name_or_path) throw new Error('model_name_or_path is required');
  const gpu = await nodeGpu({ warn: (m) => opts.onStatus?.(`warning: ${m}`) });
  await nodeGemmTuning(gpu, { notice: (m) => opts.onStatus?.(m) });
  const files = await resolveModelFiles(config.model_name_or_path, { ...(opts.onStatus ? { onStatus: opts.onStatus } : {}) });
  const q = config.quantization_bit;
  const precision = basePrecision(config, gpu.caps);
  if (precision.note) opts.onStatus?.(precision.note);
  const model = await Model.load(gpu, files, { format: q === 4 ? 'q4' : q === 8 ? 'q8' : precision.f16 ? 'f16' : 'f32' });
  try {
    return await benchmarkModel(model, config, opts);
  } finally {
    model.release();
  }
}
