/**
 * previewWindow / previewExamples: examples of a config as the trainer will see them (before
 * packing), decoded, with the learned spans (labels != -100) marked — for `crucible preview` and the app.
 */
import { buildDataset, type DatasetStats } from './dataset.ts';
import type { DataConfig, DataDeps, ExampleWindow } from './dataset-config.ts';
import { IGNORE_INDEX, type KtoExample, type LmExample, type PairwiseExample } from './processor.ts';
import type { Tokenizer } from './tokenizer.ts';

export interface PreviewSegment {
  text: string;
  learned: boolean;
}

export interface PreviewItem {
  text: string;
  segments: PreviewSegment[];
  input_ids: number[];
  labels: number[];
}

export type PreviewExample =
  | PreviewItem
  | { chosen: PreviewItem; rejected: PreviewItem }
  | (PreviewItem & { kto_tag: boolean; kl: PreviewItem });

/** Decode ids and split the text into runs of learned / not-learned tokens. */
export function describeTokens(tok: Tokenizer, inputIds: number[], labels: number[]): PreviewItem {
  const segments: PreviewSegment[] = [];
  let prevText = '';
  let start = 0;
  const learnedAt = (i: number) => labels[i] !== IGNORE_INDEX;
  for (let i = 1; i <= inputIds.length; i++) {
    if (i === inputIds.length || learnedAt(i) !== learnedAt(start)) {
      const upto = tok.decode(inputIds.slice(0, i));
      const text = upto.startsWith(prevText) ? upto.slice(prevText.length) : tok.decode(inputIds.slice(start, i));
      segments.push({ text, learned: learnedAt(start) });
      prevText = upto;
      start = i;
    }
  }
  return { text: tok.decode(inputIds), segments, input_ids: inputIds, labels };
}

export interface Preview {
  examples: PreviewExample[];
  /** Training examples in the whole dataset (max_samples applied, no packing). */
  total: number;
  stats: DatasetStats;
}

/**
 * Train examples [offset, offset + count) in file order. Every record is read and checked (drops
 * are counted and logged as in training) but only the window is tokenized, so a far offset is cheap.
 */
export async function previewWindow(config: DataConfig, deps: DataDeps, window: ExampleWindow): Promise<Preview> {
  const built = await buildDataset({ ...config, val_size: 0, eval_dataset: null, packing: false, neat_packing: false, shuffle: false, window }, deps);
  const tok = deps.tokenizer;
  const examples = built.train.map((e): PreviewExample => {
    if (built.kind === 'pairwise') {
      const p = e as PairwiseExample;
      return { chosen: describeTokens(tok, p.chosen.input_ids, p.chosen.labels), rejected: describeTokens(tok, p.rejected.input_ids, p.rejected.labels) };
    }
    if (built.kind === 'kto') {
      const k = e as KtoExample;
      return { ...describeTokens(tok, k.input_ids, k.labels), kto_tag: k.kto_tag, kl: describeTokens(tok, k.kl_input_ids, k.kl_labels) };
    }
    const l = e as LmExample;
    return describeTokens(tok, l.input_ids, l.labels);
  });
  return { examples, total: built.stats.train.examples, stats: built.stats };
}

/** The first n examples. */
export async function previewExamples(config: DataConfig, deps: DataDeps, n = 3): Promise<PreviewExample[]> {
  return (await previewWindow(config, deps, { offset: 0, count: n })).examples;
}
