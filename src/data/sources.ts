// Dataset sources: dataset_info.json entries (or a file name with its columns guessed), their
// local or Hub files, parsed into records, sampled (num_samples, max_samples) and converted into
// aligned conversations; records that cannot be converted are counted as drops.
import { DataError, type DataErrorLocation } from './errors.ts';
import { attrFromInfo, defaultAttr, hasOpenaiToolCalls, OPENAI_TAGS, parseDatasetInfo, type DatasetAttr } from './dataset-info.ts';
import { exampleKind, type DataConfig, type DataDeps, type Stage } from './dataset-config.ts';
import { addDrop, type DropCount } from './drops.ts';
import { fileType, parseDataFile, FILE_TYPES, type LoadedFile, type RecordSource, type Row } from './formats.ts';
import { convertRecord, convertTokenized, isTokenizedRow, type Aligned, type TokenizedRecord } from './converter.ts';
import { checkPlaceholders, resolveImages } from './media.ts';
import { joinPath } from './paths.ts';
import { permutation, rng } from './random.ts';


export function splitNames(v: string | string[] | null | undefined): string[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : String(v).split(',');
  return list.map((s) => s.trim()).filter(Boolean);
}

export interface LoadedDataset {
  attr: DatasetAttr;
  files: string[];
  records: number;
  aligned: Aligned[];
  tokenized: TokenizedRecord[];
  drops: Map<string, DropCount>;
  /** From reading the files (bytes that are not UTF-8). */
  warnings: string[];
}

/** Guess the attributes of a data file that has no dataset_info.json entry (`rows`: more records to look at for tool calls). */
export function detectAttr(name: string, loadFrom: DatasetAttr['loadFrom'], source: string, first: Row | undefined, rows: readonly Row[] = []): DatasetAttr {
  const attr = defaultAttr(name, loadFrom, source);
  if (!first) return attr;
  const has = (k: string) => k in first;
  const msgCol = has('messages') ? 'messages' : has('conversations') ? 'conversations' : undefined;
  if (msgCol) {
    const list = first[msgCol];
    const m0 = Array.isArray(list) && list.length ? (list[0] as Row) : undefined;
    const openai = !!m0 && typeof m0 === 'object' && 'role' in m0;
    const toolCalls = [first, ...rows].some((r) => hasOpenaiToolCalls(r[msgCol]));
    attr.formatting = openai && toolCalls ? 'openai' : 'sharegpt';
    attr.columns = { messages: msgCol };
    if (openai) attr.tags = { ...OPENAI_TAGS };
    if (has('system')) attr.columns.system = 'system';
    if (has('tools')) attr.columns.tools = 'tools';
  } else if (has('instruction') || has('output')) {
    attr.columns = { prompt: 'instruction', query: 'input', response: 'output' };
    if (has('system')) attr.columns.system = 'system';
    if (has('history')) attr.columns.history = 'history';
  } else if (has('prompt') && (has('response') || has('completion'))) {
    attr.columns = { prompt: 'prompt', response: has('response') ? 'response' : 'completion' };
  } else if (has('text')) {
    attr.columns = { prompt: 'text' };
  } else if (has('prompt')) {
    attr.columns = { prompt: 'prompt' };
  }
  if (has('chosen') && has('rejected')) {
    attr.ranking = true;
    attr.columns.chosen = 'chosen';
    attr.columns.rejected = 'rejected';
  }
  for (const k of ['kto_tag', 'label']) {
    if (has(k) && typeof first[k] === 'boolean') attr.columns.kto_tag = k;
  }
  // media columns are mapped so their contents are read or refused, never dropped unseen
  for (const k of ['images', 'videos', 'audios'] as const) if ([first, ...rows].some((r) => k in r)) attr.columns[k] = k;
  return attr;
}

export interface Access {
  readLocal(path: string): Promise<Uint8Array>;
  listLocal(path: string): Promise<string[] | null>;
}

async function readOrFail(read: () => Promise<Uint8Array>, what: string, where: DataErrorLocation): Promise<Uint8Array> {
  try {
    return await read();
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError(`cannot read ${what}: ${(e as Error).message}`, where);
  }
}

function splitMatches(path: string, split: string): boolean {
  const parts = path.split('/');
  const base = parts[parts.length - 1];
  if (parts.slice(0, -1).includes(split)) return true;
  const stem = base.replace(/\.[^.]*$/, '');
  return stem === split || stem.startsWith(split + '-') || stem.startsWith(split + '_') || stem.startsWith(split + '.');
}

