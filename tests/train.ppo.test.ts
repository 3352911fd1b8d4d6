// Stage ppo (src/train/ppo/): advantages (KL-penalised rewards, GAE, whitening) and the clipped
// policy and value losses on fixed rollouts against f64 references written as TRL computes on
// padded tensors (tests/reference/ppo.ts), the loss's gradients by central differences, and the
// KL controller and score normalisation against their published update rules.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Adapter } from '../src/model/adapter';
import { dirFiles, fileSource } from '../src/model/files-node';
import { Workspace } from '../src/model/forward';
import { Model } from '../src/model/model';
import type { TokenExample } from '../src/train/batches';
import { PpoObjective, type Rollout } from '../src/train/ppo/objective';
import type { PpoOptions } from '../src/train/ppo/options';
import { RewardModel, type RewardSource } from '../src/train/ppo/reward-model';
import { rowsBatch, sequenceLogps } from '../src/train/sequences';
import { storedSource } from '../src/train/store';
import { Trainer, type LogRecord } from '../src/train/trainer';
import { testGpu } from './helpers/gpu';
import { prefOptions, prefTrainOptions, randomPairs } from './helpers/preference';
import { memoryStore } from './helpers/run-store';
import { computeAdvantages, type ScoredRow } from '../src/train/ppo/advantages';
import { AdaptiveKl } from '../src/train/ppo/kl-control';
import { ppoLoss, type LossRow } from '../src/train/ppo/loss';
import { TRL_PPO_DEFAULTS } from '../src/train/ppo/options';
import { RunningMoments } from '../src/train/ppo/score-scaling';
import { makeRng, type Rng } from './helpers/check';
import { finiteDiff } from './helpers/finite-diff';
import { refAdvantages, refPpoLoss, type Padded } from './reference/ppo';

/** Rows of random lengths placed in a padded batch: prompt positions, then the response's, then padding. */
function rollout(rng: Rng, B: number) {
  const rows = Array.from({ length: B }, () => {
    const q = 2 + Math.floor(rng.next() * 4), n = 1 + Math.floor(rng.next() * 6);
    const logps = Float64Array.from({ length: n }, () => -3 * rng.next());
    return { q, n, logps, refLogps: logps.map((l) => l + 0.5 * rng.normal()), values: Float64Array.from({ length: n }, () => rng.normal()), score: 2 * rng.normal() };
  });
  const L = Math.max(...rows.map((r) => r.q + r.n)) + 1;
  const z = () => new Float64Array(B * L);
  const p: Padded = { B, L, mask: z(), logprobs: z(), refLogprobs: z(), values: z() };
  rows.forEach((r, b) => {
    for (let t = 0; t < L; t++) {
      // the padding carries values too: the reference must mask them out
      p.logprobs[b * L + t] = -rng.next();
      p.refLogprobs[b * L + t] = -rng.next();
      p.values[b * L + t] = rng.normal();
    }
    for (let j = 0; j < r.n; j++) {
      const i = b * L + r.q - 1 + j;
      p.mask[i] = 1;
      p.logprobs[i] = r.logps[j]!;
      p.refLogprobs[i] = r.refLogps[j]!;
      p.values[i] = r.values[j]!;
    }
  });
  // the padded rewards carry the penalty on masked positions too, so the reference needs no re-masking of logprobs there
  return { rows: rows as (ScoredRow & { q: number; n: number })[], p };
}

const at = (p: Padded, arr: Float64Array, b: number, q: number, n: number) => arr.slice(b * p.L + q - 1, b * p.L + q - 1 + n);

