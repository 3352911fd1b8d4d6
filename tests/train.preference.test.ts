// Preference stages (src/train/preference/): the losses and their gradients with respect to the
// sequences' log-probabilities (or rewards) against f64 references of the published formulas
// (tests/reference/preference.ts), the per-token gradient weight of the fused loss, DPO parity with
// TRL/PyTorch on the llama_dpo fixture, directional finite differences of the whole GPU chain for
// orpo and rm, and short Trainer runs (metric names in the log records, rising reward accuracy,
// value_head.safetensors).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { KtoExample } from '../src/data/processor';
import { lmHeadCrossEntropy } from '../src/kernels/loss';
import { Adapter } from '../src/model/adapter';
import { fileSource, dirFiles } from '../src/model/files-node';
import { forwardBackward, Workspace } from '../src/model/forward';
import { Model } from '../src/model/model';
import { openSafetensors, readF32 } from '../src/model/safetensors';
import {
  chartKeys, ktoLoss, pairwiseLoss, PreferenceObjective, preferenceOptions, rewardLoss,
  type PreferenceExample, type PreferenceOptions, type PrefLoss,
} from '../src/train/preference';
import { Trainer, type LogRecord } from '../src/train/trainer';
import { rowsBatch } from '../src/train/sequences';
import { V_HEAD_BIAS, V_HEAD_WEIGHT } from '../src/train/value-head';
import { expectClose, makeRng, relErr, type Rng } from './helpers/check';
import { poisoned, testGpu } from './helpers/gpu';
import { prefOptions, prefTrainOptions, randomPairs } from './helpers/preference';
import { memoryStore } from './helpers/run-store';
import { refLossGrad, refLoss } from './reference/loss';
import { numericGrad, refDpoLoss, refDpoRewards, refKl, refKtoLoss, refRmLoss, type RefPrefOptions } from './reference/preference';

const FIXTURE = join(import.meta.dirname, 'fixtures/models/llama_dpo');


/** Random sequence log-probabilities that are valid (negative averages of a few nats). */
function pairs(rng: Rng, P: number) {
  const lens = Array.from({ length: 2 * P }, () => 1 + Math.floor(rng.next() * 20));
  const logps = lens.map((n) => -n * (0.05 + 3 * rng.next()));
  const ref = logps.map((l, i) => l + lens[i]! * 0.4 * (rng.next() - 0.5));
  return { lens, logps, ref };
}