async function hubFiles(attr: DatasetAttr, deps: DataDeps): Promise<Array<{ path: string; bytes: Uint8Array }>> {
  const repo = attr.source;
  const where = { dataset: attr.name, file: `hub:${repo}` };
  if (!deps.fetchFile) throw new DataError(`is a Hub dataset (hf_hub_url "${repo}") but no Hub access was provided (deps.fetchFile)`, where);
  const fetch = deps.fetchFile;
  if (deps.listRepoFiles) {
    let files = (await deps.listRepoFiles(repo)).filter((f) => fileType(f) !== undefined && !f.split('/').some((p) => p.startsWith('.')));
    if (attr.folder) files = files.filter((f) => f.startsWith(attr.folder!.replace(/\/+$/, '') + '/'));
    if (attr.subset) {
      const sub = files.filter((f) => f.split('/').includes(attr.subset!) || f.startsWith(attr.subset + '/'));
      if (sub.length) files = sub;
    }
    const withSplit = files.filter((f) => splitMatches(f, attr.split));
    if (withSplit.length) files = withSplit;
    else if (attr.split !== 'train') files = [];
    if (!files.length) {
      throw new DataError(`no data files for split "${attr.split}"${attr.subset ? ` of subset "${attr.subset}"` : ''} in the Hub repo (supported: ${Object.keys(FILE_TYPES).join(', ')})`, where);
    }
    const types = new Set(files.map((f) => fileType(f)));
    if (types.size > 1) files = files.filter((f) => fileType(f) === 'parquet').length ? files.filter((f) => fileType(f) === 'parquet') : files;
    files.sort();
    const out = [];
    for (const f of files) out.push({ path: `hub:${repo}/${f}`, bytes: await readOrFail(() => fetch(repo, f), 'Hub file', { ...where, file: `hub:${repo}/${f}` }) });
    return out;
  }
  const s = attr.split;
  const pre = [attr.folder, attr.subset].filter(Boolean).join('/');
  const candidates = [`data/${s}-00000-of-00001.parquet`, `${s}-00000-of-00001.parquet`, `${s}.parquet`, `data/${s}.parquet`, `${s}.jsonl`, `${s}.json`, `data/${s}.jsonl`, `data/${s}.json`, `${s}.csv`].map((c) => (pre ? `${pre}/${c}` : c));
  for (const c of candidates) {
    try {
      return [{ path: `hub:${repo}/${c}`, bytes: await fetch(repo, c) }];
    } catch {
      /* try the next name */
    }
  }
  throw new DataError(`cannot find the data files of split "${s}" (tried ${candidates.join(', ')}); provide deps.listRepoFiles`, where);
}

export async function loadDataset(attr: DatasetAttr, config: DataConfig, deps: DataDeps, access: Access, datasetDir: string, seed: number, autodetect: boolean): Promise<LoadedDataset> {
  let blobs: Array<{ path: string; bytes: Uint8Array }> = [];
  if (attr.loadFrom === 'hf_hub') blobs = await hubFiles(attr, deps);
  else {
    const local = joinPath(datasetDir, attr.source);
    const entries = await access.listLocal(local).catch(() => null);
    if (entries) {
      const files = entries.filter((f) => !f.startsWith('.')).sort().map((f) => joinPath(local, f));
      if (!files.length) throw new DataError('the dataset folder is empty', { dataset: attr.name, file: local });
      const types = new Set(files.map(fileType));
      if (types.has(undefined)) {
        const bad = files.find((f) => fileType(f) === undefined)!;
        throw new DataError(`unsupported file type; allowed: ${Object.keys(FILE_TYPES).join(', ')}`, { dataset: attr.name, file: bad });
      }
      if (types.size > 1) throw new DataError(`all files of a dataset folder must have the same type, found ${[...types].join(', ')}`, { dataset: attr.name, file: local });
      for (const f of files) blobs.push({ path: f, bytes: await readOrFail(() => access.readLocal(f), 'the file', { dataset: attr.name, file: f }) });
    } else {
      if (fileType(local) === undefined) throw new DataError(`unsupported file type; allowed: ${Object.keys(FILE_TYPES).join(', ')}`, { dataset: attr.name, file: local });
      blobs.push({ path: local, bytes: await readOrFail(() => access.readLocal(local), 'the file', { dataset: attr.name, file: local }) });
    }
  }
  let rows: Row[] = [];
  let sources: RecordSource[] = [];
  const warnings: string[] = [];
  for (const b of blobs) {
    const f: LoadedFile = await parseDataFile(b.bytes, b.path);
    rows = rows.concat(f.rows);
    sources = sources.concat(f.sources);
    warnings.push(...f.warnings);
  }
  if (autodetect) attr = detectAttr(attr.name, attr.loadFrom, attr.source, rows[0], rows);
  const records = rows.length;
  // num_samples: sample (with repetition beyond the size), then max_samples: first N.
  let order = rows.map((_, i) => i);
  if (attr.numSamples !== undefined && rows.length) {
    const perm = permutation(rows.length, seed).slice(0, attr.numSamples);
    const r = rng(seed + 1);
    while (perm.length < attr.numSamples) perm.push(Math.floor(r() * rows.length));
    order = perm;
  }
  if (config.max_samples !== undefined && config.max_samples !== null) order = order.slice(0, Math.max(0, config.max_samples));
  const drops = new Map<string, DropCount>();
  const aligned: Aligned[] = [];
  const tokenized: TokenizedRecord[] = [];
  const pretok = rows.length > 0 && isTokenizedRow(rows[0]);
  for (const i of order) {
    const src = sources[i];
    if (pretok) {
      tokenized.push(convertTokenized(rows[i], attr, src));
      continue;
    }
    if (isTokenizedRow(rows[i])) throw new DataError('has input_ids but the first record of the file does not; a dataset is either all pre-tokenized or all text', { dataset: attr.name, file: src.file, line: src.line, index: src.index, field: 'input_ids' });
    const res = convertRecord(rows[i], attr, src);
    if ('drop' in res) addDrop(drops, res.drop, { file: src.file, line: src.line, index: src.index });
    else {
      if (res.ok.images) res.ok.images = await resolveImages(res.ok.images, attr.loadFrom === 'file' ? (config.media_dir ?? datasetDir) : null, access.readLocal, attr, src);
      aligned.push(res.ok);
    }
  }
  return { attr, files: blobs.map((b) => b.path), records, aligned, tokenized, drops, warnings };
}

