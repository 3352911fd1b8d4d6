// Training throughput as a job, whatever the host: optimizer steps of the config's method on
// random token rows of its batch shape (bench/train.ts measures), on a model the host loaded. The
// session's own adapter is put back afterwards, so the app benchmarks the model it holds.

import type { CrucibleConfig } from '../config';
import { benchTraining } from '../bench/train';
import type { BenchOptions, BenchResult } from './jobs';
import { trainOptionsFromConfig } from './options';
import type { Session } from './session';

export async function benchmarkSession(session: Session, config: CrucibleConfig, o: BenchOptions): Promise<Required<BenchResult>> {
  const status = o.onStatus ?? (() => {});
  const { finetuningType, lora, freezeTrainableLayers } = trainOptionsFromConfig(config);
  const saved = session.adapter ? await session.exportAdapter(null) : null;
  session.adapter?.release();
  session.adapter = null;
  const batch = config.per_device_train_batch_size;
  const seq = config.cutoff_len;
  const total = o.warmup + o.steps;
  status(`benchmark: ${total} steps of ${batch} x ${seq} tokens`);
  try {
    const r = await benchTraining(session.model, {
      batch, seq, rank: config.lora_rank, steps: o.steps, warmup: o.warmup, recompute: !config.disable_gradient_checkpointing,
      method: { finetuningType, ...(lora ? { lora } : {}), ...(freezeTrainableLayers !== undefined ? { freezeTrainableLayers } : {}) },
      onStep: (step) => status(`benchmark: step ${step}/${total}`),
    });
    const q = config.quantization_bit;
    return {
      device: session.gpu.caps.adapter,
      model: config.model_name_or_path ?? session.name,
      method: finetuningType === 'lora' ? `${config.use_dora ? 'DoRA' : q ? 'QLoRA' : 'LoRA'} r${config.lora_rank}${q ? ` (${q}-bit)` : ''}` : finetuningType,
      steps: o.steps,
      tokensPerStep: batch * seq,
      tokensPerSecond: r.tokensPerSecond,
      stepSeconds: r.stepSeconds,
      peakBytes: r.peakBytes,
      perStep: r.perStep,
    };
  } finally {
    if (saved) await session.loadAdapter(saved['adapter_config.json'], { name: 'saved', size: saved['adapter_model.safetensors'].length, read: async (at, n) => saved['adapter_model.safetensors'].subarray(at, at + n) });
  }
}