describe('preference losses vs the published formulas (f64)', () => {
  const cases: Array<[PrefLoss, Partial<PreferenceOptions>]> = [
    ['sigmoid', {}], ['sigmoid', { labelSmoothing: 0.2, ftx: 0.5 }], ['hinge', { beta: 0.5 }], ['ipo', { ftx: 0.3 }],
    ['orpo', {}], ['orpo', { ftx: 1, beta: 0.2 }], ['simpo', { beta: 2, simpoGamma: 0.5 }], ['simpo', { ftx: 0.1 }],
  ];
  for (const [loss, over] of cases) {
    it(`${loss} ${JSON.stringify(over)}: loss, rewards and d loss / d logp`, () => {
      const rng = makeRng();
      const o = prefOptions({ loss, ...over });
      const P = 5;
      const { lens, logps, ref } = pairs(rng, P);
      const usesRef = loss === 'sigmoid' || loss === 'hinge' || loss === 'ipo';
      const r = pairwiseLoss(o, {
        chosen: logps.slice(0, P), rejected: logps.slice(P), chosenLen: lens.slice(0, P), rejectedLen: lens.slice(P),
        ...(usesRef ? { refChosen: ref.slice(0, P), refRejected: ref.slice(P) } : {}),
      });
      const ro: RefPrefOptions = o;
      const refRef = usesRef ? ref : null;
      const f = (x: number[]) => refDpoLoss(ro, x, lens, refRef);
      expect(Math.abs(r.loss - f(logps)), `loss (SEED=${rng.seed})`).toBeLessThan(1e-12 * Math.max(1, Math.abs(f(logps))));
      expectClose([...r.dChosen, ...r.dRejected], numericGrad(f, logps), 1e-6, 'gradient', rng.seed);
      const rewards = refDpoRewards(ro, logps, lens, refRef);
      expectClose([...r.chosenRewards, ...r.rejectedRewards], rewards, 1e-12, 'rewards', rng.seed);
      const margins = rewards.slice(0, P).map((c, i) => c - rewards[P + i]!);
      expect(r.metrics['rewards/margins']).toBeCloseTo(margins.reduce((a, b) => a + b) / P, 12);
      expect(r.metrics['rewards/accuracies']).toBeCloseTo(margins.filter((m) => m > 0).length / P, 12);
      if (loss === 'orpo') expect(r.metrics.sft_loss).toBeCloseTo(-logps.slice(0, P).reduce((a, l, i) => a + l / lens[i]!, 0) / P, 12);
    });
  }

  it('kto: loss, KL estimate (no gradient through it), d loss / d logp; all-desirable and all-undesirable batches; ftx rescaling', () => {
    const rng = makeRng();
    for (const [tags, over] of [
      [[true, false, true, false, false], {}],
      [[true, true, false, true, false], { ftx: 0.4, ktoChosenWeight: 1.5, ktoRejectedWeight: 0.5, beta: 0.3 }],
      [[true, true, true], { ftx: 0.2 }],
      [[false, false], { ktoRejectedWeight: 2 }],
    ] as Array<[boolean[], Partial<PreferenceOptions>]>) {
      const o = prefOptions({ stage: 'kto', ...over });
      const B = tags.length;
      const lens = Array.from({ length: B }, () => 1 + Math.floor(rng.next() * 12));
      const logps = lens.map((n) => -n * (0.5 + rng.next()));
      const ref = logps.map((l) => l + rng.normal());
      const kl = Array.from({ length: B }, () => -20 * rng.next()), refKlv = kl.map((k) => k - 0.5 + rng.next());
      const r = ktoLoss(o, { logps, lens, tags, refLogps: ref, klLogps: kl, refKlLogps: refKlv });
      const f = (x: number[]) => refKtoLoss(o, x, lens, tags, ref, kl, refKlv);
      expect(Math.abs(r.loss - f(logps)), `loss (SEED=${rng.seed})`).toBeLessThan(1e-12);
      expect(r.kl).toBeCloseTo(refKl(kl, refKlv), 12);
      expectClose(r.d, numericGrad(f, logps), 1e-6, `gradient ${JSON.stringify(tags)}`, rng.seed);
      expect(r.chosenRewards.length + r.rejectedRewards.length).toBe(B);
    }
  });

  it('rm: -logsigmoid(r_c - r_r), d loss / d reward, accuracy', () => {
    const rng = makeRng();
    const scores = Array.from(rng.randn(12, 2));
    const r = rewardLoss(scores.slice(0, 6), scores.slice(6));
    expect(r.loss).toBeCloseTo(refRmLoss(scores), 12);
    expectClose([...r.dChosen, ...r.dRejected], numericGrad(refRmLoss, scores), 1e-7, 'gradient', rng.seed);
    expect(r.accuracy).toBeCloseTo(scores.slice(0, 6).filter((c, i) => c > scores[6 + i]!).length / 6, 12);
  });

  it("config keys: LLaMA-Factory's names, kto_pair refused, label smoothing only for sigmoid", () => {
    const base = { stage: 'dpo', pref_beta: 0.2, pref_ftx: 0.1, pref_loss: 'simpo', dpo_label_smoothing: 0, simpo_gamma: 0.7, kto_chosen_weight: 2, kto_rejected_weight: 3 } as const;
    expect(preferenceOptions(base)).toEqual({ stage: 'dpo', beta: 0.2, ftx: 0.1, loss: 'simpo', labelSmoothing: 0, simpoGamma: 0.7, ktoChosenWeight: 2, ktoRejectedWeight: 3 });
    expect(preferenceOptions({ ...base, stage: 'sft' })).toBeNull();
    expect(() => preferenceOptions({ ...base, pref_loss: 'kto_pair' })).toThrow(/stage: kto/);
    expect(() => preferenceOptions({ ...base, pref_loss: 'hinge', dpo_label_smoothing: 0.1 })).toThrow(/sigmoid/);
    expect(chartKeys('dpo').slice(0, 2)).toEqual(['loss', 'rewards/accuracies']);
    expect(chartKeys('rm')).toContain('eval_accuracy');
  });
});


interface DpoCase { beta: number; chosen: number[]; rejected: number[]; prompt_len: number; ref_chosen_logp: number; ref_rejected_logp: number; policy_chosen_logp: number; policy_rejected_logp: number; loss: number }

let shared: Promise<Model> | null = null;
/** The llama_dpo base model, loaded once per file (adapters attach to it and are released after each test). */
const fixtureModel = async (): Promise<Model> => (shared ??= testGpu().then((gpu) => Model.load(gpu, dirFiles(FIXTURE))));