export function checkStage(attr: DatasetAttr, stage: Stage, pretokenized: boolean): void {
  if (pretokenized) return;
  const pairwise = exampleKind(stage) === 'pairwise';
  if (pairwise && !attr.ranking) {
    throw new DataError(`stage "${stage}" needs a preference dataset ("ranking": true in dataset_info.json, with chosen/rejected columns)`, { dataset: attr.name });
  }
  if (!pairwise && attr.ranking) {
    throw new DataError(`is a preference dataset ("ranking": true); it needs stage rm, dpo, orpo or simpo, not "${stage}"`, { dataset: attr.name });
  }
  if (stage === 'kto' && !attr.columns.kto_tag) {
    throw new DataError('stage "kto" needs a kto_tag column (columns.kto_tag in dataset_info.json)', { dataset: attr.name });
  }
}

/** `dataset_info` given in the config itself (a LLaMA-Factory v1 data YAML read by the config loader). */
function inlineInfo(config: DataConfig): Record<string, Record<string, unknown>> | null {
  const v = config.dataset_info;
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw new DataError('dataset_info must be an object of dataset entries');
  return v as Record<string, Record<string, unknown>>;
}

export async function resolveAttrs(names: string[], config: DataConfig, deps: DataDeps, access: Access): Promise<Array<{ attr: DatasetAttr; autodetect: boolean }>> {
  const inline = inlineInfo(config);
  const dir = config.dataset_dir ?? 'data';
  const fromInline = (n: string) => (inline && Object.hasOwn(inline, n) ? { attr: attrFromInfo(n, inline[n]!, 'dataset_info'), autodetect: false } : null);
  if (dir === 'ONLINE') return names.map((n) => fromInline(n) ?? { attr: defaultAttr(n, 'hf_hub', n), autodetect: false });
  const infoPath = joinPath(dir, 'dataset_info.json');
  let info: Record<string, Record<string, unknown>> | undefined;
  let infoErr: string | undefined;
  try {
    const bytes = await access.readLocal(infoPath);
    info = parseDatasetInfo(new TextDecoder().decode(bytes), infoPath);
  } catch (e) {
    if (e instanceof DataError) throw e;
    infoErr = (e as Error).message;
  }
  return names.map((n) => {
    const own = fromInline(n);
    if (own) return own;
    if (info && n in info) return { attr: attrFromInfo(n, info[n], infoPath), autodetect: false };
    if (fileType(n) !== undefined) return { attr: defaultAttr(n, 'file', n), autodetect: true };
    if (info) {
      throw new DataError(`dataset "${n}" is not defined in dataset_info.json (defined: ${Object.keys(info).slice(0, 30).join(', ')}${Object.keys(info).length > 30 ? ', ...' : ''}); or give a file name such as ${n}.jsonl`, { file: infoPath });
    }
    throw new DataError(`dataset "${n}": cannot read ${infoPath} (${infoErr}); define the dataset there or give a data file name (json, jsonl, csv, parquet, txt)`, { file: infoPath });
  });
}
