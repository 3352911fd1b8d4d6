// Stage ppo inside the Trainer's loop, as LLaMA-Factory's CustomPPOTrainer over TRL's PPOTrainer:
// one Trainer step is one PPO step (the learning-rate schedule advances once per PPO step). It
//   1. answers the step's queries with the policy (rollout.ts) and scores query + response with
//      the reward model (reward-model.ts), optionally normalising the scores (score-scaling.ts);
//   2. scores the responses' tokens under the policy (log-probabilities and its value head's
//      values) and under the reference: the base with the adapter switched off, or with full /
//      freeze training the initial weights copied back in for the pass (the trainer keeps a copy
//      of the trained weights' initial values: LLaMA-Factory loads a second model instead);
//   3. turns that into advantages and returns (advantages.ts) with the KL controller's coefficient;
//   4. runs ppo_epochs passes over the rollouts in a fresh order, each in backward batches of
//      per_device_train_batch_size × gradient_accumulation_steps rollouts: the PPO loss (loss.ts)
//      of each mini-batch is an f64 host computation whose gradients become per-token weights of
//      the fused lm_head loss and the value head's gradient at the same positions, one backward;
//      every backward batch ends with an optimizer update (the last one is the Trainer's own);
//   5. updates the KL controller with the step's mean KL.
// The policy's value head (value_head.safetensors beside the adapter or weights, as LLaMA-Factory
// saves it) starts fresh and trains with them.
//
// Differences from TRL: no lora_dropout in any pass, no entropy statistic (it needs whole logits),
// and ppo_whiten_rewards whitens the response tokens only (TRL leaves whitened values on padding).

import { mulberry32 } from '../../data/random';
import type { Tensor } from '../../gpu/tensor';
import { forwardBackward, type Workspace } from '../../model/forward';
import { Generator } from '../../model/generate';
import { parseJsonFile } from '../../data/json-file';
import { bucketLength, type TokenExample } from '../batches';
import type { Objective, ObjectiveContext, TrainExample, Unlogged } from '../objective';
import { rowsBatch } from '../sequences';
import { inDir, storedSource, type RunStore } from '../store';
import { VALUE_HEAD_FILE, ValueHead } from '../value-head';
import { computeAdvantages, type Advantages } from './advantages';
import { AdaptiveKl, FixedKl, type KlController } from './kl-control';
import { ppoLoss, type PpoLossResult } from './loss';
import { checkPpoOptions, type PpoOptions } from './options';
import { RewardModel, type RewardSource } from './reward-model';
import { sampleResponses } from './rollout';
import { RunningMoments, type MomentsState } from './score-scaling';

export const PPO_STATE_FILE = 'ppo_state.json';

export interface PpoRun {
  options: PpoOptions;
  reward: RewardSource;
  /** The run's seed: sampling and the order of each PPO epoch follow it and the step. */
  seed: number;
}

export interface Rollout {
  query: readonly number[];
  response: readonly number[];
}

/** Per-token numbers of rollouts, from a forward of query + response. */
export interface TokenScores {
  logps: Float64Array[];
  values: Float64Array[];
}

/** What the PPO epochs train on: the rollouts, their tokens' scores before the first update, advantages and returns. */
export interface TrainingRollouts {
  rollouts: readonly Rollout[];
  old: TokenScores;
  adv: Advantages;
}

export class PpoObjective implements Objective {
  readonly valueHead: ValueHead;
  readonly params;
  private reward: RewardModel | null = null;
  private generator: Generator | null = null;
  private readonly kl: KlController;
  private readonly moments = new RunningMoments();
  /** PPO steps taken (kept in checkpoints: it seeds sampling and the epoch orders). */
  private steps = 0;
  /** Per PPO step since the last log: its metrics. */
  private stored: Record<string, number>[] = [];
  private readonly tokenWeights = new Map<number, Tensor>();

