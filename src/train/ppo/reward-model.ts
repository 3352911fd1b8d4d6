// The reward model of stage ppo, as LLaMA-Factory's reward_model / reward_model_type:
//   lora: a `crucible train` stage rm output (a LoRA adapter and value_head.safetensors) on the
//         policy's own base. Scoring swaps the reward adapter in for the policy's on every linear
//         site, as LLaMA-Factory's replace_model(target="reward"), so no second base is loaded.
//   full: a separate model (a full rm run's output) with its value_head.safetensors.
// The score of a sequence is the value head on its last token (query + response).

import type { LinearSite } from '../../model/linear';
import { Adapter } from '../../model/adapter';
import { forwardBackward, Workspace } from '../../model/forward';
import type { Model } from '../../model/model';
import type { ByteSource } from '../../model/safetensors';
import { bucketLength } from '../batches';
import { rowsBatch, type SeqRow } from '../sequences';
import { ValueHead } from '../value-head';

export type RewardSource =
  | { type: 'lora'; configJson: string; weights: ByteSource; valueHead: ByteSource }
  | { type: 'full'; model: Model; valueHead: ByteSource };

type SiteLora = Pick<LinearSite, 'lora' | 'loraGrads'>;

export class RewardModel {
  private readonly workspaces = new Map<string, Workspace>();

  private constructor(
    readonly model: Model,
    private readonly head: ValueHead,
    /** lora: the reward adapter and the sites it lives on (swapped in while scoring). */
    private readonly adapter: { adapter: Adapter; loras: Map<LinearSite, SiteLora> } | null,
  ) {}

  /** `policy`: the trained model (the base of a lora reward model; its vocabulary must match a full one's). */
  static async load(policy: Model, source: RewardSource): Promise<RewardModel> {
    const model = source.type === 'lora' ? policy : source.model;
    if (model.spec.vocab !== policy.spec.vocab) {
      throw new Error(`reward_model: a vocabulary of ${model.spec.vocab} tokens, the trained model has ${policy.spec.vocab}; the reward model must share its tokenizer`);
    }
    const head = ValueHead.create(model.gpu, model.spec.hidden, () => 0.5);
    try {
      await head.load(source.valueHead);
    } catch (e) {
      head.release();
      throw e;
    }
    if (source.type === 'full') return new RewardModel(model, head, null);
    const sites = allSites(model);
    const policyLoras = snapshot(sites);
    let adapter: Adapter;
    try {
      adapter = await Adapter.load(model, source.configJson, source.weights);
    } catch (e) {
      restore(policyLoras);
      head.release();
      throw e;
    }
    // the reward forward runs with the reward adapter alone: no LoRA where it has none
    const own = new Set(adapter.sites);
    const rewardLoras = new Map(sites.map((site): [LinearSite, SiteLora] => [site, { lora: own.has(site) ? site.lora : null, loraGrads: null }]));
    restore(policyLoras);
    return new RewardModel(model, head, { adapter, loras: rewardLoras });
  }

  /** Scores of whole sequences, `batchSize` at a time. */
  async score(seqs: readonly (readonly number[])[], batchSize: number, cutoffLen: number): Promise<Float64Array> {
    const out = new Float64Array(seqs.length);
    for (let i = 0; i < seqs.length; i += batchSize) {
      const rows: SeqRow[] = seqs.slice(i, i + batchSize).map((ids) => ({ input_ids: ids, labels: ids.map(() => -100) }));
      const S = bucketLength(Math.max(...rows.map((r) => r.input_ids.length)), Math.max(cutoffLen, ...rows.map((r) => r.input_ids.length)));
      const batch = rowsBatch(rows, 0, S);
      const ws = this.workspace(batch.B, batch.S);
      const last = Array.from(batch.lengths, (n, b) => b * S + n - 1);
      const scores = await this.withRewardAdapter(async () => {
        ws.load(batch);
        forwardBackward(ws, { backward: false, gradScale: 1, head: () => {} });
        return this.head.scores(ws, last);
      });
      out.set(scores, i);
    }
    return out;
  }

  release(): void {
    for (const ws of this.workspaces.values()) ws.release();
    this.workspaces.clear();
    this.head.release();
    // the reward adapter's release clears the sites it is on: it runs with its own loras in place
    if (!this.adapter) return;
    const undo = this.swapIn();
    this.adapter.adapter.release();
    undo();
  }

  private async withRewardAdapter<T>(fn: () => Promise<T>): Promise<T> {
    const undo = this.swapIn();
    try {
      return await fn();
    } finally {
      undo();
    }
  }

  /** Puts the reward adapter on the sites (lora reward models); returns what puts the policy's back. */
  private swapIn(): () => void {
    if (!this.adapter) return () => {};
    const policy = snapshot([...this.adapter.loras.keys()]);
    restore(this.adapter.loras);
    return () => restore(policy);
  }

  private workspace(B: number, S: number): Workspace {
    const key = `${B}x${S}`;
    let ws = this.workspaces.get(key);
    if (!ws) this.workspaces.set(key, (ws = new Workspace(this.model, B, S, false)));
    return ws;
  }
}

function allSites(model: Model): LinearSite[] {
  return model.modules().flatMap((m) => m.parts.map((p) => p.site));
}

function snapshot(sites: readonly LinearSite[]): Map<LinearSite, SiteLora> {
  return new Map(sites.map((s) => [s, { lora: s.lora, loraGrads: s.loraGrads }]));
}

function restore(saved: Map<LinearSite, SiteLora>): void {
  for (const [s, l] of saved) {
    s.lora = l.lora;
    s.loraGrads = l.loraGrads;
  }
}
