// GaLore, APOLLO and BAdam (LLaMA-Factory's use_galore, use_apollo, use_badam) over a mixed set of
// parameters and several clipped steps, against f64 references of galore_torch's, apollo_torch's
// and badam's update rules; their checkpoints resume on the same loss curve.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { trainOptionsFromConfig } from '../src/engine/options';
import { runTraining } from '../src/engine/train-node';
import type { Gpu } from '../src/gpu/runtime';
import type { TrainableTensor } from '../src/model/adapter';
import { dirFiles } from '../src/model/files-node';
import { forwardBackward, shiftLabels, Workspace } from '../src/model/forward';
import { Model } from '../src/model/model';
import { makeTrainable } from '../src/model/trainable';
import { Apollo, randomProjection } from '../src/train/optimizers/apollo';
import { activeBlock, BadamLayer, BadamRatio, ratioMask } from '../src/train/optimizers/badam';
import { Galore } from '../src/train/optimizers/galore';
import { gradientOps, normalFrom, topSingularProjection } from '../src/train/optimizers/low-rank';
import { expectClose, makeRng, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { refAdamDirection, refAdamW, refClipScale, refHfAdamW, refMatmul, refSumSq, refTopSingular } from './reference/optim';

const SETTINGS = { lr: 2e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1 };

function param(gpu: Gpu, rng: Rng, name: string, shape: number[]): TrainableTensor & { host: Float64Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const host = Float64Array.from(rng.randn(n));
  return { name, value: gpu.upload(Float32Array.from(host), shape), grad: gpu.tensor(shape), decay: !/norm|bias/.test(name), lrScale: 1, host };
}

const norm = (x: ArrayLike<number>) => Math.sqrt(refSumSq([x]));

describe('GaLore, APOLLO and BAdam', () => {
  it('GaLore: left and right projections from the SVD every 2 steps (exact, and iterated to convergence), Adam in the projected space, the rest transformers-AdamW', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const ps = [
      param(gpu, rng, 'model.layers.0.self_attn.q_proj.weight', [6, 10]), // R < C: left, q = min(R, C): exact
      param(gpu, rng, 'model.layers.0.mlp.down_proj.weight', [12, 5]), // R >= C: right
      param(gpu, rng, 'model.layers.0.mlp.up_proj.weight', [40, 30]), // q = 2k + 8 < 30: iterated
      param(gpu, rng, 'model.layers.0.input_layernorm.weight', [10]),
    ];
    const galore = { targets: ['all'], rank: 3, updateInterval: 2, scale: 0.5, projType: 'std' as const };
    const opt = new Galore(gpu, ps, SETTINGS, galore, 7);
    const sides = ['left', 'right', 'right'] as const;
    const state = ps.map((p, i) => ({ m: new Float64Array(i === 3 ? p.host.length : 0), v: new Float64Array(i === 3 ? p.host.length : 0), Q: new Float64Array(0) as Float64Array }));
    for (let step = 1; step <= 3; step++) {
      const grads = ps.map((p) => rng.randn(p.host.length, 0.5));
      ps.forEach((p, i) => gpu.write(p.grad, grads[i]!));
      await opt.prepare();
      opt.update(SETTINGS.lr);
      const scale = refClipScale(refSumSq(grads), SETTINGS.maxGradNorm);
      ps.forEach((p, i) => {
        const g = Float64Array.from(grads[i]!, (x) => x * scale), s = state[i]!;
        if (i === 3) return refHfAdamW(p.host, g, s.m, s.v, { ...SETTINGS, weightDecay: 0, step });
        const [R, C] = p.value.shape as [number, number];
        if ((step - 1) % 2 === 0) s.Q = refTopSingular(grads[i]!, R, C, 3, sides[i]!);
        const low = sides[i] === 'left' ? refMatmul(s.Q, g, 3, R, C, true) : refMatmul(g, s.Q, R, C, 3, false, true);
        if (s.m.length === 0) { s.m = new Float64Array(low.length); s.v = new Float64Array(low.length); }
        const u = refAdamDirection(low, s.m, s.v, SETTINGS);
        const back = sides[i] === 'left' ? refMatmul(s.Q, u, R, 3, C) : refMatmul(u, s.Q, R, 3, C);
        const stepSize = (SETTINGS.lr * Math.sqrt(1 - 0.95 ** step)) / (1 - 0.9 ** step);
        for (let k = 0; k < p.host.length; k++) p.host[k] = (p.host[k]! - stepSize * galore.scale * back[k]!) * (1 - SETTINGS.lr * SETTINGS.weightDecay);
      });
    }
    for (const p of ps) expectClose(await gpu.readF32(p.value), p.host, 1e-4, p.name, rng.seed);
    opt.release();
  });

  it('the SVD of a large gradient takes its products on the GPU, equal to the host products', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [R, C, q] = [70, 45, 5];
    // three well-separated directions over noise: the top singular vectors are well defined
    const [a, b, noise] = [rng.randn(3 * R), rng.randn(3 * C), rng.randn(R * C, 0.3)];
    const g = Float32Array.from(noise, (e, i) => e + [10, 6, 3].reduce((sum, w, t) => sum + w * a[t * R + Math.floor(i / C)]! * b[t * C + (i % C)]!, 0));
    const G = gpu.upload(g, [R, C]);
    const onGpu = await gradientOps(gpu, G, R, C, 0), onHost = await gradientOps(gpu, G, R, C);
    const x = Float64Array.from(rng.randn(q * C)), y = Float64Array.from(rng.randn(q * R));
    expectClose(await onGpu.times(x, q), refMatmul(x, g, q, C, R, false, true), 1e-5, 'X Gᵀ', rng.seed);
    expectClose(await onGpu.timesT(y, q), refMatmul(y, g, q, R, C), 1e-5, 'Y G', rng.seed);
    expectClose(await onHost.times(x, q), refMatmul(x, g, q, C, R, false, true), 1e-12, 'X Gᵀ (host)', rng.seed);
    const projection = await topSingularProjection(onGpu, 3, 'right', normalFrom(Math.random));
    const ref = refTopSingular(g, R, C, 3, 'right');
    expectClose(projection, ref, 1e-3, 'top singular vectors', rng.seed);
  });

  for (const variant of [
    { scaleType: 'channel' as const, scaleFront: false, projType: 'std' as const },
    { scaleType: 'tensor' as const, scaleFront: true, projType: 'std' as const },
    { scaleType: 'channel' as const, scaleFront: false, projType: 'left' as const },
    { scaleType: 'channel' as const, scaleFront: false, projType: 'std' as const, proj: 'svd' as const },
  ]) {
    it(`APOLLO (${variant.proj ?? 'random'} projection, ${variant.scaleType} scaling${variant.scaleFront ? ', scale_front' : ''}, ${variant.projType}): the raw gradient scaled by the projected Adam's effect, limited in growth`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      const ps = [
        param(gpu, rng, 'model.layers.0.self_attn.o_proj.weight', [8, 14]),
        param(gpu, rng, 'model.layers.0.mlp.gate_proj.weight', [16, 6]),
        param(gpu, rng, 'model.layers.0.self_attn.o_proj.bias', [8]),
      ];
      const apollo = { targets: ['all'], rank: 3, updateInterval: 2, scale: 4, proj: 'random' as 'random' | 'svd', ...variant };
      const opt = new Apollo(gpu, ps, SETTINGS, apollo, 3);
      const state = ps.map((p) => ({ m: new Float64Array(p.host.length), v: new Float64Array(p.host.length), Q: new Float64Array(0) as Float64Array, prev: -1 }));
      for (let step = 1; step <= 4; step++) {
        const grads = ps.map((p) => rng.randn(p.host.length, 0.5));
        ps.forEach((p, i) => gpu.write(p.grad, grads[i]!));
        await opt.prepare();
        opt.update(SETTINGS.lr);
        const scale = refClipScale(refSumSq(grads), SETTINGS.maxGradNorm);
        const stepSize = (SETTINGS.lr * Math.sqrt(1 - 0.95 ** step)) / (1 - 0.9 ** step);
        ps.forEach((p, i) => {
          const g = Float64Array.from(grads[i]!, (x) => x * scale), s = state[i]!;
          if (i === 2) return refHfAdamW(p.host, g, s.m, s.v, { ...SETTINGS, weightDecay: 0, step });
          const [R, C] = p.value.shape as [number, number];
          const side = variant.projType === 'left' || R < C ? 'left' : 'right';
          const qShape: [number, number] = side === 'right' ? [3, C] : [R, 3];
          if ((step - 1) % 2 === 0) s.Q = apollo.proj === 'svd' ? refTopSingular(grads[i]!, R, C, 3, side) : Float64Array.from(randomProjection(qShape, 3, i, step - 1));
          const [a, b] = side === 'left' ? [3, C] : [R, 3];
          const low = side === 'left' ? refMatmul(s.Q, g, 3, R, C, true) : refMatmul(g, s.Q, R, C, 3, false, true);
          if (s.m.length !== low.length) { s.m = new Float64Array(low.length); s.v = new Float64Array(low.length); }
          const u = refAdamDirection(low, s.m, s.v, SETTINGS);
          // torch.norm over dim 0 when a < b (a factor per column), else over dim 1 (per row)
          const factor = (r: number, c: number): number => {
            if (variant.scaleType === 'tensor') return norm(u) / (norm(low) + 1e-8);
            const pick = (x: Float64Array) => (a < b ? Array.from({ length: a }, (_, t) => x[t * b + c]!) : Array.from({ length: b }, (_, t) => x[r * b + t]!));
            return norm(pick(u)) / (norm(pick(low)) + 1e-8);
          };
          const root = Math.sqrt(apollo.scale);
          let y = Float64Array.from(g, (x, e) => x * factor(Math.floor(e / C), e % C) * (variant.scaleFront ? root : 1));
          const n = norm(y);
          if (s.prev < 0) s.prev = n;
          else {
            const limiter = Math.max(n / (s.prev + 1e-8), 1.01) / 1.01;
            y = y.map((x) => x / limiter);
            s.prev = n / limiter;
          }
          for (let k = 0; k < p.host.length; k++) p.host[k] = (p.host[k]! - stepSize * (variant.scaleFront ? 1 : root) * y[k]!) * (1 - SETTINGS.lr * SETTINGS.weightDecay);
        });
      }
      for (const p of ps) expectClose(await gpu.readF32(p.value), p.host, 1e-4, p.name, rng.seed);
      opt.release();
    });
  }

  it('BAdam layer mode: one layer at a time with fresh torch AdamW state, clipped over that layer, the rest frozen', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const ps = [
      param(gpu, rng, 'model.embed_tokens.weight', [5, 4]),
      param(gpu, rng, 'model.layers.0.mlp.up_proj.weight', [6, 4]),
      param(gpu, rng, 'model.layers.0.post_attention_layernorm.weight', [4]),
      param(gpu, rng, 'model.layers.1.mlp.up_proj.weight', [6, 4]),
      param(gpu, rng, 'model.layers.2.mlp.up_proj.weight', [6, 4]),
    ];
    const badam = { mode: 'layer' as const, startBlock: 2, switchMode: 'descending' as const, switchInterval: 2, updateRatio: 0.05, maskMode: 'adjacent' as const, seed: 1 };
    const opt = new BadamLayer(gpu, ps, SETTINGS, badam);
    const frozen = Float64Array.from(ps[0]!.host);
    let m = ps.map((p) => new Float64Array(p.host.length)), v = ps.map((p) => new Float64Array(p.host.length));
    const trained: number[] = [];
    for (let step = 1; step <= 5; step++) {
      const layer = opt.activeLayer;
      trained.push(layer);
      if ((step - 1) % 2 === 0) { m = ps.map((p) => new Float64Array(p.host.length)); v = ps.map((p) => new Float64Array(p.host.length)); }
      const grads = ps.map((p) => rng.randn(p.host.length, 0.5));
      ps.forEach((p, i) => gpu.write(p.grad, grads[i]!));
      opt.update(SETTINGS.lr);
      const active = ps.map((p) => p.name.includes(`layers.${layer}.`));
      const scale = refClipScale(refSumSq(grads.filter((_, i) => active[i])), SETTINGS.maxGradNorm);
      ps.forEach((p, i) => { if (active[i]) refAdamW(p.host, grads[i]!, m[i]!, v[i]!, { ...SETTINGS, weightDecay: 0, step: ((step - 1) % 2) + 1, gradScale: scale }); });
    }
    expect(trained).toEqual([2, 2, 1, 1, 0]);
    for (const p of ps) expectClose(await gpu.readF32(p.value), p.host, 1e-5, p.name, rng.seed);
    expectClose(await gpu.readF32(ps[0]!.value), frozen, 0, 'embedding', rng.seed);
    opt.step = 6; // a resume at step 6: the third period, layer 0 again after 2 → 1 → 0 → 2
    expect(opt.activeLayer).toBe(2);
    opt.release();
  });

  it('BAdam layer mode on a model: backward does no weight-gradient work outside the active layer, whose gradients and update equal the all-gradient reference', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const model = await Model.load(gpu, dirFiles(join(import.meta.dirname, 'fixtures/models/llama')));
    const params = makeTrainable(model, model.layers.map((l) => l.index), true); // full: embeddings and head too
    const B = 2, S = 12, V = model.spec.vocab;
    const ids = rng.int(B * S, V);
    const batch = { B, S, ids, labels: shiftLabels(ids, B, S), positions: Int32Array.from({ length: B * S }, (_, i) => i % S) };
    const ws = new Workspace(model, B, S, false);
    ws.load(batch);
    const backward = (): number => {
      const before = gpu.counters.dispatches;
      forwardBackward(ws, { backward: true, gradScale: 1 / (B * S) });
      return gpu.counters.dispatches - before;
    };
    for (const p of params) gpu.zero(p.grad);
    const allDispatches = backward();
    const all = await Promise.all(params.map((p) => gpu.readF32(p.grad)));
    const initial = await Promise.all(params.map((p) => gpu.readF32(p.value)));
    const badam = { mode: 'layer' as const, startBlock: 1, switchMode: 'fixed' as const, switchInterval: 50, updateRatio: 0.05, maskMode: 'adjacent' as const, seed: 1 };
    const opt = new BadamLayer(gpu, params, SETTINGS, badam);
    opt.zeroGrad();
    const active = params.map((p) => p.name.includes('layers.1.'));
    const poison = params.map((p, i) => (active[i] ? null : new Float32Array(p.grad.shape.reduce((a, b) => a * b, 1)).fill(7)));
    params.forEach((p, i) => { if (poison[i]) gpu.write(p.grad, poison[i]); });
    const badamDispatches = backward();
    // layer 0's weights, the embeddings, final norm and head: no gradient kernels, buffers untouched
    expect(badamDispatches).toBeLessThan(allDispatches);
    for (const [i, p] of params.entries()) {
      const g = await gpu.readF32(p.grad);
      if (active[i]) expectClose(g, all[i]!, 1e-5, `${p.name} grad`, rng.seed);
      else expect([...g].every((x) => x === 7), `${p.name} grad untouched`).toBe(true);
    }
    params.forEach((p, i) => { if (poison[i]) gpu.zero(p.grad); });
    opt.update(SETTINGS.lr);
    const scale = refClipScale(refSumSq(all.filter((_, i) => active[i])), SETTINGS.maxGradNorm);
    for (const [i, p] of params.entries()) {
      const want = Float64Array.from(initial[i]!);
      if (active[i]) refAdamW(want, all[i]!, new Float64Array(want.length), new Float64Array(want.length), { ...SETTINGS, weightDecay: 0, step: 1, gradScale: scale });
      expectClose(await gpu.readF32(p.value), want, active[i] ? 1e-5 : 0, p.name, rng.seed);
    }
    opt.release();
    ws.release();
    model.release();
  });

  it('BAdam switch orders and ratio masks', () => {
    const s = (switchMode: 'ascending' | 'descending' | 'random' | 'fixed', startBlock: number | null = null) => ({ switchMode, startBlock, seed: 4 });
    expect([0, 1, 2, 3].map((e) => activeBlock(s('ascending'), 3, e))).toEqual([0, 1, 2, 0]);
    expect([0, 1, 2, 3].map((e) => activeBlock(s('descending'), 3, e))).toEqual([2, 1, 0, 2]);
    expect([0, 1, 2].map((e) => activeBlock(s('fixed', 1), 3, e))).toEqual([1, 1, 1]);
    const random = [0, 1, 2, 3, 4, 5].map((e) => activeBlock(s('random'), 3, e));
    expect([...random.slice(0, 3)].sort()).toEqual([0, 1, 2]); // each block once per round
    expect([...random.slice(3)].sort()).toEqual([0, 1, 2]);
    expect([...ratioMask(10, 0.3, 'adjacent', 0, 0)]).toEqual([0, 1, 2]);
    expect([...ratioMask(10, 0.3, 'adjacent', 3, 0)]).toEqual([0, 9, 1].sort((a, b) => a - b)); // offset 9 wraps
    const scatter = ratioMask(20, 0.25, 'scatter', 1, 5);
    expect(scatter.length).toBe(5);
    expect(new Set([...ratioMask(20, 0.25, 'scatter', 0, 5), ...scatter]).size).toBe(10); // the next window of one order
  });

  it('BAdam ratio mode: sparse Adam on each weight\'s masked entries, clipped over them, embeddings and head frozen', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const ps = [
      param(gpu, rng, 'model.embed_tokens.weight', [5, 4]),
      param(gpu, rng, 'model.layers.0.mlp.up_proj.weight', [10, 8]),
      param(gpu, rng, 'model.layers.1.mlp.up_proj.weight', [10, 8]),
      param(gpu, rng, 'model.norm.weight', [40]),
      param(gpu, rng, 'lm_head.weight', [5, 4]),
    ];
    const badam = { mode: 'ratio' as const, startBlock: null, switchMode: 'ascending' as const, switchInterval: 50, updateRatio: 0.1, maskMode: 'scatter' as const, seed: 9 };
    const opt = new BadamRatio(gpu, ps, SETTINGS, badam);
    const seeds = [0, 9, 9, 10, 0];
    const masks = ps.map((p, i) => (i === 0 || i === 4 ? new Uint32Array(0) : ratioMask(p.host.length, 0.1, 'scatter', 0, seeds[i]!)));
    const m = masks.map((x) => new Float64Array(x.length)), v = masks.map((x) => new Float64Array(x.length));
    const before = ps.map((p) => Float64Array.from(p.host));
    for (let step = 1; step <= 3; step++) {
      const grads = ps.map((p) => rng.randn(p.host.length, 0.5));
      ps.forEach((p, i) => gpu.write(p.grad, grads[i]!));
      opt.update(SETTINGS.lr);
      const scale = refClipScale(refSumSq(masks.map((x, i) => Array.from(x, (j) => grads[i]![j]!))), SETTINGS.maxGradNorm);
      const stepSize = (SETTINGS.lr * Math.sqrt(1 - 0.95 ** step)) / (1 - 0.9 ** step);
      masks.forEach((x, i) => x.forEach((j, t) => {
        const g = grads[i]![j]! * scale;
        m[i]![t]! += (g - m[i]![t]!) * 0.1;
        v[i]![t]! += (g * g - v[i]![t]!) * 0.05;
        ps[i]!.host[j] = ps[i]!.host[j]! - stepSize * (m[i]![t]! / (Math.sqrt(v[i]![t]!) + SETTINGS.eps));
      }));
    }
    for (const p of ps) expectClose(await gpu.readF32(p.value), p.host, 1e-5, p.name, rng.seed);
    expectClose(await gpu.readF32(ps[0]!.value), before[0]!, 0, 'embedding', rng.seed);
    expect(ps[1]!.host.filter((x, i) => x !== before[1]![i]).length).toBe(8);
    opt.release();
  });

  const log = (out: string) => readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss: number });
  for (const [label, keys] of [
    ['use_galore', { use_galore: true, galore_rank: 4, galore_update_interval: 3, galore_scale: 1 }],
    ['use_apollo', { use_apollo: true, apollo_rank: 4, apollo_update_interval: 3, apollo_scale: 1 }],
    ['use_badam layer', { use_badam: true, badam_switch_interval: 1, badam_switch_mode: 'random' }],
    ['use_badam ratio', { use_badam: true, badam_mode: 'ratio', badam_update_ratio: 0.5 }],
  ] as const) {
    it(`a full fine-tuning config with ${label} trains and resumes from its checkpoint on the same curve`, async () => {
      const gpu = await testGpu();
      const run = (out: string, maxSteps: number) => runTraining(configFromObject({
        model_name_or_path: join(import.meta.dirname, 'fixtures/tiny-chat'), stage: 'sft', do_train: true, finetuning_type: 'full',
        dataset: 'identity', dataset_dir: join(import.meta.dirname, 'fixtures/tiny-chat-data'), cutoff_len: 48, output_dir: out,
        per_device_train_batch_size: 2, learning_rate: 1e-3, lr_scheduler_type: 'constant', weight_decay: 0.01, max_steps: maxSteps, logging_steps: 1, save_steps: 2, seed: 5, ...keys,
      }).config, {}, { gpu });
      const whole = mkdtempSync(join(tmpdir(), 'crucible-opt-'));
      await run(whole, 4);
      const split = mkdtempSync(join(tmpdir(), 'crucible-opt-'));
      await run(split, 2);
      await run(split, 4); // resumes from checkpoint-2 (a constant schedule: the two runs' lengths do not change it)
      const a = log(whole), b = log(split);
      expect(b.length).toBe(4);
      b.forEach((r, i) => expect(r.loss).toBeCloseTo(a[i]!.loss, 3));
      expect(a.every((r) => Number.isFinite(r.loss))).toBe(true);
      expect(a[3]!.loss).not.toBe(a[0]!.loss);
    }, 300_000); // three short full fine-tuning runs on a software GPU
  }

  it('layerwise GaLore / APOLLO: the same update with no gradient clipping (the per-weight hooks leave nothing to clip)', () => {
    const layerwise = trainOptionsFromConfig(configFromObject({ stage: 'sft', finetuning_type: 'full', use_apollo: true, apollo_layerwise: true, max_grad_norm: 1 }).config);
    expect(layerwise.maxGradNorm).toBe(0);
    expect(layerwise.optimizer).toMatchObject({ kind: 'apollo', apollo: { rank: 16, scale: 32, scaleType: 'channel', proj: 'random' } });
    const whole = trainOptionsFromConfig(configFromObject({ stage: 'sft', finetuning_type: 'full', use_galore: true, galore_target: 'mlp,self_attn', max_grad_norm: 1 }).config);
    expect(whole.maxGradNorm).toBe(1);
    expect(whole.optimizer).toEqual({ kind: 'galore', galore: { targets: ['mlp', 'self_attn'], rank: 16, updateInterval: 200, scale: 2, projType: 'std' } });
  });

  it('conflicting or unsupported choices are refused, naming the keys', () => {
    expect(() => configFromObject({ stage: 'sft', finetuning_type: 'lora', use_galore: true })).toThrow(/use_galore is a full-parameter method: it cannot train a LoRA adapter/);
    expect(() => configFromObject({ stage: 'sft', finetuning_type: 'full', use_galore: true, use_badam: true })).toThrow(/use_galore and use_badam each choose the optimizer/);
    expect(() => configFromObject({ stage: 'sft', mixture_of_depths: 'convert' })).toThrow(/mixture_of_depths: "?convert"? asks for Mixture-of-Depths \(the MoD package's per-token router/);
    expect(() => configFromObject({ stage: 'sft', finetuning_type: 'full', use_apollo: true, use_muon: true })).toThrow(/use_muon and use_apollo each choose the optimizer/);
    expect(() => configFromObject({ stage: 'sft', finetuning_type: 'full', use_galore: true, galore_layerwise: true, gradient_accumulation_steps: 2 }))
      .toThrow(/galore_layerwise steps each weight as soon as its gradient is ready, which leaves nothing to accumulate/);
    expect(() => configFromObject({ stage: 'sft', finetuning_type: 'full', use_apollo: true, apollo_layerwise: true, gradient_accumulation_steps: 4 })).toThrow(/apollo_layerwise/);
    expect(() => configFromObject({ stage: 'sft', finetuning_type: 'full', use_galore: true, galore_proj_type: 'full' })).toThrow(/galore_proj_type: full/);
    expect(() => configFromObject({ stage: 'sft', finetuning_type: 'full', use_badam: true, badam_mode: 'blocks' })).toThrow(/badam_mode/);
  });
});
