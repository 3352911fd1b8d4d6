// Training throughput as a job, whatever the host: optimizer steps of the config's method on
// random token rows of its batch shape (bench/train.ts measures), on a model the host loaded, with
// activation recomputation as a run of the config would choose it. On a
// session, its own adapter is put back afterwards, so the app benchmarks the model it holds.

import type { CrucibleConfig } from '../config';
import { benchTraining } from '../bench/train';
import { gemmChoices } from '../kernels/gemm-tuner';
import type { BenchOptions, BenchResult } from './jobs';
import { trainOptionsFromConfig } from './options';
import type { Model } from '../model/model';
import type { Session } from './session';

export async function benchmarkModel(model: Model, config: CrucibleConfig, o: BenchOptions): Promise<Required<BenchResult>> {
  const status = o.onStatus ?? (() => {});
  const { finetuningType, lora, freezeTrainableLayers, recompute, memoryBudget } = trainOptionsFromConfig(config);
  const batch = config.per_device_train_batch_size;
  const seq = config.cutoff_len;
  const total = o.warmup + o.steps;
  status(`benchmark: ${total} steps of ${batch} x ${seq} tokens`);
  const r = await benchTraining(model, {
    batch, seq, rank: config.lora_rank, steps: o.steps, warmup: o.warmup, recompute, memoryBudget: memoryBudget ?? null,
    method: { finetuningType, ...(lora ? { lora } : {}), ...(freezeTrainableLayers !== undefined ? { freezeTrainableLayers } : {}) },
    onStep: (step) => status(`benchmark: step ${step}/${total}`),
    onStatus: status,
  });
  const q = config.quantization_bit;
  return {
    device: model.gpu.caps.adapter,
    model: config.model_name_or_path ?? model.spec.arch,
    method: finetuningType === 'lora' ? `${config.use_dora ? 'DoRA' : q ? 'QLoRA' : 'LoRA'} r${config.lora_rank}${q ? ` (${q}-bit)` : ''}` : finetuningType,
    steps: o.steps,
    tokensPerStep: batch * seq,
    tokensPerSecond: r.tokensPerSecond,
    stepSeconds: r.stepSeconds,
    peakBytes: r.peakBytes,
    recompute: r.recompute.recompute,
    recomputeReason: r.recompute.reason,
    perStep: r.perStep,
    gemmTiles: Object.fromEntries(gemmChoices(model.gpu)),
  };
}

/** The benchmark on a session's model; the adapter the session holds is taken off for it and put back after. */
export async function benchmarkSession(session: Session, config: CrucibleConfig, o: BenchOptions): Promise<Required<BenchResult>> {
  const saved = session.adapter ? await session.exportAdapter(null) : null;
  session.adapter?.release();
  session.adapter = null;
  try {
    return await benchmarkModel(session.model, { ...config, model_name_or_path: config.model_name_or_path ?? session.name }, o);
  } finally {
    if (saved) await session.loadAdapter(saved['adapter_config.json'], { name: 'saved', size: saved['adapter_model.safetensors'].length, read: async (at, n) => saved['adapter_model.safetensors'].subarray(at, at + n) });
  }
}
