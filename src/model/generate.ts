// Text generation with a KV cache: prefill the prompt (reusing the cached prefix of the previous
// call, so multi-turn chat only runs the new tokens), then decode on the GPU in bursts: each step
// samples there and feeds the token to the next step without a readback, and a burst's tokens are
// read back together. Bursts grow 1, 2, 4 ... MAX_BURST, so the first token shows at once; a stop
// token inside a burst wastes the steps recorded after it (they are dropped from the cache).
// Gated DeltaNet and LFM2 short-convolution layers keep a recurrent state instead of keys and
// values (forward.ts's KVCache): it cannot drop steps, so after such waste the next call runs its
// prompt from the start.

import { logitsForRows } from '../kernels/loss';
import { feedToken, sampleToken } from '../kernels/sample';
import type { Tensor } from '../gpu/tensor';
import { allocKVCache, cacheTensors, clearRecurrentState, forwardCached, hasRecurrentState, Workspace, type KVCache } from './forward';
import type { Model } from './model';

export interface SamplingOptions {
  maxNewTokens: number;
  /** 0 = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  seed?: number;
  /** Token ids that end generation (the model's eos ids by default). */
  stopIds?: number[];
  signal?: AbortSignal;
}

const PREFILL_CHUNK = 64;
/** Most decode steps recorded before their tokens are read back. */
const MAX_BURST = 16;
/** Longest context a Generator holds (its key/value cache is allocated up front). */
const MAX_CONTEXT = 4096;

/** Tokens of prompt plus answer a Generator for this model holds. */
export function contextLength(model: Model): number {
  return Math.min(model.spec.maxPositions, MAX_CONTEXT);
}

export class Generator {
  private cache: KVCache;
  /** Tokens whose keys/values are in the cache, in order. */
  private cached: number[] = [];
  private readonly workspaces = new Map<number, Workspace>();
  private readonly logits: Tensor;
  /** Tokens sampled in the current burst. */
  private readonly sampled: Tensor;
  private readonly history: Tensor;

  constructor(readonly model: Model, capacity = contextLength(model)) {
    const gpu = model.gpu;
    this.cache = allocKVCache(model, capacity);
    this.logits = gpu.tensor([model.spec.vocab], 'f32', 'logits');
    this.sampled = gpu.tensor([MAX_BURST], 'u32', 'sampled tokens');
    this.history = gpu.tensor([capacity], 'u32', 'history');
  }

  /** Forget the cache (after the adapter changed, the cached keys/values are stale). */
  reset(): void {
    this.cached = [];
    this.cache.length = 0;
  }

