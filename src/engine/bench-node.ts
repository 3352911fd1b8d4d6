// `crucible bench <config.yaml>`: training throughput of a config's model and method on this GPU
// (random token rows of per_device_train_batch_size x cutoff_len; the job is bench.ts).

import type { CrucibleConfig } from '../config';
import { nodeGpu } from '../gpu/node';
import { benchmarkSession } from './bench';
import type { BenchOptions, BenchResult } from './jobs';
import { resolveModelFiles } from './node-model';
import { Session } from './session';

export async function benchmarkTraining(config: CrucibleConfig, opts: BenchOptions): Promise<BenchResult> {
  if (!config.model_name_or_path) throw new Error('model_name_or_path is required');
  const gpu = await nodeGpu({ warn: (m) => opts.onStatus?.(`warning: ${m}`) });
  const files = await resolveModelFiles(config.model_name_or_path, { ...(opts.onStatus ? { onStatus: opts.onStatus } : {}) });
  const session = await Session.open(gpu, files, { quantizationBit: (config.quantization_bit as 4 | 8 | null) ?? null });
  try {
    return await benchmarkSession(session, config, opts);
  } finally {
    session.release();
  }
}