  constructor(private readonly ctx: ObjectiveContext, private readonly run: PpoRun) {
    const o = run.options;
    checkPpoOptions(o);
    if (!ctx.adapter && !ctx.withInitialWeights) throw new Error('stage ppo needs a reference model: the base with the LoRA adapter switched off, or (full / freeze) the initial weights');
    if (!ctx.adapter && run.reward.type === 'lora') {
      // LLaMA-Factory: "Freeze/Full PPO training needs `reward_model_type=full`."
      throw new Error('stage ppo with finetuning_type full or freeze needs reward_model_type: full (a LoRA reward model would sit on the weights being trained)');
    }
    if (!ctx.applyUpdate) throw new Error('stage ppo needs the trainer to apply optimizer updates inside a step');
    this.valueHead = ValueHead.create(ctx.model.gpu, ctx.model.spec.hidden, ctx.random);
    this.params = this.valueHead.params();
    this.kl = o.target !== null ? new AdaptiveKl(o.initKlCoef, o.target, o.horizon) : new FixedKl(o.initKlCoef);
  }

  async prepare(_examples: readonly TrainExample[], _batchSize: number, onStatus?: (message: string) => void): Promise<void> {
    if (this.reward) return;
    onStatus?.(`reward model: ${this.run.reward.type === 'lora' ? 'a LoRA adapter on the base' : 'a separate model'} with its value head`);
    this.reward = await RewardModel.load(this.ctx.model, this.run.reward);
  }

  async step(micro: readonly (readonly TrainExample[])[]): Promise<number> {
    const o = this.run.options, { model, cutoffLen } = this.ctx;
    const queries = micro.flat().map((e, i) => {
      if (!('input_ids' in e) || 'chosen' in e) throw new Error(`training data: stage ppo needs prompts (a supervised dataset), got a preference example at ${i}`);
      return (e as TokenExample).input_ids;
    });
    const stepSeed = (this.run.seed >>> 0) ^ Math.imul(this.steps + 1, 0x9e3779b1);
    this.generator ??= new Generator(model);
    const responses = await sampleResponses(this.generator, queries, o.sampling, (i) => (stepSeed + Math.imul(i + 1, 0x85ebca6b)) >>> 0);
    const rollouts = queries.map((query, i) => ({ query, response: responses[i]! }));
    const raw = Array.from(await this.reward!.score(rollouts.map((r) => [...r.query, ...r.response]), o.miniBatch, cutoffLen));
    const scores = o.scoreNorm ? this.moments.normalize(raw) : raw;

    const { old, ref } = await this.scoreRollouts(rollouts);
    const klCoef = this.kl.value;
    const adv = computeAdvantages(rollouts.map((_, i) => ({ logps: old.logps[i]!, refLogps: ref.logps[i]!, values: old.values[i]!, score: scores[i]! })), klCoef, o);

    const random = mulberry32(stepSeed);
    const B = rollouts.length, backwardBatch = o.miniBatch * o.gradAccum;
    let updatesLeft = o.epochs * Math.ceil(B / backwardBatch);
    const losses: PpoLossResult[] = [];
    let tokens = 0;
    for (let e = 0; e < o.epochs; e++) {
      const order = shuffle(B, random);
      for (let s = 0; s < B; s += backwardBatch) {
        const inBatch = order.slice(s, s + backwardBatch);
        for (let m = 0; m < inBatch.length; m += o.miniBatch) {
          const r = await this.miniBatch({ rollouts, old, adv }, inBatch.slice(m, m + o.miniBatch), 1 / o.gradAccum, true);
          losses.push(r.loss);
          tokens += r.tokens;
        }
        // accelerate's accumulate: an update after each backward batch (the step's last is the Trainer's)
        if (--updatesLeft > 0) await this.ctx.applyUpdate!();
      }
    }
    this.stored.push(stepMetrics(rollouts, raw, scores, adv, klCoef, losses));
    this.kl.update(this.stored.at(-1)!['objective/kl']!, B);
    this.steps++;
    return tokens;
  }

  async takeMetrics(): Promise<Record<string, number>> {
    const stored = this.stored;
    this.stored = [];
    const out: Record<string, number> = {};
    // LLaMA-Factory's meters: the mean over the PPO steps since the last log
    for (const k of Object.keys(stored[0] ?? {})) out[k] = stored.reduce((a, m) => a + m[k]!, 0) / stored.length;
    return out;
  }

