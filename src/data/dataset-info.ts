/**
 * dataset_info.json, as LLaMA-Factory defines it: per dataset a source (file_name, hf_hub_url,
 * ms_hub_url, om_hub_url, script_url, cloud_file_name), formatting (alpaca | sharegpt | openai),
 * ranking, subset, split, folder, num_samples, columns and tags.
 */
import { DataError } from './errors.ts';
import { parseJsonFile } from './json-file.ts';

export type Formatting = 'alpaca' | 'sharegpt' | 'openai';

export interface DatasetAttr {
  /** Name in `dataset:` */
  name: string;
  loadFrom: 'file' | 'hf_hub';
  /** file_name (relative to dataset_dir) or hub repo id. */
  source: string;
  formatting: Formatting;
  ranking: boolean;
  subset?: string;
  split: string;
  folder?: string;
  numSamples?: number;
  columns: {
    prompt?: string;
    query?: string;
    response?: string;
    history?: string;
    messages?: string;
    system?: string;
    tools?: string;
    images?: string;
    videos?: string;
    audios?: string;
    chosen?: string;
    rejected?: string;
    kto_tag?: string;
  };
  tags: {
    role_tag: string;
    content_tag: string;
    user_tag: string;
    assistant_tag: string;
    observation_tag: string;
    function_tag: string;
    system_tag: string;
  };
  /** Columns/tags explicitly given in dataset_info.json (for format auto-detection and messages). */
  explicitColumns: string[];
  explicitTags: string[];
}

const COLUMN_NAMES = ['prompt', 'query', 'response', 'history', 'messages', 'system', 'tools', 'images', 'videos', 'audios', 'chosen', 'rejected', 'kto_tag'] as const;
const TAG_NAMES = ['role_tag', 'content_tag', 'user_tag', 'assistant_tag', 'observation_tag', 'function_tag', 'system_tag'] as const;
const KNOWN_KEYS = new Set(['file_name', 'hf_hub_url', 'ms_hub_url', 'om_hub_url', 'script_url', 'cloud_file_name', 'formatting', 'ranking', 'subset', 'split', 'folder', 'num_samples', 'columns', 'tags']);

export function defaultAttr(name: string, loadFrom: DatasetAttr['loadFrom'], source: string): DatasetAttr {
  return {
    name,
    loadFrom,
    source,
    formatting: 'alpaca',
    ranking: false,
    split: 'train',
    columns: { prompt: 'instruction', query: 'input', response: 'output', messages: 'conversations' },
    tags: {
      role_tag: 'from',
      content_tag: 'value',
      user_tag: 'human',
      assistant_tag: 'gpt',
      observation_tag: 'observation',
      function_tag: 'function_call',
      system_tag: 'system',
    },
    explicitColumns: [],
    explicitTags: [],
  };
}

/** OpenAI-style tags (role/content, user/assistant/tool/system), used when `openai` formatting has no tags. */
export const OPENAI_TAGS: DatasetAttr['tags'] = {
  role_tag: 'role',
  content_tag: 'content',
  user_tag: 'user',
  assistant_tag: 'assistant',
  observation_tag: 'tool',
  function_tag: 'function',
  system_tag: 'system',
};

/**
 * Role/content messages: LLaMA-Factory reads them as sharegpt with OpenAI tags (its data/README),
 * and needs its openai converter only for OpenAI tool calls (`tool_calls`, role "tool"), which
 * also adds the "detailed thinking" system suffix. Crucible detects them the same way.
 */
export function hasOpenaiToolCalls(messages: unknown): boolean {
  return Array.isArray(messages) && messages.some((m) => !!m && typeof m === 'object' && (Array.isArray((m as Record<string, unknown>).tool_calls) || (m as Record<string, unknown>).role === 'tool'));
}

export function parseDatasetInfo(text: string, file: string): Record<string, Record<string, unknown>> {
  const info = parseJsonFile(text, file);
  if (!info || typeof info !== 'object' || Array.isArray(info)) throw new DataError('dataset_info.json must be an object of dataset entries', { file });
  return info as Record<string, Record<string, unknown>>;
}

