// `crucible bench <config.yaml>`: training throughput of a config's model and LoRA settings on
// this GPU (random token rows of per_device_train_batch_size x cutoff_len).

import type { BenchOptions, BenchResult } from './jobs';
import type { CrucibleConfig } from '../config';
import { benchTraining } from '../bench/train';
import { resolveModelFiles } from './node-model';
import { nodeGpu } from '../gpu/node';
import { Model } from '../model/model';

export async function benchmarkTraining(config: CrucibleConfig, opts: BenchOptions): Promise<BenchResult> {
  if (!config.model_name_or_path) throw new Error('model_name_or_path is required');
  const gpu = await nodeGpu({ warn: (m) => opts.onStatus?.(`warning: ${m}`) });
  const files = await resolveModelFiles(config.model_name_or_path, { ...(opts.onStatus ? { onStatus: opts.onStatus } : {}) });
  const q = config.quantization_bit;
  const model = await Model.load(gpu, files, { format: q === 4 ? 'q4' : q === 8 ? 'q8' : 'f32' });
  const r = await benchTraining(model, {
    batch: config.per_device_train_batch_size, seq: config.cutoff_len, rank: config.lora_rank,
    steps: opts.steps, warmup: opts.warmup, recompute: !config.disable_gradient_checkpointing,
  });
  return { device: gpu.caps.adapter, model: config.model_name_or_path, steps: opts.steps, tokensPerSecond: r.tokensPerSecond, stepSeconds: r.stepSeconds, peakBytes: r.peakBytes, perStep: r.perStep };
}
