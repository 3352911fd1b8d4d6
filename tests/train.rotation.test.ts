// save_total_limit with a best model (src/train/rotation.ts), against HF's _rotate_checkpoints /
// _sorted_checkpoints, and the best-model / early-stopping rule (src/train/best-model.ts) against
// HF's _determine_best_metric and EarlyStoppingCallback.
import { describe, expect, it } from 'vitest';
import { checkpointsToDelete } from '../src/train/rotation';
import { afterEvaluation, afterSave, noBestModel, type BestModelOptions } from '../src/train/best-model';
import { makeRng } from './helpers/check';

/** HF's rotation written as it is in trainer.py (the list swap loop and the limit-1 rule). */
function hfRotation(steps: number[], limit: number | null, best: number | null): number[] {
  if (limit === null || limit <= 0) return [];
  const sorted = [...steps].sort((a, b) => a - b);
  if (best !== null && sorted.includes(best)) {
    const i0 = sorted.indexOf(best);
    for (let i = i0; i < sorted.length - 2; i++) [sorted[i], sorted[i + 1]] = [sorted[i + 1]!, sorted[i]!];
  }
  if (sorted.length <= limit) return [];
  const keep = best !== null && limit === 1 && sorted[sorted.length - 1] !== best ? 2 : limit;
  return sorted.slice(0, Math.max(0, sorted.length - keep));
}

describe('checkpoint rotation with a best model', () => {
  it('keeps the best checkpoint and the newest', () => {
    expect(checkpointsToDelete([2, 4, 6, 8], 2, 2)).toEqual([4, 6]);
    expect(checkpointsToDelete([8, 2, 6, 4], 2, 6)).toEqual([2, 4]);
    expect(checkpointsToDelete([2, 4, 6, 8], 2, null)).toEqual([2, 4]);
    expect(checkpointsToDelete([2, 4, 6, 8], 3, 8)).toEqual([2]);
    // limit 1: the best and the newest (for resuming) both stay, unless they are one
    expect(checkpointsToDelete([2, 4, 6], 1, 2)).toEqual([4]);
    expect(checkpointsToDelete([2, 4, 6], 1, 6)).toEqual([2, 4]);
    expect(checkpointsToDelete([2, 4, 6], 1, null)).toEqual([2, 4]);
    // a best step that is not among the checkpoints changes nothing
    expect(checkpointsToDelete([4, 6, 8], 2, 2)).toEqual([4]);
    expect(checkpointsToDelete([2, 4], null, 2)).toEqual([]);
    expect(checkpointsToDelete([2, 4], 0, 2)).toEqual([]);
    expect(checkpointsToDelete([2, 4], 3, 2)).toEqual([]);
  });

  it("matches HF's rule on random cases", () => {
    const { next: rng, seed } = makeRng();
    for (let t = 0; t < 300; t++) {
      const n = Math.floor(rng() * 8);
      const steps = [...new Set(Array.from({ length: n }, () => 1 + Math.floor(rng() * 40)))];
      const limit = rng() < 0.1 ? null : Math.floor(rng() * 5);
      const best = rng() < 0.2 || steps.length === 0 ? null : steps[Math.floor(rng() * steps.length)]!;
      const got = checkpointsToDelete(steps, limit, best);
      expect(got, `seed ${seed}: ${steps} limit ${limit} best ${best}`).toEqual(hfRotation(steps, limit, best));
      if (best !== null) expect(got).not.toContain(best);
      if (steps.length > 0) expect(got).not.toContain(Math.max(...steps));
    }
  });
});

describe('best model and early stopping', () => {
  const loss: BestModelOptions = { metric: 'eval_loss', greaterIsBetter: false, loadAtEnd: true, patience: 2 };

  it('tracks the lowest loss and stops after `patience` evaluations without improvement', () => {
    let s = noBestModel();
    const seen: Array<[number | null, number | null, number, boolean]> = [];
    for (const [step, v] of [[2, 3], [4, 2], [6, 2], [8, 2.4]] as const) {
      const r = afterEvaluation(loss, s, { eval_loss: v, epoch: 1 }, step);
      s = afterSave(r.state, `checkpoint-${step}`, step);
      seen.push([s.best_metric, s.best_global_step, s.early_stopping_patience_counter, r.stop]);
    }
    // an equal value is no improvement (strictly better, as HF's np.less)
    expect(seen).toEqual([[3, 2, 0, false], [2, 4, 0, false], [2, 4, 1, false], [2, 4, 2, true]]);
    expect(s.best_model_checkpoint).toBe('checkpoint-4');
  });

  it('greater_is_better turns the comparison, and an evaluation without the metric names the ones it has', () => {
    const acc: BestModelOptions = { metric: 'eval_accuracy', greaterIsBetter: true, loadAtEnd: false, patience: null };
    const a = afterEvaluation(acc, noBestModel(), { eval_accuracy: 0.5 }, 1);
    const b = afterEvaluation(acc, a.state, { eval_accuracy: 0.7 }, 2);
    expect([b.improved, b.state.best_metric, b.state.best_global_step, b.stop]).toEqual([true, 0.7, 2, false]);
    expect(afterEvaluation(acc, b.state, { eval_accuracy: 0.6 }, 3).improved).toBe(false);
    expect(() => afterEvaluation(acc, noBestModel(), { eval_loss: 1 }, 1)).toThrow('metric_for_best_model: the evaluation has no eval_accuracy; it reports eval_loss');
  });

  it('a checkpoint saved at another step than the best does not become the best', () => {
    const r = afterEvaluation(loss, noBestModel(), { eval_loss: 1 }, 2);
    expect(afterSave(r.state, 'checkpoint-3', 3).best_model_checkpoint).toBeNull();
  });
});