async function fixture() {
  const gpu = await testGpu();
  const model = await fixtureModel();
  const adapter = await Adapter.load(model, readFileSync(join(FIXTURE, 'adapter_init/adapter_config.json'), 'utf8'),
    await fileSource(join(FIXTURE, 'adapter_init/adapter_model.safetensors')));
  const workspaces = new Map<string, Workspace>();
  const workspace = (B: number, S: number) => {
    const k = `${B}x${S}`;
    let ws = workspaces.get(k);
    if (!ws) workspaces.set(k, (ws = new Workspace(model, B, S, false)));
    return ws;
  };
  const release = () => {
    for (const ws of workspaces.values()) ws.release();
    adapter.release();
  };
  return { gpu, model, adapter, workspace, release };
}


describe('preference training on the GPU', () => {
  it('the fused loss with per-token gradient weights matches the reference, and the loss itself is unchanged', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const T = 6, D = 20, V = 150;
    const h = rng.randn(T * D), w = rng.randn(V * D, 0.3), labels = rng.int(T, V);
    labels[3] = -100;
    const weights = rng.randn(T);
    const loss = poisoned(gpu, [T]), dH = poisoned(gpu, [T, D]), dW = gpu.tensor([V, D]);
    gpu.zero(dW);
    lmHeadCrossEntropy(gpu, gpu.upload(h, [T, D]), gpu.upload(w, [V, D]), gpu.upload(labels, [T], 'i32'), { loss, dH, dW },
      { gradScale: 0.5, chunk: 64, tokenWeights: gpu.upload(weights, [T]) });
    const p = { h, w, labels, T, D, V };
    expectClose(await gpu.readF32(loss), refLoss(p), 1e-5, 'loss', rng.seed);
    const refDH = new Float64Array(T * D), refDW = new Float64Array(V * D);
    for (let t = 0; t < T; t++) {
      const row = { h: h.subarray(t * D, (t + 1) * D), w, labels: labels.subarray(t, t + 1), T: 1, D, V };
      const g = refLossGrad(row, 0.5 * weights[t]!);
      refDH.set(g.dH, t * D);
      g.dW.forEach((x, i) => (refDW[i]! += x));
    }
    expectClose(await gpu.readF32(dH), refDH, 1e-4, 'dH', rng.seed);
    expectClose(await gpu.readF32(dW), refDW, 1e-4, 'dW', rng.seed);
  });

  for (const recompute of [false, true]) it(`dpo sigmoid parity with TRL on llama_dpo: reference and policy log-probs, loss, LoRA gradients${recompute ? ' (recomputed activations)' : ''}`, async () => {
    const { gpu, model, adapter, workspace: _, release } = await fixture();
    const own = new Map<string, Workspace>();
    const workspace = (B: number, S: number) => own.get(`${B}x${S}`) ?? own.set(`${B}x${S}`, new Workspace(model, B, S, recompute)).get(`${B}x${S}`)!;
    const d = (JSON.parse(readFileSync(join(FIXTURE, 'case.json'), 'utf8')) as { dpo: DpoCase }).dpo;
    const labels = (ids: number[]) => ids.map((x, i) => (i < d.prompt_len ? -100 : x));
    const pair = { chosen: { input_ids: d.chosen, labels: labels(d.chosen) }, rejected: { input_ids: d.rejected, labels: labels(d.rejected) } };
    const obj = new PreferenceObjective({ model, adapter, padId: 0, cutoffLen: 64, workspace, random: Math.random }, prefOptions({ beta: d.beta }));
    const params = adapter.params();
    for (const p of params) gpu.zero(p.grad);
    const r = await obj.pairwise([pair], 1, true);
    const near = (got: number, want: number, what: string) => expect(Math.abs(got - want) / Math.abs(want), `${what}: ${got} vs ${want}`).toBeLessThan(1e-4);
    near(r.refLogps![0]!, d.ref_chosen_logp, 'reference chosen logp');
    near(r.refLogps![1]!, d.ref_rejected_logp, 'reference rejected logp');
    near(r.policyLogps[0]!, d.policy_chosen_logp, 'policy chosen logp');
    near(r.policyLogps[1]!, d.policy_rejected_logp, 'policy rejected logp');
    near(r.loss, d.loss, 'loss');
    const ref = await openSafetensors(await fileSource(join(FIXTURE, 'grads_init.safetensors')));
    expect(params.map((p) => p.name).sort()).toEqual([...ref.tensors.keys()].sort());
    for (const p of params) {
      const err = relErr(await gpu.readF32(p.grad), await readF32(ref, p.name));
      expect(err, `gradient ${p.name}: rel err ${err}`).toBeLessThan(1e-4);
    }
    obj.release();
    for (const ws of own.values()) ws.release();
    release();
  });

  // The whole chain (logps from the fused loss, weights, reuseForward backward, value head) against
  // central differences of the GPU loss along the gradient: d/dε L(θ + ε ĝ) = |g|.
  for (const stage of ['orpo', 'rm'] as const) {
    it(`${stage}: directional finite difference of the GPU loss matches the gradient norm`, async () => {
      const { gpu, model, adapter, workspace, release } = await fixture();
      const rng = makeRng();
      const obj = new PreferenceObjective({ model, adapter, padId: 0, cutoffLen: 64, workspace, random: rng.next },
        prefOptions(stage === 'rm' ? { stage: 'rm' } : { loss: 'orpo', beta: 0.5, ftx: 0.3 }));
      const rows = randomPairs(rng, 2, model.spec.vocab);
      const params = [...adapter.params(), ...obj.params];
      for (const p of params) gpu.zero(p.grad);
      await obj.microBatch(rows, 1, true);
      const theta = await Promise.all(params.map((p) => gpu.readF32(p.value)));
      const grads = await Promise.all(params.map((p) => gpu.readF32(p.grad)));
      const norm = Math.sqrt(grads.reduce((a, g) => a + g.reduce((s, x) => s + x * x, 0), 0));
      const eps = 1e-2;
      const lossAt = async (s: number) => {
        params.forEach((p, i) => gpu.write(p.value, theta[i]!.map((x, j) => x + (s * eps * grads[i]![j]!) / norm)));
        return (await obj.microBatch(rows, 1, false)).loss;
      };
      const fd = ((await lossAt(1)) - (await lossAt(-1))) / (2 * eps);
      expect(Math.abs(fd - norm) / norm, `fd ${fd} vs |g| ${norm} (SEED=${rng.seed})`).toBeLessThan(5e-3);
      obj.release();
      obj.valueHead?.release();
      release();
    });
  }
});


