// A LLaMA-Factory v1 data YAML (data/v1_sft_demo.yaml): one entry per dataset with `path`,
// `source` (local or hf_hub), `converter` (alpaca, sharegpt, pair), `size`, `split`, read into the
// dataset_info.json entries Crucible's data pipeline reads. The v1 loader is
// LLaMA-Factory's core/data_engine.py and plugins/data_plugins (converter.py, loader.py).

import { isMap, parseDocument } from 'yaml';
import type { DatasetInfoEntry } from './llamafactory';

export type V1Converter = 'alpaca' | 'sharegpt' | 'pair';

export interface V1Datasets {
  /** dataset name -> dataset_info.json entry. */
  entries: Record<string, DatasetInfoEntry>;
  /** The converters used, to pick the training stage (pair: dpo). */
  converters: Set<V1Converter>;
  problems: string[];
}

const ENTRY_KEYS = ['path', 'source', 'converter', 'size', 'split', 'weight', 'streaming'];

/**
 * `text`: the data YAML; `file` names it in messages; `localPath` turns a `source: local` path into
 * the file name the data pipeline reads (v1 paths are relative to the working directory).
 */
export function readV1DataYaml(text: string, file: string, localPath: (path: string) => string): V1Datasets {
  const out: V1Datasets = { entries: {}, converters: new Set(), problems: [] };
  const doc = parseDocument(text, { version: '1.1', uniqueKeys: true });
  if (doc.errors.length > 0) {
    out.problems.push(`${file}: invalid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
    return out;
  }
  if (!isMap(doc.contents)) {
    out.problems.push(`${file}: expected one entry per dataset ("name:" followed by path, source, converter)`);
    return out;
  }
  const data = doc.toJS() as Record<string, unknown>;
  for (const [name, raw] of Object.entries(data)) {
    const at = `${file}: ${name}`;
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
      out.problems.push(`${at}: expected a mapping with path, source and converter`);
      continue;
    }
    const e = raw as Record<string, unknown>;
    const unknown = Object.keys(e).filter((k) => !ENTRY_KEYS.includes(k));
    if (unknown.length > 0) {
      out.problems.push(`${at}: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (a v1 dataset entry has ${ENTRY_KEYS.join(', ')})`);
      continue;
    }
    const entry = datasetEntry(e, at, localPath, out.problems);
    if (!entry) continue;
    out.entries[name] = entry.info;
    out.converters.add(entry.converter);
  }
  if (Object.keys(data).length === 0) out.problems.push(`${file}: defines no dataset`);
  return out;
}

function datasetEntry(
  e: Record<string, unknown>,
  at: string,
  localPath: (path: string) => string,
  problems: string[],
): { info: DatasetInfoEntry; converter: V1Converter } | null {
  const before = problems.length;
  const path = e.path;
  if (typeof path !== 'string' || path.trim() === '') problems.push(`${at}: path: expected a file, folder or Hub dataset id`);
  const source = e.source ?? 'hf_hub';
  if (source !== 'local' && source !== 'hf_hub') {
    problems.push(`${at}: source: ${JSON.stringify(source)} is a data loader Crucible does not have (it reads local and hf_hub)`);
  }
  const converter = e.converter;
  if (converter === undefined || converter === null) {
    problems.push(
      `${at}: no converter: records in LLaMA-Factory v1's own message format (content blocks with loss_weight) are not read by Crucible; ` +
        'name the converter of the data (alpaca, sharegpt or pair)',
    );
  } else if (converter !== 'alpaca' && converter !== 'sharegpt' && converter !== 'pair') {
    problems.push(`${at}: converter: ${JSON.stringify(converter)} is not one of LLaMA-Factory v1's converters (alpaca, sharegpt, pair)`);
  }
  if (e.streaming !== undefined && e.streaming !== false) problems.push(`${at}: streaming: dataset streaming is not implemented in Crucible; remove it`);
  if (e.weight !== undefined && e.weight !== null) {
    problems.push(`${at}: weight: resampling by weight is not implemented in Crucible; give the number of examples as size instead`);
  }
  const size = e.size;
  if (size !== undefined && size !== null && (typeof size !== 'number' || !Number.isInteger(size) || size < 1)) {
    problems.push(`${at}: size: expected a positive whole number of examples, got ${JSON.stringify(size)}`);
  }
  if (e.split !== undefined && typeof e.split !== 'string') problems.push(`${at}: split: expected a split name such as train`);
  if (problems.length > before) return null;

  const info: DatasetInfoEntry = source === 'local' ? { file_name: localPath(path as string) } : { hf_hub_url: path as string };
  if (typeof e.split === 'string' && e.split !== 'train') info.split = e.split;
  if (typeof size === 'number') info.num_samples = size;
  Object.assign(info, CONVERTER_ENTRY[converter as V1Converter]);
  return { info, converter: converter as V1Converter };
}

/** What each v1 converter reads, as dataset_info.json formatting, columns and tags. */
const CONVERTER_ENTRY: Record<V1Converter, Partial<DatasetInfoEntry>> = {
  alpaca: { formatting: 'alpaca', columns: { prompt: 'instruction', query: 'input', response: 'output', system: 'system' } },
  sharegpt: { formatting: 'sharegpt', columns: { messages: 'conversations', tools: 'tools' } },
  // chosen and rejected are whole OpenAI-style conversations, the prompt repeated in each
  pair: { formatting: 'openai', ranking: true, columns: { chosen: 'chosen', rejected: 'rejected', tools: 'tools' } },
};