describe('PPO advantages vs TRL on padded tensors (f64)', () => {
  for (const whitenRewards of [false, true]) {
    it(`rewards with the KL penalty, GAE, returns and whitened advantages${whitenRewards ? ' (ppo_whiten_rewards)' : ''}`, () => {
      const rng = makeRng();
      const { rows, p } = rollout(rng, 5);
      const klCoef = 0.05 + rng.next() * 0.3, gamma = 0.9 + 0.1 * rng.next(), lam = 0.8 + 0.2 * rng.next();
      const got = computeAdvantages(rows, klCoef, { gamma, lam, whitenRewards });
      const want = refAdvantages(p, rows.map((r) => r.score), klCoef, gamma, lam, whitenRewards);
      rows.forEach((r, b) => {
        const ctx = `row ${b} (SEED=${rng.seed})`;
        const adv = at(p, want.advantages, b, r.q, r.n), ret = at(p, want.returns, b, r.q, r.n);
        for (let j = 0; j < r.n; j++) {
          expect(got.advantages[b]![j], `${ctx} advantage ${j}`).toBeCloseTo(adv[j]!, 10);
          expect(got.returns[b]![j], `${ctx} return ${j}`).toBeCloseTo(ret[j]!, 10);
          expect(got.kls[b]![j], `${ctx} kl ${j}`).toBeCloseTo(r.logps[j]! - r.refLogps[j]!, 12);
        }
      });
    });
  }

  it('refuses a batch too small to whiten', () => {
    expect(() => computeAdvantages([{ logps: [-1], refLogps: [-1], values: [0], score: 1 }], 0.2, { gamma: 1, lam: 0.95, whitenRewards: false }))
      .toThrow(/needs at least 2, got 1/);
  });
});

describe('PPO loss vs TRL (f64)', () => {
  const o = { ...TRL_PPO_DEFAULTS };
  const cases = [
    ['near the old policy (little clipping)', 0.05],
    ['far from it (clipped policy and value branches)', 0.8],
  ] as const;
  for (const [name, drift] of cases) {
    it(`${name}: loss, its parts and d loss / d (logp, value) by central differences`, () => {
      const rng = makeRng();
      const rows: LossRow[] = Array.from({ length: 3 }, () => {
        const n = 2 + Math.floor(rng.next() * 5);
        const oldLogps = Float64Array.from({ length: n }, () => -3 * rng.next());
        const oldValues = Float64Array.from({ length: n }, () => rng.normal());
        return {
          oldLogps, oldValues,
          logps: oldLogps.map((l) => l + drift * rng.normal()),
          values: oldValues.map((v) => v + drift * rng.normal()),
          advantages: Float64Array.from({ length: n }, () => rng.normal()),
          returns: Float64Array.from({ length: n }, () => rng.normal()),
        };
      });
      const flat = (k: keyof LossRow) => Float64Array.from(rows.flatMap((r) => Array.from(r[k])));
      const x = { mask: flat('logps').map(() => 1), oldLogprobs: flat('oldLogps'), oldValues: flat('oldValues'), logprobs: flat('logps'), vpreds: flat('values'), advantages: flat('advantages'), returns: flat('returns') };
      const want = refPpoLoss(x, o);
      const got = ppoLoss(o, rows);
      expect(got.policyLoss).toBeCloseTo(want.pgLoss, 12);
      expect(got.valueLoss).toBeCloseTo(o.vfCoef * want.vfLoss, 12);
      expect(got.loss).toBeCloseTo(want.loss, 12);
      if (drift > 0.5) expect(got.stats['policy/clipfrac'], 'the case clips').toBeGreaterThan(0);
      const dl = got.dLogps.flatMap((d) => Array.from(d)), dv = got.dValues.flatMap((d) => Array.from(d));
      for (let i = 0; i < dl.length; i++) {
        expect(dl[i], `d/dlogp ${i} (SEED=${rng.seed})`).toBeCloseTo(finiteDiff(x.logprobs, i, () => refPpoLoss(x, o).loss), 6);
        expect(dv[i], `d/dvalue ${i} (SEED=${rng.seed})`).toBeCloseTo(finiteDiff(x.vpreds, i, () => refPpoLoss(x, o).loss), 6);
      }
    });
  }

  it('a mini-batch whose mean ratio passes ratio_threshold trains nothing', () => {
    const row: LossRow = { logps: [0, 0], oldLogps: [-5, -5], values: [1, 2], oldValues: [0, 0], advantages: [1, -1], returns: [0, 1] };
    const r = ppoLoss({ ...TRL_PPO_DEFAULTS }, [row]);
    expect(r.loss).toBe(0);
    expect([...r.dLogps[0]!, ...r.dValues[0]!].every((d) => d === 0)).toBe(true);
  });
});