describe('preference stages in the Trainer', () => {
  it('dpo: a few steps raise rewards/accuracies; records carry TRL metric names; gradient accumulation', async () => {
    const model = await fixtureModel();
    const rng = makeRng();
    const train = randomPairs(rng, 4, model.spec.vocab);
    const t = await Trainer.create(model, train, train, prefTrainOptions({ gradAccum: 2, evalSteps: 3, preference: prefOptions({ beta: 0.5 }) }), 0);
    const logs: LogRecord[] = [];
    await t.run(null, { onLog: (r) => logs.push(r) });
    const trainLogs = logs.filter((r) => r.loss !== undefined);
    expect(trainLogs).toHaveLength(3);
    for (const k of ['loss', 'grad_norm', 'rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins', 'logps/chosen', 'logps/rejected'] as const) {
      expect(trainLogs[0]![k], k).toBeTypeOf('number');
    }
    // a fresh adapter (B = 0) is the reference: zero rewards, no pair counted as won
    expect(trainLogs[0]!['rewards/accuracies']).toBe(0);
    expect(trainLogs[0]!.loss).toBeCloseTo(Math.LN2, 4);
    const last = trainLogs.at(-1)!;
    expect(last['rewards/accuracies'], `SEED=${rng.seed}`).toBeGreaterThanOrEqual(0.5);
    expect(last['rewards/margins']!).toBeGreaterThan(0);
    expect(last.loss!).toBeLessThan(Math.LN2);
    // after training, on the same pairs
    const ev = logs.find((r) => r.eval_loss !== undefined)!;
    for (const k of ['eval_rewards/accuracies', 'eval_rewards/margins', 'eval_rewards/chosen', 'eval_rewards/rejected'] as const) expect(ev[k], k).toBeTypeOf('number');
    expect(ev['eval_rewards/accuracies'], `SEED=${rng.seed}`).toBeGreaterThanOrEqual(0.75);
    expect(ev.eval_loss!).toBeLessThan(Math.LN2);
    t.release();
    t.adapter?.release();
  });

  it('kto: kl and reward metrics; rm: accuracy, eval_accuracy, value_head.safetensors beside the adapter, resume', async () => {
    const gpu = await testGpu();
    const model = await fixtureModel();
    const rng = makeRng();
    const pairsSet = randomPairs(rng, 4, model.spec.vocab);
    const kto: KtoExample[] = pairsSet.map((p, i) => ({
      ...p.chosen, kl_input_ids: pairsSet[(i + 3) % 4]!.rejected.input_ids, kl_labels: pairsSet[(i + 3) % 4]!.rejected.labels, kto_tag: i % 2 === 0,
    }));
    const tk = await Trainer.create(model, kto, [], prefTrainOptions({ maxSteps: 1, batchSize: 4, preference: prefOptions({ stage: 'kto', ftx: 0.1 }) }), 0);
    const kLogs: LogRecord[] = [];
    await tk.run(null, { onLog: (r) => kLogs.push(r) });
    for (const k of ['loss', 'kl', 'rewards/chosen', 'rewards/rejected', 'rewards/margins', 'logps/chosen'] as const) expect(kLogs[0]![k], k).toBeTypeOf('number');
    tk.release();
    tk.adapter?.release();

    const s = memoryStore();
    const opts = prefTrainOptions({ maxSteps: 1, batchSize: 4, evalSteps: 1, saveSteps: 1, preference: prefOptions({ stage: 'rm' }) });
    const tr = await Trainer.create(model, pairsSet, pairsSet.slice(0, 2), opts, 0);
    const rLogs: LogRecord[] = [];
    await tr.run(s, { onLog: (r) => rLogs.push(r) });
    expect(rLogs[0]!.accuracy).toBeTypeOf('number');
    expect(rLogs.find((r) => r.eval_loss !== undefined)!.eval_accuracy).toBeTypeOf('number');
    expect([...s.files.keys()]).toEqual(expect.arrayContaining(['checkpoint-1/adapter_model.safetensors', 'checkpoint-1/value_head.safetensors']));
    const bytes = (await s.read('checkpoint-1/value_head.safetensors'));
    const vh = await openSafetensors({ name: 'value_head', size: bytes.length, read: async (o, n) => bytes.subarray(o, o + n) });
    expect(vh.tensors.get(V_HEAD_WEIGHT)!.shape).toEqual([1, model.spec.hidden]);
    expect(vh.tensors.get(V_HEAD_BIAS)!.shape).toEqual([1]);
    const trained = await gpu.readF32(tr.objective!.valueHead!.weight);
    tr.release();
    // like the adapter, the value head outlives the trainer (the caller saves it beside the adapter)
    expect(await gpu.readF32(tr.objective!.valueHead!.weight)).toEqual(trained);
    tr.objective!.valueHead!.release();
    tr.adapter?.release();
    // a new run resumes the value head with the adapter and optimizer
    const again = await Trainer.create(model, pairsSet, [], opts, 0);
    await again.resume(s, 'checkpoint-1');
    expectClose(await gpu.readF32(again.objective!.valueHead!.weight), trained, 0, 'resumed value head');
    again.release();
    again.objective!.valueHead!.release();
    again.adapter?.release();
  });

  it('refuses what it cannot do: pairs for kto', async () => {
    const model = await fixtureModel();
    const pairsSet: PreferenceExample[] = randomPairs(makeRng(), 2, model.spec.vocab);
    await expect(Trainer.create(model, pairsSet, [], prefTrainOptions({ maxSteps: 1, preference: prefOptions({ stage: 'kto' }) }), 0)).rejects.toThrow(/stage kto needs KTO examples/);
  });
});