/** Build the attributes of dataset `name` from its dataset_info.json entry. */
export function attrFromInfo(name: string, entry: Record<string, unknown>, file: string): DatasetAttr {
  const where = { file, field: name };
  if (!entry || typeof entry !== 'object') throw new DataError('dataset entry must be an object', where);
  for (const k of Object.keys(entry)) {
    if (!KNOWN_KEYS.has(k)) throw new DataError(`unknown key "${k}" (known: ${[...KNOWN_KEYS].join(', ')})`, where);
  }
  let attr: DatasetAttr;
  const str = (k: string) => {
    const v = entry[k];
    if (v !== undefined && typeof v !== 'string') throw new DataError(`"${k}" must be a string`, { file, field: `${name}.${k}` });
    return v as string | undefined;
  };
  if (entry.hf_hub_url !== undefined || entry.ms_hub_url !== undefined || entry.om_hub_url !== undefined) {
    const url = str('hf_hub_url');
    if (!url) throw new DataError('only Hugging Face Hub datasets are supported (this entry has no hf_hub_url)', where);
    attr = defaultAttr(name, 'hf_hub', url);
  } else if (entry.script_url !== undefined || entry.cloud_file_name !== undefined) {
    throw new DataError('script_url and cloud_file_name datasets are not supported; use file_name or hf_hub_url', where);
  } else {
    const f = str('file_name');
    if (!f) throw new DataError('needs "file_name" or "hf_hub_url"', where);
    attr = defaultAttr(name, 'file', f);
  }
  const formatting = entry.formatting ?? 'alpaca';
  if (formatting !== 'alpaca' && formatting !== 'sharegpt' && formatting !== 'openai') {
    throw new DataError(`"formatting" must be alpaca, sharegpt or openai, got ${JSON.stringify(formatting)}`, { file, field: `${name}.formatting` });
  }
  attr.formatting = formatting;
  attr.ranking = entry.ranking === true;
  attr.subset = str('subset');
  attr.split = str('split') ?? 'train';
  attr.folder = str('folder');
  if (entry.num_samples !== undefined) {
    if (typeof entry.num_samples !== 'number' || !Number.isInteger(entry.num_samples) || entry.num_samples < 1) {
      throw new DataError('"num_samples" must be a positive integer', { file, field: `${name}.num_samples` });
    }
    attr.numSamples = entry.num_samples;
  }
  if (entry.columns !== undefined) {
    const cols = entry.columns as Record<string, unknown>;
    if (!cols || typeof cols !== 'object') throw new DataError('"columns" must be an object', { file, field: `${name}.columns` });
    // LLaMA-Factory resets every column to what "columns" gives (absent → None).
    const c: DatasetAttr['columns'] = {};
    for (const k of Object.keys(cols)) {
      if (!(COLUMN_NAMES as readonly string[]).includes(k)) throw new DataError(`unknown column key "${k}" (known: ${COLUMN_NAMES.join(', ')})`, { file, field: `${name}.columns` });
      const v = cols[k];
      if (typeof v !== 'string') throw new DataError('column names must be strings', { file, field: `${name}.columns.${k}` });
      c[k as keyof DatasetAttr['columns']] = v;
    }
    attr.columns = c;
    attr.explicitColumns = Object.keys(cols);
  }
  if (entry.tags !== undefined) {
    const tags = entry.tags as Record<string, unknown>;
    if (!tags || typeof tags !== 'object') throw new DataError('"tags" must be an object', { file, field: `${name}.tags` });
    for (const k of Object.keys(tags)) {
      if (!(TAG_NAMES as readonly string[]).includes(k)) throw new DataError(`unknown tag key "${k}" (known: ${TAG_NAMES.join(', ')})`, { file, field: `${name}.tags` });
      if (typeof tags[k] !== 'string') throw new DataError('tags must be strings', { file, field: `${name}.tags.${k}` });
    }
    // LLaMA-Factory resets all tags from "tags" (absent → None); keep defaults only for absent ones
    // that it would also fail on, which is the more useful behaviour.
    for (const k of TAG_NAMES) if (typeof tags[k] === 'string') attr.tags[k] = tags[k] as string;
    attr.explicitTags = Object.keys(tags);
  } else if (attr.formatting === 'openai') {
    attr.tags = { ...OPENAI_TAGS };
  }
  return attr;
}