describe('KL controller and score normalisation', () => {
  it('the adaptive controller moves the coefficient by clip(kl / target - 1, ±0.2) · n / horizon', () => {
    const kl = new AdaptiveKl(0.2, 6, 10000);
    kl.update(9, 8); // error clipped to 0.2
    expect(kl.value).toBeCloseTo(0.2 * (1 + (0.2 * 8) / 10000), 15);
    kl.update(5.4, 8); // error -0.1
    expect(kl.value).toBeCloseTo(0.2 * (1 + (0.2 * 8) / 10000) * (1 - (0.1 * 8) / 10000), 15);
  });

  it('running moments over batches equal the moments of all scores seen, and normalise with them', () => {
    const rng = makeRng();
    const m = new RunningMoments();
    const all: number[] = [];
    let last: number[] = [];
    for (let k = 0; k < 4; k++) {
      const xs = Array.from({ length: 2 + Math.floor(rng.next() * 5) }, () => 3 + 2 * rng.normal());
      all.push(...xs);
      last = m.normalize(xs);
      const mean = all.reduce((a, x) => a + x, 0) / all.length;
      const std = Math.sqrt(all.reduce((a, x) => a + (x - mean) ** 2, 0) / (all.length - 1));
      expect(m.state.mean, `batch ${k} (SEED=${rng.seed})`).toBeCloseTo(mean, 9);
      expect(m.state.std).toBeCloseTo(std, 9);
      expect(last[0]).toBeCloseTo((xs[0]! - mean) / (std + 1.1920928955078125e-7), 9);
    }
  });
});

// ---- the GPU path ---------------------------------------------------------------------------

const FIXTURE = join(import.meta.dirname, 'fixtures/models/llama_dpo');
let shared: Promise<Model> | null = null;
/** The llama_dpo base model, loaded once per file (adapters attach to it and are released after each test). */
const fixtureModel = async (): Promise<Model> => (shared ??= testGpu().then((gpu) => Model.load(gpu, dirFiles(FIXTURE))));

function ppoRunOptions(over: Partial<PpoOptions> = {}): PpoOptions {
  return {
    ...TRL_PPO_DEFAULTS, whitenRewards: false, epochs: 2, bufferSize: 1, miniBatch: 2, gradAccum: 1, scoreNorm: false, target: 6,
    sampling: { maxNewTokens: 5, temperature: 0.95, topK: 0, topP: 0.9, repetitionPenalty: 1, stopIds: [2] }, ...over,
  };
}

function queries(rng: Rng, n: number, vocab: number): TokenExample[] {
  return Array.from({ length: n }, () => {
    const q = Array.from(rng.int(3 + Math.floor(rng.next() * 4), vocab - 3), (x) => x + 3);
    return { input_ids: q, labels: q.map(() => -100) };
  });
}

/** A LoRA reward model trained here (stage rm, one step): its adapter and value head as a reward source. */
async function rewardSource(model: Model, rng: Rng): Promise<RewardSource> {
  const s = memoryStore();
  const rm = await Trainer.create(model, randomPairs(rng, 4, model.spec.vocab), [], prefTrainOptions({ maxSteps: 1, batchSize: 4, saveSteps: 1, preference: prefOptions({ stage: 'rm' }) }), 0);
  await rm.run(s);
  rm.release();
  rm.objective.valueHead?.release();
  rm.adapter?.release();
  const src = async (p: string) => storedSource(s, p);
  return { type: 'lora', configJson: new TextDecoder().decode(await s.read('checkpoint-1/adapter_config.json')), weights: await src('checkpoint-1/adapter_model.safetensors'), valueHead: await src('checkpoint-1/value_head.safetensors') };
}