describe('the shared training loop', () => {
  it('sft still trains, and gradient accumulation sees each micro-batch (loss of step 1 = base loss over all rows)', async () => {
    const gpu = await testGpu();
    const model = await fixtureModel();
    const rng = makeRng();
    // four rows of one length: both micro-batches of the step use the same workspace
    const train = randomPairs(rng, 4, model.spec.vocab).map((p) => ({ input_ids: p.chosen.input_ids.slice(0, 8), labels: p.chosen.input_ids.slice(0, 8) }));
    for (const e of train) while (e.input_ids.length < 8) e.input_ids.push(5), e.labels.push(5);
    let sum = 0, tokens = 0;
    const ws = new Workspace(model, 1, 8, false);
    for (const e of train) {
      const b = rowsBatch([e], 0, 8);
      ws.load(b);
      forwardBackward(ws, { backward: false, gradScale: 1 });
      sum += (await gpu.readF32(ws.loss)).reduce((a, x) => a + x, 0);
      tokens += b.validTokens;
    }
    ws.release();
    // a fresh adapter (B = 0) leaves the base model's loss at step 1
    const t = await Trainer.create(model, train, [], prefTrainOptions({ gradAccum: 2, maxSteps: 2, cutoffLen: 8 }), 0);
    const logs: LogRecord[] = [];
    await t.run(null, { onLog: (r) => logs.push(r) });
    expect(logs[0]!.loss!).toBeCloseTo(sum / tokens, 3);
    expect(logs[1]!.loss!).toBeLessThan(logs[0]!.loss!);
    t.release();
    t.adapter?.release();
  });
});
