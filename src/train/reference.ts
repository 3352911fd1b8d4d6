// Reference log-probabilities computed once, before training, for dpo (sigmoid, hinge, ipo) and
// kto when the reference model is not "the base with the LoRA adapter switched off": full and
// freeze fine-tuning move the base weights themselves, and `ref_model` names another model. Every
// sequence of the training and evaluation sets is scored under the reference before the first step
// (TRL's precompute_ref_log_probs), so no second copy of the weights stays on the GPU. The table
// is keyed by the sequence's tokens and travels in every checkpoint (reference_logps.json): a
// resumed run, whose weights have moved on, keeps the reference it started with.

import { parseJsonFile } from '../data/json-file';
import type { KtoExample, PairwiseExample } from '../data/processor';
import { Workspace } from '../model/forward';
import type { Model } from '../model/model';
import { bucketLength } from './batches';
import { rowsBatch, sequenceLogps, type SeqRow } from './sequences';

export const REFERENCE_FILE = 'reference_logps.json';

export class ReferenceTable {
  private readonly logps = new Map<string, number>();

  get size(): number {
    return this.logps.size;
  }

  has(row: SeqRow): boolean {
    return this.logps.has(rowKey(row));
  }

  set(row: SeqRow, logp: number): void {
    this.logps.set(rowKey(row), logp);
  }

  /** The summed reference log-probability of a sequence; an error when it was never scored. */
  get(row: SeqRow): number {
    const v = this.logps.get(rowKey(row));
    if (v === undefined) throw new Error(`no reference log-probability for a ${row.input_ids.length}-token sequence: it is not in the data the reference was computed on`);
    return v;
  }

  /** Replaces the contents with another table's (a resumed run's). */
  assign(other: ReferenceTable): void {
    this.logps.clear();
    for (const [k, v] of other.logps) this.logps.set(k, v);
  }

  toJson(): string {
    return JSON.stringify({ format: 'crucible-reference-logps', version: 1, logps: Object.fromEntries(this.logps) });
  }

  static fromJson(text: string, where: string): ReferenceTable {
    const p = parseJsonFile<{ format?: unknown; logps?: unknown }>(text, where);
    if (p.format !== 'crucible-reference-logps' || typeof p.logps !== 'object' || p.logps === null) {
      throw new Error(`${where}: not a reference log-probability table`);
    }
    const t = new ReferenceTable();
    for (const [k, v] of Object.entries(p.logps)) {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${where}: entry ${k} is ${JSON.stringify(v)}, not a finite number`);
      t.logps.set(k, v);
    }
    return t;
  }
}

/** Every sequence the preference loss will need a reference for: pairs' chosen and rejected, KTO's targets and KL rows. */
export function referenceRows(examples: readonly (PairwiseExample | KtoExample)[]): SeqRow[] {
  return examples.flatMap((e) => ('chosen' in e
    ? [e.chosen, e.rejected]
    : [{ input_ids: e.input_ids, labels: e.labels }, { input_ids: e.kl_input_ids, labels: e.kl_labels }]));
}

/**
 * Scores rows under `model` as it is now (the initial weights, or a separate reference model) into
 * `table`; rows already in it are skipped. Rows are sorted by length so batches waste little padding.
 */
export async function scoreReference(model: Model, rows: readonly SeqRow[], table: ReferenceTable,
  o: { padId: number; cutoffLen: number; batchSize: number; onProgress?: (done: number, total: number) => void }): Promise<void> {
  const todo: SeqRow[] = [];
  const seen = new Set<string>();
  for (const r of rows) {
    const k = rowKey(r);
    if (!seen.has(k) && !table.has(r)) todo.push(r);
    seen.add(k);
  }
  todo.sort((a, b) => a.input_ids.length - b.input_ids.length);
  const workspaces = new Map<string, Workspace>();
  try {
    for (let i = 0; i < todo.length; i += o.batchSize) {
      const rowsHere = todo.slice(i, i + o.batchSize);
      const batch = rowsBatch(rowsHere, o.padId, bucketLength(rowsHere.at(-1)!.input_ids.length, o.cutoffLen));
      const key = `${batch.B}x${batch.S}`;
      let ws = workspaces.get(key);
      if (!ws) workspaces.set(key, (ws = new Workspace(model, batch.B, batch.S, false)));
      const { logps } = await sequenceLogps(ws, batch);
      rowsHere.forEach((r, j) => table.set(r, logps[j]!));
      o.onProgress?.(Math.min(i + o.batchSize, todo.length), todo.length);
    }
  } finally {
    for (const ws of workspaces.values()) ws.release();
  }
}

/** A 64-bit hash of the tokens and the labels (two 32-bit FNV-1a lanes with different offsets) plus the length. */
function rowKey(r: SeqRow): string {
  let h1 = 0x811c9dc5, h2 = 0x01000193 ^ 0x5bd1e995;
  const mix = (x: number) => {
    h1 = Math.imul(h1 ^ (x & 0xffff), 0x01000193);
    h1 = Math.imul(h1 ^ (x >>> 16), 0x01000193);
    h2 = Math.imul(h2 ^ x, 0x5bd1e995);
    h2 ^= h2 >>> 15;
  };
  for (const t of r.input_ids) mix(t);
  for (const l of r.labels) mix(l === -100 ? 0x7fffffff : l);
  return `${r.input_ids.length}:${(h1 >>> 0).toString(16)}${(h2 >>> 0).toString(16).padStart(8, '0')}`;
}
