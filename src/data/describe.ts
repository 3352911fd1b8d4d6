// What kind of training data a dataset holds, with LLaMA-Factory's dataset_info.json semantics
// (dataset-info.ts): `ranking: true` is preference data (chosen / rejected), a `columns.kto_tag`
// is KTO data, anything else trains pt / sft. A dataset without an entry is described from its
// first record, as buildDataset detects it (sources.ts detectAttr).

import type { DataDeps, ExampleKind } from './dataset-config';
import { attrFromInfo, parseDatasetInfo, type DatasetAttr, type Formatting } from './dataset-info';
import { fileType, parseDataFile } from './formats';
import { detectAttr } from './sources';

export type DataKind = ExampleKind;
export type { Formatting };

/** A dataset's format: declared by its dataset_info.json entry, or detected from its first record. */
export interface DataFormat {
  formatting: Formatting;
  kind: DataKind;
  /** dataset_info.json column roles -> the file's column names (prompt, messages, chosen, kto_tag, ...). */
  columns: Record<string, string>;
  /** sharegpt / openai message tags (role_tag, content_tag, user_tag, ...). */
  tags: Record<string, string>;
  from: 'dataset_info.json' | 'detected';
}

/** The kind of a dataset_info.json entry (or of detected attributes, which have the same fields). */
export function kindOf(entry: { ranking?: unknown; columns?: { kto_tag?: unknown } | null }): DataKind {
  if (entry.ranking === true) return 'pairwise';
  return entry.columns?.kto_tag ? 'kto' : 'lm';
}

/**
 * The format of `dataset` in `dir` as buildDataset will read it: its dataset_info.json entry, else
 * detected from the first record of the file it names; null for a name that is not a data file.
 */
export async function describeDataset(files: Pick<DataDeps, 'readFile'>, dataset: string, dir: string): Promise<DataFormat | null> {
  const infoPath = `${dir}/dataset_info.json`;
  const info = await files.readFile(infoPath).then((b) => parseDatasetInfo(new TextDecoder().decode(b), infoPath), () => null);
  const format = (attr: DatasetAttr, from: DataFormat['from']): DataFormat => ({
    formatting: attr.formatting,
    kind: kindOf(attr),
    columns: Object.fromEntries(Object.entries(attr.columns).filter((e): e is [string, string] => typeof e[1] === 'string')),
    tags: { ...attr.tags },
    from,
  });
  if (info && dataset in info) return format(attrFromInfo(dataset, info[dataset]!, infoPath), 'dataset_info.json');
  if (fileType(dataset) === undefined) return null;
  const path = `${dir}/${dataset}`;
  const { rows } = await parseDataFile(await files.readFile(path), path);
  return format(detectAttr(dataset, 'file', dataset, rows[0], rows), 'detected');
}