  async evaluate(): Promise<Record<string, number>> {
    throw new Error("stage ppo does not evaluate (LLaMA-Factory's PPO trainer has none): remove eval_dataset / val_size");
  }

  async unlogged(): Promise<Unlogged> {
    return { loss_sum: 0, objective: this.stored };
  }

  restoreUnlogged(saved: Unlogged | undefined): void {
    this.stored = Array.isArray(saved?.objective) ? (saved.objective as Record<string, number>[]) : [];
  }

  async save(store: RunStore, dir: string): Promise<void> {
    await store.write(inDir(dir, VALUE_HEAD_FILE), await this.valueHead.safetensors());
  }

  /** The KL coefficient, the score moments and the step count a resumed run continues from. */
  async saveState(store: RunStore, dir: string): Promise<void> {
    const state = { format: 'crucible-ppo-state', version: 1, kl_coef: this.kl.value, score_moments: this.moments.state, steps: this.steps };
    await store.write(inDir(dir, PPO_STATE_FILE), JSON.stringify(state, null, 1));
  }

  async load(store: RunStore, dir: string): Promise<void> {
    await this.valueHead.load(await storedSource(store, inDir(dir, VALUE_HEAD_FILE)));
    const path = inDir(dir, PPO_STATE_FILE);
    if (!(await store.exists(path))) throw new Error(`${dir}: no ${PPO_STATE_FILE} (the KL coefficient and score statistics of the run); it cannot resume as stage ppo`);
    const s = parseJsonFile<{ format?: unknown; kl_coef?: unknown; score_moments?: MomentsState; steps?: unknown }>(new TextDecoder().decode(await store.read(path)), path);
    if (s.format !== 'crucible-ppo-state' || typeof s.kl_coef !== 'number' || typeof s.steps !== 'number' || !s.score_moments) throw new Error(`${path}: not a PPO state file`);
    this.kl.value = s.kl_coef;
    this.moments.state = s.score_moments;
    this.steps = s.steps;
  }

  release(): void {
    this.generator?.release();
    this.generator = null;
    this.reward?.release();
    this.reward = null;
    this.ctx.model.gpu.release(...this.tokenWeights.values());
    this.tokenWeights.clear();
  }

  /** The rollouts' per-token log-probabilities and values under the policy, and log-probabilities under the reference (the adapter switched off). */
  async scoreRollouts(rollouts: readonly Rollout[]): Promise<{ old: TokenScores; ref: TokenScores }> {
    const old = await this.tokenScores(rollouts, true);
    const reference = () => this.tokenScores(rollouts, false);
    const ref = await (this.ctx.adapter ? this.ctx.adapter.withDisabled(reference) : this.ctx.withInitialWeights!(reference));
    return { old, ref };
  }

  /** Log-probabilities (and with `values`, the value head's values) of every response token, mini-batch by mini-batch, without gradients. */
  private async tokenScores(rollouts: readonly Rollout[], values: boolean): Promise<TokenScores> {
    const out: TokenScores = { logps: [], values: [] };
    const mb = this.run.options.miniBatch;
    for (let i = 0; i < rollouts.length; i += mb) {
      const f = await this.forward(rollouts.slice(i, i + mb), values);
      out.logps.push(...f.logps);
      out.values.push(...f.values);
    }
    return out;
  }