describe('PPO on the GPU', () => {
  it('per-token log-probabilities match the sequence log-probabilities; directional finite difference of the mini-batch loss (policy and value head) matches the gradient norm', async () => {
    const gpu = await testGpu();
    const model = await fixtureModel();
    const rng = makeRng();
    const adapter = await Adapter.load(model, readFileSync(join(FIXTURE, 'adapter_init/adapter_config.json'), 'utf8'), await fileSource(join(FIXTURE, 'adapter_init/adapter_model.safetensors')));
    const workspaces = new Map<string, Workspace>();
    const workspace = (B: number, S: number) => workspaces.get(`${B}x${S}`) ?? workspaces.set(`${B}x${S}`, new Workspace(model, B, S, false)).get(`${B}x${S}`)!;
    const reward: RewardSource = { type: 'full', model, valueHead: { name: 'unused', size: 0, read: async () => new Uint8Array() } };
    const obj = new PpoObjective({ model, adapter, padId: 0, cutoffLen: 64, workspace, random: rng.next, applyUpdate: async () => {} }, { options: ppoRunOptions(), reward, seed: 1 });
    const rollouts: Rollout[] = queries(rng, 3, model.spec.vocab).map((q) => ({ query: q.input_ids, response: Array.from(rng.int(2 + Math.floor(rng.next() * 4), model.spec.vocab - 3), (x) => x + 3) }));
    const { old, ref } = await obj.scoreRollouts(rollouts);
    // the fused loss read per token, against the summed sequence log-probabilities
    for (const [i, r] of rollouts.entries()) {
      const row = { input_ids: [...r.query, ...r.response], labels: [...r.query.map(() => -100), ...r.response] };
      const batch = rowsBatch([row], 0, 16);
      const { logps } = await sequenceLogps(workspace(1, 16), batch);
      expect(old.logps[i]!.reduce((a, x) => a + x, 0)).toBeCloseTo(logps[0]!, 4);
      const refSum = await adapter.withDisabled(async () => (await sequenceLogps(workspace(1, 16), batch)).logps[0]!);
      expect(ref.logps[i]!.reduce((a, x) => a + x, 0)).toBeCloseTo(refSum, 4);
    }
    // old numbers a little off the current policy: ratios away from 1, values away from the old ones
    const shifted = { logps: old.logps.map((l) => l.map((x) => x + 0.05 * rng.normal())), values: old.values.map((v) => v.map((x) => x + 0.05 * rng.normal())) };
    const adv = computeAdvantages(rollouts.map((_, i) => ({ logps: old.logps[i]!, refLogps: ref.logps[i]!, values: old.values[i]!, score: rng.normal() })), 0.2, { gamma: 1, lam: 0.95, whitenRewards: false });
    const t = { rollouts, old: shifted, adv };
    const params = [...adapter.params(), ...obj.params];
    for (const p of params) gpu.zero(p.grad);
    await obj.miniBatch(t, [0, 2], 1, true);
    const theta = await Promise.all(params.map((p) => gpu.readF32(p.value)));
    const grads = await Promise.all(params.map((p) => gpu.readF32(p.grad)));
    const headNorm = Math.hypot(...grads.slice(-2).flatMap((g) => Array.from(g)));
    expect(headNorm, 'the value head has a gradient').toBeGreaterThan(0);
    const norm = Math.sqrt(grads.reduce((a, g) => a + g.reduce((s, x) => s + x * x, 0), 0));
    const eps = 1e-2;
    const lossAt = async (s: number) => {
      params.forEach((p, i) => gpu.write(p.value, theta[i]!.map((x, j) => x + (s * eps * grads[i]![j]!) / norm)));
      return (await obj.miniBatch(t, [0, 2], 1, false)).loss.loss;
    };
    const fd = ((await lossAt(1)) - (await lossAt(-1))) / (2 * eps);
    expect(Math.abs(fd - norm) / norm, `fd ${fd} vs |g| ${norm} (SEED=${rng.seed})`).toBeLessThan(5e-3);
    obj.release();
    obj.valueHead.release();
    for (const ws of workspaces.values()) ws.release();
    adapter.release();
  });

  it('trains in the Trainer with a LoRA reward model: TRL metric names, value_head.safetensors, and a resumed run repeats the uninterrupted one', async () => {
    const model = await fixtureModel();
    const rng = makeRng();
    const reward = await rewardSource(model, rng);
    const train = queries(rng, 4, model.spec.vocab);
    const opts = prefTrainOptions({ maxSteps: 2, batchSize: 2, gradAccum: 1, saveSteps: 1, learningRate: 1e-2, ppo: { options: ppoRunOptions(), reward, seed: 7 } });
    const s = memoryStore();
    const full = await Trainer.create(model, train, [], opts, 0);
    const logs: LogRecord[] = [];
    await full.run(s, { onLog: (r) => logs.push(r) });
    expect(logs).toHaveLength(2);
    const rec = logs[0] as LogRecord & Record<string, number>;
    for (const k of ['loss', 'reward', 'grad_norm', 'objective/kl', 'objective/kl_coef', 'ppo/mean_scores', 'ppo/loss/policy', 'ppo/loss/value', 'ppo/loss/total', 'ppo/policy/clipfrac', 'ppo/returns/mean', 'ppo/val/vpred']) {
      expect(rec[k], k).toBeTypeOf('number');
    }
    // a fresh adapter is the reference: no KL in the first rollout
    expect(rec['objective/kl']).toBeCloseTo(0, 4);
    expect(rec['objective/kl_coef']).toBe(0.2);
    expect([...s.files.keys()]).toEqual(expect.arrayContaining(['checkpoint-1/value_head.safetensors', 'checkpoint-1/ppo_state.json', 'checkpoint-2/adapter_model.safetensors']));
    full.release();
    full.objective.valueHead?.release();
    full.adapter?.release();

    const resumed = await Trainer.create(model, train, [], opts, 0);
    await resumed.resume(s, 'checkpoint-1');
    const again: LogRecord[] = [];
    await resumed.run(null, { onLog: (r) => again.push(r) });
    expect(again).toHaveLength(1);
    const a = again[0] as LogRecord & Record<string, number>, b = logs[1] as LogRecord & Record<string, number>;
    for (const k of ['loss', 'reward', 'objective/kl', 'objective/kl_coef']) expect(a[k], `${k} (SEED=${rng.seed})`).toBeCloseTo(b[k]!, 3);
    resumed.release();
    resumed.objective.valueHead?.release();
    resumed.adapter?.release();
  });

  it('a LoRA reward model scores as its adapter and value head on a separate model (full), and leaves the policy adapter in place', async () => {
    const gpu = await testGpu();
    const model = await fixtureModel();
    const rng = makeRng();
    const source = await rewardSource(model, rng);
    if (source.type !== 'lora') throw new Error('a LoRA reward source');
    const policy = await Adapter.load(model, readFileSync(join(FIXTURE, 'adapter_init/adapter_config.json'), 'utf8'), await fileSource(join(FIXTURE, 'adapter_init/adapter_model.safetensors')));
    const other = await Model.load(gpu, dirFiles(FIXTURE));
    const otherAdapter = await Adapter.load(other, source.configJson, source.weights);
    const seqs = queries(rng, 3, model.spec.vocab).map((q) => q.input_ids);
    const row = { input_ids: seqs[0]!, labels: seqs[0]!.map((x, i) => (i === 0 ? -100 : x)) };
    const ws = new Workspace(model, 1, 8, false);
    const before = (await sequenceLogps(ws, rowsBatch([row], 0, 8))).logps[0]!;
    const lora = await RewardModel.load(model, source);
    const full = await RewardModel.load(model, { type: 'full', model: other, valueHead: source.valueHead });
    const a = await lora.score(seqs, 2, 32), b = await full.score(seqs, 2, 32);
    for (let i = 0; i < seqs.length; i++) expect(a[i], `score ${i} (SEED=${rng.seed})`).toBeCloseTo(b[i]!, 4);
    lora.release();
    expect((await sequenceLogps(ws, rowsBatch([row], 0, 8))).logps[0]).toBeCloseTo(before, 5);
    expect(policy.sites.every((s) => s.lora !== null), 'the policy adapter is attached').toBe(true);
    full.release();
    ws.release();
    otherAdapter.release();
    other.release();
    policy.release();
  });

  it.each(['freeze', 'full'] as const)('%s fine-tuning: the reference is the initial weights, swapped in for its pass and out again; a LoRA reward model is refused', async (finetuningType) => {
    const gpu = await testGpu();
    const rng = makeRng();
    const model = await Model.load(gpu, dirFiles(FIXTURE)); // its own copy: training changes the weights
    const source = await rewardSource(await fixtureModel(), rng);
    if (source.type !== 'lora') throw new Error('a LoRA reward source');
    const other = await Model.load(gpu, dirFiles(FIXTURE));
    const otherAdapter = await Adapter.load(other, source.configJson, source.weights);
    const reward: RewardSource = { type: 'full', model: other, valueHead: source.valueHead };
    const train = queries(rng, 4, model.spec.vocab);
    const row = { input_ids: train[0]!.input_ids, labels: train[0]!.input_ids.map((x, i) => (i === 0 ? -100 : x)) };
    const ws = new Workspace(model, 1, 8, false);
    const initial = (await sequenceLogps(ws, rowsBatch([row], 0, 8))).logps[0]!;
    const opts = prefTrainOptions({ finetuningType, freezeTrainableLayers: 1, maxSteps: 2, batchSize: 2, learningRate: 1e-2, ppo: { options: ppoRunOptions(), reward, seed: 3 } });
    await expect(Trainer.create(model, train, [], { ...opts, ppo: { ...opts.ppo!, reward: source } }, 0)).rejects.toThrow(/needs reward_model_type: full/);
    const trainer = await Trainer.create(model, train, [], opts, 0);
    const logs: (LogRecord & Record<string, number>)[] = [];
    await trainer.run(null, { onLog: (r) => logs.push(r as LogRecord & Record<string, number>) });
    expect(logs).toHaveLength(2);
    // the first rollout's policy is the reference: no KL; the second's has moved away from it
    expect(logs[0]!['objective/kl']).toBeCloseTo(0, 4);
    expect(Math.abs(logs[1]!['objective/kl']!)).toBeGreaterThan(1e-5);
    const trained = (await sequenceLogps(ws, rowsBatch([row], 0, 8))).logps[0]!;
    expect(Math.abs(trained - initial), `the weights trained (SEED=${rng.seed})`).toBeGreaterThan(1e-4);
    const reference = await trainer.withInitialWeights(async () => (await sequenceLogps(ws, rowsBatch([row], 0, 8))).logps[0]!);
    expect(reference).toBeCloseTo(initial, 5);
    expect((await sequenceLogps(ws, rowsBatch([row], 0, 8))).logps[0]).toBeCloseTo(trained, 5);
    trainer.release();
    trainer.objective.valueHead?.release();
    ws.release();
    otherAdapter.release();
    other.release();
    model.release();
  });

  it('refuses preference pairs', async () => {
    const model = await fixtureModel();
    const rng = makeRng();
    const reward: RewardSource = { type: 'full', model, valueHead: { name: 'unused', size: 0, read: async () => new Uint8Array() } };
    const ppo = { options: ppoRunOptions(), reward, seed: 1 };
    await expect(Trainer.create(model, randomPairs(rng, 2, model.spec.vocab), [], prefTrainOptions({ ppo }), 0)).rejects.toThrow(/stage ppo needs prompts/);
  });
});
