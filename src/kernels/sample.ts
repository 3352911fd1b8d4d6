// Token sampling on the GPU for generation, one sequence per call, no readback of the logits.
// HF's order: (soft-capping, part of the model), repetition penalty, temperature, top-k, top-p,
// then inverse-CDF sampling with a uniform drawn on the CPU. Exactly reproducible for a given
// `random`. The algorithm, its tie rules and its summation order are described in
// shaders/sample.wgsl; tests/reference/sample.ts is the CPU reference.

import source from '../../shaders/sample.wgsl';
import { f32, GpuError, type Gpu } from '../gpu/runtime';
import { shaderVariant } from '../gpu/shader';
import { numel, shapeStr, type Tensor } from '../gpu/tensor';
import { scratch } from './scratch';

export interface SampleOptions {
  /** 0 = greedy argmax (lowest index wins ties); > 0 divides the logits. */
  temperature: number;
  /** Keep the k highest logits (all ties with the k-th kept); 0 or >= V = off. */
  topK?: number;
  /** Nucleus: keep the smallest top set whose probability reaches topP; 1 = off. */
  topP?: number;
  /** HF repetition penalty for tokens in `history`: logit < 0 ? logit * pen : logit / pen. 1 = off. */
  repetitionPenalty?: number;
  /** u32 token ids seen so far (prompt and generated); ids >= V are ignored. */
  history?: Tensor;
  /** How many ids of `history` to use (default: all of it). */
  historyLen?: number;
  /** Uniform in [0, 1), drawn on the CPU from the seeded RNG. Unused when greedy. */
  random: number;
  /** Row of a [R, V] logits tensor to sample from (default 0). */
  row?: number;
  /** Slot of `out` that receives the token (default 0). */
  outIndex?: number;
  /** Vocabulary size when logits is not shaped [V] or [R, V] (e.g. a padded buffer). */
  vocab?: number;
  /** Gemma-2 final_logit_softcapping, when the logits were not soft-capped yet. */
  softcap?: number;
  /** f32 with at least V elements; default: a cached per-Gpu buffer. */
  workspace?: Tensor;
}

export function sampleToken(gpu: Gpu, logits: Tensor, out: Tensor, opts: SampleOptions): void {
  const V = opts.vocab ?? logits.shape[logits.shape.length - 1]!;
  const row = opts.row ?? 0;
  const outIndex = opts.outIndex ?? 0;
  if (logits.dtype !== 'f32') throw new GpuError(`sampleToken: logits must be f32, not ${logits.dtype}`);
  if (!Number.isInteger(V) || V < 1 || (row + 1) * V > numel(logits.shape))
    throw new GpuError(`sampleToken: row ${row} of ${V} logits is outside logits ${shapeStr(logits.shape)}`);
  if (out.dtype !== 'u32' && out.dtype !== 'i32') throw new GpuError(`sampleToken: out must be u32, not ${out.dtype}`);
  if (outIndex < 0 || outIndex >= numel(out.shape))
    throw new GpuError(`sampleToken: outIndex ${outIndex} is outside out ${shapeStr(out.shape)}`);
  const { temperature } = opts;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new GpuError(`sampleToken: temperature must be >= 0, got ${temperature}`);
  const topK = opts.topK ?? 0;
  if (!Number.isInteger(topK) || topK < 0) throw new GpuError(`sampleToken: topK must be a non-negative integer, got ${topK}`);
  const topP = opts.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) throw new GpuError(`sampleToken: topP must be in (0, 1], got ${topP}`);
  const penalty = opts.repetitionPenalty ?? 1;
  if (!(penalty > 0)) throw new GpuError(`sampleToken: repetitionPenalty must be > 0, got ${penalty}`);
  const greedy = temperature === 0;
  if (!greedy && !(opts.random >= 0 && opts.random < 1)) throw new GpuError(`sampleToken: random must be in [0, 1), got ${opts.random}`);
  const history = opts.history;
  let historyLen = 0;
  if (history && penalty !== 1) {
    if (history.dtype !== 'u32' && history.dtype !== 'i32') throw new GpuError(`sampleToken: history must be u32 token ids, not ${history.dtype}`);
    historyLen = opts.historyLen ?? numel(history.shape);
    if (historyLen > numel(history.shape)) throw new GpuError(`sampleToken: historyLen ${historyLen} exceeds history ${shapeStr(history.shape)}`);
  }
  let work = opts.workspace;
  if (work && (work.dtype !== 'f32' || numel(work.shape) < V)) throw new GpuError(`sampleToken: workspace needs ${V} f32 elements`);
  work = { ...(work ?? scratch(gpu, 'sample', V)), shape: [V] };

  const rowView = { ...logits, shape: [numel(logits.shape)] };
  const hist = historyLen > 0 ? history! : rowView; // bound but unread when there is no history
  gpu.dispatch(gpu.pipeline('sample_token', () => shaderVariant(source, 'sample_token')), [rowView, hist, work, out], [1], [
    V, row * V, outIndex, historyLen,
    topK >= V ? 0 : topK, greedy ? 1 : 0, historyLen > 0 ? 1 : 0, 0,
    f32(greedy ? 1 : temperature), f32(penalty), f32(opts.softcap ?? 0), f32(topP), f32(greedy ? 0 : opts.random),
  ]);
}

export interface FeedOptions {
  /** Slot of `tokens` holding the sampled token. */
  index: number;
  /** The token's position in the sequence (the decode step's RoPE position). */
  position: number;
  /** u32 ids seen so far; the token is written at `historyLen`. */
  history: Tensor;
  historyLen: number;
  /** Position components to write (default 1; 3 for M-RoPE's [3, 1] positions of a decode step). */
  components?: number;
}

/**
 * The sampled token tokens[index] becomes the input of a one-token decode step on the GPU:
 * ids[0] = token, positions[0 .. components) = position, history[historyLen] = token. With it, several decode
 * steps are recorded before one readback of their tokens.
 */
export function feedToken(gpu: Gpu, tokens: Tensor, ids: Tensor, positions: Tensor, opts: FeedOptions): void {
  const { index, position, history, historyLen, components = 1 } = opts;
  if (tokens.dtype !== 'u32') throw new GpuError(`feedToken: tokens must be u32, not ${tokens.dtype}`);
  if (!(index >= 0 && index < numel(tokens.shape))) throw new GpuError(`feedToken: index ${index} is outside tokens ${shapeStr(tokens.shape)}`);
  for (const [name, t] of [['ids', ids], ['positions', positions]] as const) {
    if (t.dtype !== 'i32' || numel(t.shape) < 1) throw new GpuError(`feedToken: ${name} must be i32 with at least one element, got ${t.dtype} ${shapeStr(t.shape)}`);
  }
  if (history.dtype !== 'u32') throw new GpuError(`feedToken: history must be u32, not ${history.dtype}`);
  if (!(historyLen >= 0 && historyLen < numel(history.shape))) throw new GpuError(`feedToken: historyLen ${historyLen} is outside history ${shapeStr(history.shape)}`);
  if (!(Number.isInteger(position) && position >= 0)) throw new GpuError(`feedToken: position must be a non-negative integer, got ${position}`);
  if (!(Number.isInteger(components) && components >= 1 && components <= numel(positions.shape))) {
    throw new GpuError(`feedToken: ${components} position components do not fit positions ${shapeStr(positions.shape)}`);
  }
  gpu.dispatch(gpu.pipeline('feed_token', () => shaderVariant(source, 'feed_token')), [tokens, ids, positions, history], [1], [index, position, historyLen, components]);
}