  /** A forward of rollouts (left in the workspace for a backward): per-token log-probabilities and values at the response positions. */
  private async forward(rollouts: readonly Rollout[], values: boolean): Promise<TokenScores & { ws: Workspace; positions: number[]; S: number; B: number }> {
    const { model, padId, cutoffLen } = this.ctx;
    const rows = rollouts.map((r) => ({ input_ids: [...r.query, ...r.response], labels: [...r.query.map(() => -100), ...r.response] }));
    const batch = rowsBatch(rows, padId, bucketLength(Math.max(...rows.map((r) => r.input_ids.length)), cutoffLen));
    const ws = this.ctx.workspace(batch.B, batch.S);
    ws.load(batch);
    forwardBackward(ws, { backward: false, gradScale: 1 });
    // the position before each response token predicts it (the causal shift)
    const positions = rollouts.flatMap((r, b) => r.response.map((_, j) => b * batch.S + r.query.length - 1 + j));
    const loss = await model.gpu.readF32(ws.loss);
    const v = values ? await this.valueHead.scores(ws, positions) : null;
    const split = (get: (p: number, k: number) => number) => {
      let k = 0;
      return rollouts.map((r) => Float64Array.from(r.response, () => get(positions[k]!, k++)));
    };
    return { ws, positions, S: batch.S, B: batch.B, logps: split((p) => -loss[p]!), values: v ? split((_, k) => v[k]!) : [] };
  }

  /** Forward and PPO loss of the rollouts `idx`, and with `backward` its gradients (times `scale`). */
  async miniBatch(t: TrainingRollouts, idx: readonly number[], scale: number, backward: boolean): Promise<{ loss: PpoLossResult; tokens: number }> {
    const gpu = this.ctx.model.gpu, o = this.run.options;
    const { rollouts, old, adv } = t;
    const mine = idx.map((i) => rollouts[i]!);
    const f = await this.forward(mine, true);
    const loss = ppoLoss(o, idx.map((i, b) => ({
      logps: f.logps[b]!, values: f.values[b]!, oldLogps: old.logps[i]!, oldValues: old.values[i]!, advantages: adv.advantages[i]!, returns: adv.returns[i]!,
    })));
    const tokens = mine.reduce((a, r) => a + r.query.length + r.response.length, 0);
    if (!backward) return { loss, tokens };
    const T = f.B * f.S;
    const w = new Float32Array(T);
    const dValues = new Float32Array(f.positions.length);
    let k = 0;
    idx.forEach((_, b) => loss.dLogps[b]!.forEach((d, j) => {
      // the fused loss is -log p: its weight is -d loss / d log p
      w[f.positions[k]!] = -d * scale;
      dValues[k++] = loss.dValues[b]![j]! * scale;
    }));
    let tw = this.tokenWeights.get(T);
    if (!tw) this.tokenWeights.set(T, (tw = gpu.tensor([T], 'f32', 'ppo token weights')));
    gpu.write(tw, w);
    forwardBackward(f.ws, {
      backward: true, gradScale: 1, tokenWeights: tw, reuseForward: true,
      addHead: (dFinal) => this.valueHead.addBackward(f.ws, f.positions, dValues, dFinal),
    });
    return { loss, tokens };
  }
}

/** TRL's record_step_stats names (and LLaMA-Factory's loss and reward) for one PPO step. */
function stepMetrics(rollouts: readonly Rollout[], raw: readonly number[], scores: readonly number[], adv: Advantages, klCoef: number, losses: readonly PpoLossResult[]): Record<string, number> {
  const mean = (xs: readonly number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
  const rowSum = (rows: readonly Float64Array[]) => rows.map((r) => r.reduce((a, x) => a + x, 0));
  const total = mean(losses.map((l) => l.loss));
  const out: Record<string, number> = {
    loss: total,
    reward: mean(raw),
    'objective/kl': mean(rowSum(adv.kls)),
    'objective/kl_coef': klCoef,
    'ppo/mean_scores': mean(scores),
    'ppo/mean_non_score_reward': mean(rowSum(adv.nonScoreRewards)),
    'ppo/loss/policy': mean(losses.map((l) => l.policyLoss)),
    'ppo/loss/value': mean(losses.map((l) => l.valueLoss)),
    'ppo/loss/total': total,
    'tokens/queries_len_mean': mean(rollouts.map((r) => r.query.length)),
    'tokens/responses_len_mean': mean(rollouts.map((r) => r.response.length)),
  };
  for (const k of Object.keys(losses[0]!.stats)) out[`ppo/${k}`] = mean(losses.map((l) => l.stats[k]!));
  return out;
}

/** Fisher-Yates order of 0..n-1. */
function shuffle(n: number, random: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
