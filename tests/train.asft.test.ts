// ASFT (use_asft_loss): the objective's reference is the base with the LoRA adapter switched off,
// or a full run's initial weights (lm_head included). The kernel is checked against its f64
// reference in kernels.loss.test.ts; here the whole path: a trained run's ASFT evaluation loss
// against one computed in f64 from the logits of the policy and of the reference (the adapter off,
// or the model before training), and a config run through the CLI path.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { runTraining } from '../src/engine/train-node';
import { dirFiles } from '../src/model/files-node';
import { fullLogits, Workspace, type Batch } from '../src/model/forward';
import { Model } from '../src/model/model';
import { Trainer, type TrainOptions } from '../src/train/trainer';
import { makeRng } from './helpers/check';
import { testGpu } from './helpers/gpu';

const LLAMA = join(import.meta.dirname, 'fixtures/models/llama');
const S = 16;
const IGNORE = -100;

function options(alpha: number, finetuningType: 'lora' | 'full'): TrainOptions {
  return {
    finetuningType, lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'gate_proj', 'down_proj'] }, learningRate: 5e-2, scheduler: 'constant',
    warmupSteps: 0, warmupRatio: 0, epochs: 1, maxSteps: 3, batchSize: 2, gradAccum: 1, maxGradNorm: 1, weightDecay: 0, beta1: 0.9, beta2: 0.999,
    eps: 1e-8, neftuneAlpha: 0, seed: 3, loggingSteps: 1, saveSteps: 0, evalSteps: 0, cutoffLen: S, recompute: false, tokenLoss: { kind: 'asft', alpha },
  };
}

async function logitsOf(model: Model, batch: Batch): Promise<Float32Array> {
  const gpu = model.gpu;
  const ws = new Workspace(model, batch.B, batch.S, false);
  ws.load(batch);
  const out = gpu.tensor([batch.B * batch.S, model.spec.vocab]);
  fullLogits(ws, out);
  const logits = await gpu.readF32(out);
  gpu.release(out);
  ws.release();
  return logits;
}

const lse = (z: ArrayLike<number>): number => {
  let m = -Infinity;
  for (let i = 0; i < z.length; i++) m = Math.max(m, z[i]!);
  let s = 0;
  for (let i = 0; i < z.length; i++) s += Math.exp(z[i]! - m);
  return m + Math.log(s);
};

describe('ASFT', () => {
  it.each(['lora', 'full'] as const)('%s: evaluation loss = mean over labelled tokens of DFT + alpha KL(reference || policy), the reference being the adapter off or the initial weights', async (finetuningType) => {
    const gpu = await testGpu();
    const rng = makeRng();
    const model = await Model.load(gpu, dirFiles(LLAMA));
    const V = model.spec.vocab;
    const rows = Array.from({ length: 4 }, () => {
      const ids = Array.from(rng.int(S, V));
      // the prompt part is masked, as a supervised row's is
      return { input_ids: ids, labels: ids.map((x, t) => (t < 5 ? IGNORE : x)) };
    });
    const alpha = 0.7;
    const evalRows = rows.slice(0, 2);
    const batch: Batch = {
      B: 2, S,
      ids: Int32Array.from(evalRows.flatMap((r) => r.input_ids)),
      labels: new Int32Array(2 * S).fill(IGNORE),
      positions: Int32Array.from({ length: 2 * S }, (_, i) => i % S),
    };
    const initial = await logitsOf(model, batch);
    const trainer = await Trainer.create(model, rows, [], options(alpha, finetuningType), 0);
    await trainer.run(null); // the weights move: policy and reference differ
    const policy = await logitsOf(model, batch);
    const reference = trainer.adapter ? await trainer.adapter.withDisabled(() => logitsOf(model, batch)) : initial;
    let sum = 0, klSum = 0, n = 0;
    for (let b = 0; b < 2; b++) {
      for (let t = 0; t + 1 < S; t++) {
        const label = evalRows[b]!.labels[t + 1]!;
        if (label === IGNORE) continue;
        const z = policy.subarray((b * S + t) * V, (b * S + t + 1) * V), zr = reference.subarray((b * S + t) * V, (b * S + t + 1) * V);
        const l = lse(z), lr = lse(zr);
        const ce = l - z[label]!;
        let kl = 0;
        for (let v = 0; v < V; v++) kl += Math.exp(zr[v]! - lr) * ((zr[v]! - lr) - (z[v]! - l));
        sum += Math.exp(-ce) * ce + alpha * kl;
        klSum += kl;
        n++;
      }
    }
    // the KL term is well above the tolerance: a reference equal to the policy would fail
    expect((alpha * klSum) / sum, 'the trained adapter moved the policy away from its reference').toBeGreaterThan(0.05);
    const { eval_loss } = await trainer.objective.evaluate(evalRows, 2);
    expect(Math.abs(eval_loss! - sum / n) / (sum / n), `seed ${rng.seed}`).toBeLessThan(1e-4);
    trainer.release();
    trainer.adapter?.release();
    model.release();
  });

  it('a use_asft_loss config trains with LoRA; a separate ref_model and mixed token losses are refused, naming why', async () => {
    const gpu = await testGpu();
    const out = mkdtempSync(join(tmpdir(), 'crucible-asft-'));
    const base = {
      model_name_or_path: join(import.meta.dirname, 'fixtures/tiny-chat'), stage: 'sft', do_train: true, dataset: 'identity',
      dataset_dir: join(import.meta.dirname, 'fixtures/tiny-chat-data'), cutoff_len: 48, per_device_train_batch_size: 2, logging_steps: 1, seed: 5,
    };
    await runTraining(configFromObject({
      ...base, finetuning_type: 'lora', lora_rank: 4, lora_target: 'all', output_dir: out, learning_rate: 1e-2, max_steps: 2, save_steps: 100,
      use_asft_loss: true, asft_alpha: 0.1,
    }).config, {}, { gpu });
    const log = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss: number });
    expect(log.length).toBe(2);
    expect(log.every((r) => Number.isFinite(r.loss) && r.loss > 0)).toBe(true);
    expect(() => configFromObject({ ...base, finetuning_type: 'full', use_asft_loss: true, ref_model: 'other' })).toThrow(/use_asft_loss with a separate ref_model is not supported/);
    expect(() => configFromObject({ ...base, use_asft_loss: true, use_dft_loss: true })).toThrow(/use_dft_loss and use_asft_loss each replace the token loss/);
  });
});
