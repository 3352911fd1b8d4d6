// Stage ppo (src/train/ppo/): advantages (KL-penalised rewards, GAE, whitening) and the clipped
// policy and value losses on fixed rollouts against f64 references written as TRL computes on
// padded tensors (tests/reference/ppo.ts), the loss's gradients by central differences, and the
// KL controller and score normalisation against their published update rules.
import { describe, expect, it } from 'vitest';
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
      .toThrow(/at least 2 response tokens/);
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
