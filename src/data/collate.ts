/**
 * Batching: right-padded Int32Array batches for the trainer.
 *
 * Labels are unshifted, as in HF: labels[b, t] is the target of position t and the model shifts
 * (logits at t-1 predict labels[t]); padding labels are -100. `lengths` gives each row's real
 * length (attention covers [0, length)); packed rows carry `segment_ids` (neat_packing: attend
 * only within the same non-zero id) and `position_ids` (restart per packed sample).
 */
import { IGNORE_INDEX, type Example, type KtoExample, type LmExample, type PairwiseExample } from './processor.ts';

export interface Batch {
  /** Rows in this batch (the last batch may be smaller than batchSize). */
  batchSize: number;
  seqLen: number;
  /** [batchSize * seqLen], row-major. */
  input_ids: Int32Array;
  labels: Int32Array;
  /** Real (unpadded) length of each row. */
  lengths: Int32Array;
  segment_ids?: Int32Array;
  position_ids?: Int32Array;
}

export interface PairwiseBatch extends Batch {
  /** Rows [0, n) are chosen, rows [n, 2n) the matching rejected (LLaMA-Factory's order). */
  pairs: number;
}

export interface KtoBatch extends Batch {
  kl: Batch;
  kto_tags: Uint8Array;
}

export interface CollateOptions {
  /** Round seqLen up to a multiple of this (e.g. 8 or 64 for kernel tiles). */
  padToMultipleOf?: number;
  /** Fixed sequence length (rows longer than this are an error). */
  seqLen?: number;
}

function seqLenFor(rows: Array<{ input_ids: number[] }>, opts: CollateOptions): number {
  let T = opts.seqLen ?? Math.max(1, ...rows.map((r) => r.input_ids.length));
  const m = opts.padToMultipleOf ?? 1;
  if (m > 1) T = Math.ceil(T / m) * m;
  return T;
}

/** Pad one group of rows into a batch. */
export function padRows(rows: Array<LmExample | { input_ids: number[]; labels: number[] }>, padId: number, opts: CollateOptions = {}): Batch {
  const B = rows.length;
  const T = seqLenFor(rows, opts);
  const input_ids = new Int32Array(B * T).fill(padId);
  const labels = new Int32Array(B * T).fill(IGNORE_INDEX);
  const lengths = new Int32Array(B);
  const hasSeg = rows.some((r) => (r as LmExample).segment_ids);
  const hasPos = rows.some((r) => (r as LmExample).position_ids);
  const segment_ids = hasSeg ? new Int32Array(B * T) : undefined;
  const position_ids = hasPos ? new Int32Array(B * T) : undefined;
  rows.forEach((r, b) => {
    const n = r.input_ids.length;
    if (n > T) throw new Error(`row ${b} has ${n} tokens, more than seqLen ${T}`);
    if (r.labels.length !== n) throw new Error(`row ${b}: ${r.labels.length} labels for ${n} input ids`);
    input_ids.set(r.input_ids, b * T);
    labels.set(r.labels, b * T);
    lengths[b] = n;
    const ex = r as LmExample;
    if (segment_ids) {
      if (ex.segment_ids) segment_ids.set(ex.segment_ids, b * T);
      else segment_ids.fill(1, b * T, b * T + n);
    }
    if (position_ids) {
      if (ex.position_ids) position_ids.set(ex.position_ids, b * T);
      else for (let t = 0; t < n; t++) position_ids[b * T + t] = t;
    }
  });
  const out: Batch = { batchSize: B, seqLen: T, input_ids, labels, lengths };
  if (segment_ids) out.segment_ids = segment_ids;
  if (position_ids) out.position_ids = position_ids;
  return out;
}

function chunks<T>(xs: readonly T[], n: number): T[][] {
  if (!(n >= 1)) throw new Error('batchSize must be >= 1');
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

/** sft/pt examples → batches of batchSize rows (in order; shuffle beforehand). */
export function collate(examples: readonly LmExample[], batchSize: number, padId: number, opts: CollateOptions = {}): Batch[] {
  return chunks(examples, batchSize).map((rows) => padRows(rows, padId, opts));
}

/** Preference examples → batches of 2·pairs rows: chosen first, then rejected. */
export function collatePairwise(examples: readonly PairwiseExample[], batchSize: number, padId: number, opts: CollateOptions = {}): PairwiseBatch[] {
  return chunks(examples, batchSize).map((rows) => ({
    ...padRows([...rows.map((r) => r.chosen), ...rows.map((r) => r.rejected)], padId, opts),
    pairs: rows.length,
  }));
}

/** KTO examples → batches with their KL rows and tags. */
export function collateKto(examples: readonly KtoExample[], batchSize: number, padId: number, opts: CollateOptions = {}): KtoBatch[] {
  return chunks(examples, batchSize).map((rows) => ({
    ...padRows(rows, padId, opts),
    kl: padRows(rows.map((r) => ({ input_ids: r.kl_input_ids, labels: r.kl_labels })), padId, opts),
    kto_tags: Uint8Array.from(rows.map((r) => (r.kto_tag ? 1 : 0))),
  }));
}

export function isPairwise(e: Example): e is PairwiseExample {
  return 'chosen' in e;
}

export function isKto(e: Example): e is KtoExample {
  return 'kto_tag' in e;
}