  async *generate(prompt: readonly number[], opts: SamplingOptions): AsyncGenerator<number> {
    if (prompt.length === 0) throw new Error('generate: the prompt is empty');
    const gpu = this.model.gpu;
    const stop = new Set(opts.stopIds ?? this.model.spec.eosIds);
    if (prompt.length + opts.maxNewTokens > this.cache.capacity) {
      throw new Error(`prompt (${prompt.length} tokens) + max_new_tokens (${opts.maxNewTokens}) exceeds the context of ${this.cache.capacity}`);
    }
    // reuse the common prefix; at least the last prompt token is run to get fresh logits
    let keep = 0;
    while (keep < this.cached.length && keep < prompt.length - 1 && this.cached[keep] === prompt[keep]) keep++;
    // a recurrent state holds every token fed (cache.length of them, steps after a stop included):
    // it is reused only when those are exactly the cached tokens and all of them prefix the prompt
    if ((keep < this.cached.length || this.cache.length !== this.cached.length) && hasRecurrentState(this.cache)) keep = 0;
    if (keep === 0) clearRecurrentState(this.model, this.cache);
    this.cached = this.cached.slice(0, keep);
    this.cache.length = keep;
    const tokens = [...prompt];
    gpu.write(this.history, Uint32Array.from(tokens));
    await this.run(tokens.slice(keep));
    let rng = (opts.seed ?? 0) >>> 0 || 0x9e3779b9;
    const uniform = () => {
      rng ^= rng << 13; rng >>>= 0; rng ^= rng >>> 17; rng ^= rng << 5; rng >>>= 0;
      return rng / 4294967296;
    };
    let burst = 1;
    for (let produced = 0; produced < opts.maxNewTokens; burst = Math.min(2 * burst, MAX_BURST)) {
      if (opts.signal?.aborted) return;
      const n = Math.min(burst, opts.maxNewTokens - produced);
      for (let i = 0; i < n; i++) {
        sampleToken(gpu, this.logits, this.sampled, {
          temperature: opts.temperature ?? 0,
          topK: opts.topK ?? 0,
          topP: opts.topP ?? 1,
          repetitionPenalty: opts.repetitionPenalty ?? 1,
          history: this.history,
          historyLen: tokens.length + i,
          random: uniform(),
          outIndex: i,
        });
        if (produced + i + 1 < opts.maxNewTokens) this.decodeSampled(i, tokens.length + i);
      }
      const ids = Array.from((await gpu.read(this.sampled)).subarray(0, n));
      const stopAt = ids.findIndex((id) => stop.has(id));
      const kept = stopAt < 0 ? ids : ids.slice(0, stopAt);
      // the cache holds each kept token (and the stop token) that was fed: all but the generation's
      // last step; the next call overwrites it from the end of this.cached
      ids.slice(0, stopAt < 0 ? n : stopAt + 1).forEach((id, i) => {
        if (produced + i + 1 < opts.maxNewTokens) this.cached.push(id);
      });
      produced += kept.length;
      tokens.push(...kept);
      yield* kept;
      if (stopAt >= 0) return;
    }
  }

  /** One decode step on sampled[index], with no readback: its logits land in this.logits. */
  private decodeSampled(index: number, historyLen: number): void {
    const ws = this.workspace(1);
    feedToken(this.model.gpu, this.sampled, ws.ids, ws.positions, { index, position: this.cache.length, history: this.history, historyLen });
    forwardCached(ws, this.cache);
    this.lastRowLogits(ws);
  }

  /** Run tokens through the model at the end of the cache; logits of the last one land in this.logits. */
  private async run(tokens: number[]): Promise<void> {
    for (let i = 0; i < tokens.length; i += PREFILL_CHUNK) {
      const chunk = tokens.slice(i, i + PREFILL_CHUNK);
      const ws = this.workspace(chunk.length);
      const pos = this.cache.length;
      ws.load({
        B: 1, S: chunk.length,
        ids: Int32Array.from(chunk),
        labels: new Int32Array(chunk.length).fill(-100),
        positions: Int32Array.from(chunk, (_, j) => pos + j),
      });
      forwardCached(ws, this.cache);
      this.cached.push(...chunk);
      if (i + PREFILL_CHUNK >= tokens.length) this.lastRowLogits(ws);
    }
  }

  private lastRowLogits(ws: Workspace): void {
    const softcap = this.model.spec.finalSoftcap;
    logitsForRows(this.model.gpu, ws.final, this.model.lmHead.weight, this.logits, { row: ws.T - 1, rows: 1, ...(softcap ? { softcap } : {}) });
  }

  /** One workspace per prefill chunk length; decode (T = 1) and full chunks are the common ones. */
  private workspace(T: number): Workspace {
    let ws = this.workspaces.get(T);
    if (!ws) {
      if (this.workspaces.size >= 4) {
        for (const [k, old] of this.workspaces) {
          if (k === 1 || k === PREFILL_CHUNK) continue;
          old.release();
          this.workspaces.delete(k);
          break;
        }
      }
      ws = new Workspace(this.model, 1, T, true);
      this.workspaces.set(T, ws);
    }
    return ws;
  }

  release(): void {
    for (const ws of this.workspaces.values()) ws.release();
    this.model.gpu.release(...cacheTensors(this.cache), this.logits, this.sampled, this.history);
  }
}
