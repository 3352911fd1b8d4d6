// The optimizers LLaMA-Factory offers beside AdamW (use_muon, use_adam_mini), over a mixed set of
// parameters, several clipped steps, against f64 references of their update rules.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { runTraining } from '../src/engine/train-node';
import { openSafetensors } from '../src/model/safetensors';
import { fileSource } from '../src/model/files-node';
import type { Gpu } from '../src/gpu/runtime';
import type { TrainableTensor } from '../src/model/adapter';
import { AdamMini, adamMiniBlock } from '../src/train/optimizers/adam-mini';
import { Muon, usesMuon } from '../src/train/optimizers/muon';
import { expectClose, makeRng, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { refAdamMini, refClipScale, refNewtonSchulz, refSumSq } from './reference/optim';

const SETTINGS = { lr: 2e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1 };

function param(gpu: Gpu, rng: Rng, name: string, shape: number[], lrScale = 1): TrainableTensor & { host: Float64Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const host = Float64Array.from(rng.randn(n));
  return { name, value: gpu.upload(Float32Array.from(host), shape), grad: gpu.tensor(shape), decay: true, lrScale, host };
}

describe('optimizers', () => {
  it('Muon: LoRA matrices by Newton-Schulz, vectors and embeddings by its AdamW rule, clipped, over three steps', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const ps = [
      param(gpu, rng, 'layers.0.q_proj.lora_A.weight', [4, 24]),
      param(gpu, rng, 'layers.0.q_proj.lora_B.weight', [20, 4], 4),
      param(gpu, rng, 'layers.0.q_proj.lora_magnitude_vector', [20]),
      param(gpu, rng, 'model.embed_tokens.weight', [10, 24]),
    ];
    expect(ps.map(usesMuon)).toEqual([true, true, false, false]);
    const opt = new Muon(gpu, ps, SETTINGS);
    const state = ps.map((p) => ({ buf: new Float64Array(p.host.length), m: new Float64Array(p.host.length), v: new Float64Array(p.host.length) }));
    for (let step = 1; step <= 3; step++) {
      const grads = ps.map((p) => rng.randn(p.host.length, 0.5));
      ps.forEach((p, i) => gpu.write(p.grad, grads[i]!));
      const lr = SETTINGS.lr * (1 - 0.2 * step);
      opt.update(lr);
      const scale = refClipScale(refSumSq(grads), SETTINGS.maxGradNorm);
      ps.forEach((p, i) => {
        const g = grads[i]!, s = state[i]!, rate = lr * p.lrScale;
        if (usesMuon(p)) {
          const [R, C] = p.value.shape as [number, number];
          const u = new Float64Array(g.length);
          for (let k = 0; k < g.length; k++) {
            s.buf[k] = 0.95 * s.buf[k]! + scale * g[k]!;
            u[k] = scale * g[k]! + 0.95 * s.buf[k]!;
          }
          const o = refNewtonSchulz(u, R, C, 5);
          for (let k = 0; k < g.length; k++) p.host[k] = p.host[k]! * (1 - rate * SETTINGS.weightDecay) - rate * 0.2 * Math.sqrt(Math.max(R, C)) * o[k]!;
        } else {
          // the reference's own rule: p -= lr sqrt(bc2)/bc1 · m / (sqrt(v) + eps)
          const bc1 = 1 - 0.9 ** step, bc2 = 1 - 0.95 ** step;
          for (let k = 0; k < g.length; k++) {
            const gk = scale * g[k]!;
            s.m[k] = 0.9 * s.m[k]! + 0.1 * gk;
            s.v[k] = 0.95 * s.v[k]! + 0.05 * gk * gk;
            p.host[k] = p.host[k]! * (1 - rate * SETTINGS.weightDecay) - (rate * Math.sqrt(bc2) / bc1) * s.m[k]! / (Math.sqrt(s.v[k]!) + SETTINGS.eps);
          }
        }
      });
    }
    for (const p of ps) expectClose(await gpu.readF32(p.value), p.host, 1e-4, p.name, rng.seed);
    expect(opt.stateTensors().map((t) => t.name)).toEqual([
      'layers.0.q_proj.lora_A.weight.momentum_buffer', 'layers.0.q_proj.lora_B.weight.momentum_buffer',
      'layers.0.q_proj.lora_magnitude_vector.exp_avg', 'layers.0.q_proj.lora_magnitude_vector.exp_avg_sq',
      'model.embed_tokens.weight.exp_avg', 'model.embed_tokens.weight.exp_avg_sq',
    ]);
    opt.release();
  });

  it("Adam-mini partitions parameters by name as adam-mini 1.1.1 does, and refuses a LoRA query it cannot split", () => {
    const dims = { hidden: 64, heads: 4 }; // a head block is 64² / 4 = 1024 values
    const t = (name: string, shape: number[]) => ({ name, value: { shape } as never });
    expect(adamMiniBlock(t('model.layers.0.self_attn.q_proj.weight', [64, 64]), dims)).toBe(1024);
    expect(adamMiniBlock(t('model.layers.0.self_attn.k_proj.weight', [32, 64]), dims)).toBe(1024);
    expect(adamMiniBlock(t('model.layers.0.self_attn.q_proj.bias', [64]), dims)).toBe(1);
    expect(adamMiniBlock(t('model.layers.0.mlp.down_proj.weight', [64, 128]), dims)).toBe(128);
    expect(adamMiniBlock(t('model.embed_tokens.weight', [256, 64]), dims)).toBe(64);
    expect(adamMiniBlock(t('model.layers.0.input_layernorm.weight', [64]), dims)).toBe(64);
    expect(() => adamMiniBlock(t('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', [8, 64]), dims))
      .toThrow(/q_proj\.lora_A\.weight has 512 values, not a whole number of attention heads of 1024/);
  });

  it('Adam-mini: full-model blocks over three clipped steps, no decay on norms', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const dims = { hidden: 16, heads: 4 };
    const ps = [
      param(gpu, rng, 'model.layers.0.self_attn.q_proj.weight', [16, 16]),
      param(gpu, rng, 'model.layers.0.mlp.up_proj.weight', [24, 16]),
      param(gpu, rng, 'model.layers.0.input_layernorm.weight', [16]),
      param(gpu, rng, 'model.layers.0.self_attn.q_proj.bias', [16]),
    ];
    const opt = new AdamMini(gpu, ps, SETTINGS, dims);
    const state = ps.map((p) => ({ m: new Float64Array(p.host.length), vmean: new Float64Array(Math.ceil(p.host.length / adamMiniBlock(p, dims))) }));
    for (let step = 1; step <= 3; step++) {
      const grads = ps.map((p) => rng.randn(p.host.length, 0.5));
      ps.forEach((p, i) => gpu.write(p.grad, grads[i]!));
      opt.update(SETTINGS.lr);
      const scale = refClipScale(refSumSq(grads), SETTINGS.maxGradNorm);
      ps.forEach((p, i) => refAdamMini(p.host, grads[i]!, state[i]!.m, state[i]!.vmean, adamMiniBlock(p, dims), {
        ...SETTINGS, step, gradScale: scale, weightDecay: /norm|bias/.test(p.name) ? 0 : SETTINGS.weightDecay,
      }));
    }
    for (const p of ps) expectClose(await gpu.readF32(p.value), p.host, 1e-5, p.name, rng.seed);
    opt.release();
  });

  it('a config with use_muon and use_dft_loss trains, saves Muon state in its checkpoints and resumes on the same curve', async () => {
    const gpu = await testGpu();
    const run = (out: string, maxSteps: number) => runTraining(configFromObject({
      model_name_or_path: join(import.meta.dirname, 'fixtures/tiny-chat'), stage: 'sft', do_train: true, finetuning_type: 'lora', lora_rank: 4,
      lora_target: 'all', dataset: 'identity', dataset_dir: join(import.meta.dirname, 'fixtures/tiny-chat-data'), cutoff_len: 48, output_dir: out,
      per_device_train_batch_size: 2, learning_rate: 1e-2, max_steps: maxSteps, logging_steps: 1, save_steps: 2, seed: 5, use_muon: true, use_dft_loss: true,
    }).config, {}, { gpu });
    const log = (out: string) => readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss: number });
    const whole = mkdtempSync(join(tmpdir(), 'crucible-muon-'));
    await run(whole, 4);
    const opt = await openSafetensors(await fileSource(join(whole, 'checkpoint-2/optimizer.safetensors')));
    const names = [...opt.tensors.keys()];
    expect(names.some((n) => n.endsWith('lora_A.weight.momentum_buffer'))).toBe(true);
    expect(names.some((n) => n.endsWith('exp_avg'))).toBe(false); // LoRA's A and B are all 2-D: Muon
    const split = mkdtempSync(join(tmpdir(), 'crucible-muon-'));
    await run(split, 2);
    await run(split, 4); // resumes from checkpoint-2
    const a = log(whole), b = log(split);
    expect(b.length).toBe(4);
    b.forEach((r, i) => expect(r.loss).toBeCloseTo(a[i]!.loss, 3)); // logged losses are rounded to 4 decimals
    expect(a.every((r) => Number.isFinite(r.loss))).toBe(true);
  });

  it('conflicting optimizer or loss choices are refused, naming the keys', () => {
    expect(() => configFromObject({ stage: 'sft', use_muon: true, use_adam_mini: true })).toThrow(/use_muon and use_adam_mini each choose the optimizer/);
    expect(() => configFromObject({ stage: 'sft', finetuning_type: 'lora', use_muon: true, loraplus_lr_ratio: 16 })).toThrow(/use_muon and loraplus_lr_ratio/);
    expect(() => configFromObject({ stage: 'sft', use_dft_loss: true, label_smoothing_factor: 0.1 })).toThrow(/use_dft_loss and label_smoothing_factor each replace the token loss/);
  });
});
