// Text generation with a KV cache: prefill the prompt (reusing the cached prefix of the previous
// call, so multi-turn chat only runs the new tokens), then decode on the GPU in bursts: each step
// samples there and feeds the token to the next step without a readback, and a burst's tokens are
// read back together. Bursts grow 1, 2, 4 ... MAX_BURST, so the first token shows at once; a stop
// token inside a burst wastes the steps recorded after it (they are dropped from the cache).
// Gated DeltaNet, Mamba-2 and LFM2 short-convolution layers keep a recurrent state instead of keys
// and values (forward.ts's KVCache): it cannot drop steps, so after such waste the next call runs
// its prompt from the start.
// Qwen2-VL prompts carry images (prompt-images.ts): the prefill places their embeddings at the
// <|image_pad|> runs with M-RoPE positions (mrope.ts ropeIndex), and every later token's position is
// its index + rope_deltas, as transformers continues them.

import { logitsForRows } from '../kernels/loss';
import { feedToken, sampleToken } from '../kernels/sample';
import type { Tensor } from '../gpu/tensor';
import { BeamSearch, type BeamResult, type EarlyStopping } from './beam-search';
import { allocKVCache, cacheTensors, clearRecurrentState, forwardCached, hasRecurrentState, Workspace, type KVCache } from './forward';
import type { Model } from './model';
import { ropeIndex } from './mrope';
import { chunkEnds, imageRuns, reusablePrefix, type PromptImage, type TokenRun } from './prompt-images';

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
  /** Beam search with this many beams (1: sampling or greedy as above; above 1 needs temperature 0). */
  numBeams?: number;
  /** Beam search's length normalisation exponent (HF length_penalty, default 1). */
  lengthPenalty?: number;
  /** Beam search's early_stopping (HF default false). */
  earlyStopping?: EarlyStopping;
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
  /** The images whose tokens are among the cached ones, in order. */
  private cachedImages: readonly PromptImage[] = [];
  /** M-RoPE's rope_deltas of the cached sequence: a token after the last image sits at index + delta. */
  private ropeDelta = 0;
  private readonly workspaces = new Map<number, Workspace>();
  private readonly logits: Tensor;
  /** Tokens sampled in the current burst. */
  private readonly sampled: Tensor;
  private readonly history: Tensor;
  /** The stop token that ended the last generation; null when it ran to max_new_tokens (or was aborted). */
  lastStop: number | null = null;

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
    this.cachedImages = [];
    this.ropeDelta = 0;
    this.cache.length = 0;
  }

  /** Samples an answer to the prompt; `images` fill its <|image_pad|> runs in order (vision-language models). */
  async *generate(prompt: readonly number[], opts: SamplingOptions, images: readonly PromptImage[] = []): AsyncGenerator<number> {
    if ((opts.numBeams ?? 1) > 1) {
      const result = await this.beamSearch(prompt, opts, images);
      if (result) yield* result.tokens;
      return;
    }
    const gpu = this.model.gpu;
    const stop = new Set(opts.stopIds ?? this.model.spec.eosIds);
    this.lastStop = null;
    await this.prefill(prompt, opts.maxNewTokens, images);
    const tokens = [...prompt];
    gpu.write(this.history, Uint32Array.from(tokens));
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
      if (stopAt >= 0) this.lastStop = ids[stopAt]!;
      yield* kept;
      if (stopAt >= 0) return;
    }
  }

  /**
   * Beam search (num_beams > 1, see beam-search.ts) for one answer: the prompt is prefilled in the
   * Generator's cache as for sampling, its keys and values copied to each beam's rows of a beam
   * cache, and each step runs the beams as one batch. Reordering the beams copies each new beam's
   * generated rows from its parent's into a spare cache, which then becomes the current one.
   * Resolves to null when aborted.
   */
  async beamSearch(prompt: readonly number[], opts: SamplingOptions, images: readonly PromptImage[] = []): Promise<BeamResult | null> {
    const numBeams = opts.numBeams ?? 1;
    if ((opts.temperature ?? 0) > 0) throw new Error(`beam search with sampling (do_sample with num_beams ${numBeams}) is not supported; set do_sample: false, or num_beams: 1 to sample`);
    if (hasRecurrentState(this.cache)) throw new Error(`beam search (num_beams ${numBeams}) is not supported for models with recurrent layers (Gated DeltaNet, Mamba-2, short convolution); use num_beams: 1`);
    const search = new BeamSearch(prompt, {
      numBeams,
      maxNewTokens: opts.maxNewTokens,
      stopIds: opts.stopIds ?? this.model.spec.eosIds,
      ...(opts.lengthPenalty !== undefined ? { lengthPenalty: opts.lengthPenalty } : {}),
      ...(opts.earlyStopping !== undefined ? { earlyStopping: opts.earlyStopping } : {}),
      ...(opts.repetitionPenalty !== undefined ? { repetitionPenalty: opts.repetitionPenalty } : {}),
    });
    await this.prefill(prompt, opts.maxNewTokens, images);
    const gpu = this.model.gpu;
    const P = prompt.length;
    const capacity = P + opts.maxNewTokens;
    const rowBytes = this.model.spec.kvHeads * this.model.spec.headDim * 4;
    let current = allocKVCache(this.model, capacity, numBeams);
    let spare = allocKVCache(this.model, capacity, numBeams);
    const ws = new Workspace(this.model, numBeams, 1, true);
    const logits = gpu.tensor([numBeams, this.model.spec.vocab], 'f32', 'beam logits');
    try {
      // every beam starts from the prompt's rows (the spare too: reordering copies generated rows only)
      for (const c of [current, spare]) {
        for (let l = 0; l < this.model.layers.length; l++) {
          for (let b = 0; b < numBeams; b++) {
            gpu.copy(this.cache.k[l]!, c.k[l]!, P * rowBytes, 0, b * capacity * rowBytes);
            gpu.copy(this.cache.v[l]!, c.v[l]!, P * rowBytes, 0, b * capacity * rowBytes);
          }
        }
        c.length = P;
      }
      // the first step's beams are all the prompt
      const first = await gpu.readF32(this.logits);
      let rows: Float32Array = new Float32Array(numBeams * first.length);
      for (let b = 0; b < numBeams; b++) rows.set(first, b * first.length);
      for (;;) {
        if (opts.signal?.aborted) return null;
        const step = search.step(rows);
        if (search.done) break;
        if (step.parents.some((p, b) => p !== b)) {
          const generated = current.length - P;
          for (let l = 0; l < this.model.layers.length; l++) {
            for (let b = 0; b < numBeams; b++) {
              const [from, to] = [(step.parents[b]! * capacity + P) * rowBytes, (b * capacity + P) * rowBytes];
              gpu.copy(current.k[l]!, spare.k[l]!, generated * rowBytes, from, to);
              gpu.copy(current.v[l]!, spare.v[l]!, generated * rowBytes, from, to);
            }
          }
          spare.length = current.length;
          [current, spare] = [spare, current];
        }
        ws.load({
          B: numBeams, S: 1,
          ids: Int32Array.from(step.tokens),
          labels: new Int32Array(numBeams).fill(-100),
          positions: new Int32Array(numBeams).fill(current.length + this.ropeDelta),
        });
        forwardCached(ws, current);
        const softcap = this.model.spec.finalSoftcap;
        logitsForRows(gpu, ws.final, this.model.lmHead.weight, logits, { row: 0, rows: numBeams, ...(softcap ? { softcap } : {}) });
        rows = await gpu.readF32(logits);
      }
      return search.result();
    } finally {
      ws.release();
      gpu.release(...cacheTensors(current), ...cacheTensors(spare), logits);
    }
  }

  /**
   * Runs the prompt at the end of the cache, reusing the common prefix of what is cached (at least
   * the last prompt token runs, for fresh logits in this.logits).
   */
  private async prefill(prompt: readonly number[], maxNewTokens: number, images: readonly PromptImage[]): Promise<void> {
    if (prompt.length === 0) throw new Error('generate: the prompt is empty');
    if (prompt.length + maxNewTokens > this.cache.capacity) {
      throw new Error(`prompt (${prompt.length} tokens) + max_new_tokens (${maxNewTokens}) exceeds the context of ${this.cache.capacity}`);
    }
    const v = this.model.spec.vision;
    if (images.length && !v) throw new Error('this model has no vision tower: it cannot take images');
    const runs = v ? imageRuns(prompt, images, v.imageTokenId, v.mergeSize) : [];
    // M-RoPE positions of the whole prompt (causal: a reused prefix had the same ones)
    const rope = this.model.spec.mrope && v ? ropeIndex(prompt, images.map((i) => i.grid), v) : null;
    let keep = 0;
    while (keep < this.cached.length && keep < prompt.length - 1 && this.cached[keep] === prompt[keep]) keep++;
    keep = reusablePrefix(keep, runs, images, this.cachedImages);
    // a recurrent state holds every token fed (cache.length of them, steps after a stop included):
    // it is reused only when those are exactly the cached tokens and all of them prefix the prompt
    if ((keep < this.cached.length || this.cache.length !== this.cached.length) && hasRecurrentState(this.cache)) keep = 0;
    if (keep === 0) clearRecurrentState(this.model, this.cache);
    this.cached = this.cached.slice(0, keep);
    this.cache.length = keep;
    // set before running: chunks keep runs whole, so whatever the cache holds if a chunk fails is this prompt's
    this.cachedImages = images;
    this.ropeDelta = rope?.delta ?? 0;
    await this.run(prompt, keep, runs, images, rope?.positions ?? null);
  }

  /** One decode step on sampled[index], with no readback: its logits land in this.logits. */
  private decodeSampled(index: number, historyLen: number): void {
    const ws = this.workspace(1);
    feedToken(this.model.gpu, this.sampled, ws.ids, ws.positions, {
      index, position: this.cache.length + this.ropeDelta, history: this.history, historyLen, components: this.model.spec.mrope ? 3 : 1,
    });
    forwardCached(ws, this.cache);
    this.lastRowLogits(ws);
  }

  /**
   * Runs prompt[from ..] through the model at the end of the cache, in chunks that keep each image
   * run whole; logits of the last token land in this.logits. `mrope`: the prompt's [3, n] positions.
   */
  private async run(prompt: readonly number[], from: number, runs: readonly TokenRun[], images: readonly PromptImage[], mrope: Int32Array | null): Promise<void> {
    const n = prompt.length;
    let start = from;
    for (const end of chunkEnds(from, n, PREFILL_CHUNK, runs)) {
      const chunk = prompt.slice(start, end);
      const T = chunk.length;
      const ws = this.workspace(T);
      const positions = mrope ? new Int32Array(3 * T) : Int32Array.from(chunk, (_, j) => start + j);
      if (mrope) for (let c = 0; c < 3; c++) positions.set(mrope.subarray(c * n + start, c * n + end), c * T);
      const mine = images.filter((_, k) => runs[k]!.start >= start && runs[k]!.start < end);
      ws.load({
        B: 1, S: T,
        ids: Int32Array.from(chunk),
        labels: new Int32Array(T).fill(-100),
        positions,
        ...(mine.length ? { images: { pixels: concat(mine.map((i) => i.pixels)), grids: mine.map((i) => i.grid) } } : {}),
      });
      forwardCached(ws, this.cache);
      this.cached.push(...chunk);
      if (end === n) this.lastRowLogits(ws);
      start = end;
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

function concat(parts: readonly Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
