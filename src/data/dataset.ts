/**
 * buildDataset: LLaMA-Factory's data pipeline (loader.py) over injected file access, so the same
 * code runs in Node and in the browser.
 *
 *   dataset names → dataset_info.json entries → files (local, or the Hub through deps.fetchFile)
 *   → records (num_samples, max_samples) → aligned conversations → concat → val split
 *   → per-stage processing (template, masking, cutoff, packing) → train/eval examples (+ stats)
 */
import { DataError, formatLocation, type DataErrorLocation } from './errors.ts';
import { attrFromInfo, defaultAttr, OPENAI_TAGS, parseDatasetInfo, type DatasetAttr } from './dataset-info.ts';
import { fileType, parseDataFile, FILE_TYPES, type LoadedFile, type RecordSource, type Row } from './formats.ts';
import { convertRecord, convertTokenized, isTokenizedRow, type Aligned, type TokenizedRecord } from './converter.ts';
import {
  encodeKto,
  encodePairwise,
  encodePretrainBatch,
  encodeSupervised,
  IGNORE_INDEX,
  packBatch,
  tokenizedToLm,
  type Example,
  type KtoExample,
  type LmExample,
  type PairwiseExample,
} from './processor.ts';
import { getTemplate, type ChatTemplate } from './templates.ts';
import type { Tokenizer } from './tokenizer.ts';

export type Stage = 'pt' | 'sft' | 'rm' | 'dpo' | 'orpo' | 'simpo' | 'kto';

/** LLaMA-Factory data keys (other keys of a training YAML are accepted and ignored). */
export interface DataConfig {
  stage?: Stage;
  dataset?: string | string[] | null;
  eval_dataset?: string | string[] | null;
  dataset_dir?: string;
  template?: string | null;
  cutoff_len?: number;
  train_on_prompt?: boolean;
  mask_history?: boolean;
  /** Default: true for pt, false otherwise (LLaMA-Factory). */
  packing?: boolean | null;
  neat_packing?: boolean;
  val_size?: number;
  max_samples?: number | null;
  seed?: number;
  streaming?: boolean;
  mix_strategy?: 'concat' | 'interleave_under' | 'interleave_over' | 'interleave_once' | string;
  interleave_probs?: string | number | null;
  tool_format?: string | null;
  default_system?: string | null;
  enable_thinking?: boolean | null;
  preserve_thinking?: boolean;
  /** Records per preprocessing batch: packing and KTO's KL pairing work per batch (default 1000). */
  preprocessing_batch_size?: number;
  /** Crucible: shuffle the train examples with `seed` (default true). */
  shuffle?: boolean;
  /**
   * Crucible (preview): tokenize only train examples [offset, offset + count) in file order; the
   * others are checked (so drops are counted) but not tokenized. stats.train.examples counts all.
   */
  window?: ExampleWindow;
  [key: string]: unknown;
}

export interface DataDeps {
  tokenizer: Tokenizer;
  /** Read a local (or dropped-in) file. Paths are dataset_dir-joined with '/'. */
  readFile(path: string): Promise<Uint8Array>;
  /** Entries of a directory, or null if `path` is not a directory (file_name may name a folder). */
  listFiles?(path: string): Promise<string[] | null>;
  /** Hub access for hf_hub_url datasets (src/hub provides it). */
  fetchFile?(repo: string, path: string): Promise<Uint8Array>;
  /** Files of a Hub dataset repo; without it, conventional file names are tried. */
  listRepoFiles?(repo: string): Promise<string[]>;
  /** Use this template instead of resolving `config.template`. */
  template?: ChatTemplate;
  /** Progress/warning sink. */
  log?(message: string): void;
}

export interface ExampleWindow {
  offset: number;
  count: number;
}

export interface DropCount {
  reason: string;
  count: number;
  /** Where the first such record is. */
  first: string;
}

export interface DatasetSourceStats {
  name: string;
  files: string[];
  records: number;
  used: number;
  pretokenized: boolean;
  dropped: DropCount[];
}

export interface SplitStats {
  /** Examples of the split (with a window: all of them, tokenized or not). */
  examples: number;
  /** Examples before packing. */
  sequences: number;
  tokens: number;
  learnedTokens: number;
  truncated: number;
  maxLength: number;
}

export interface DatasetStats {
  stage: Stage;
  kind: ExampleKind;
  template: string;
  cutoffLen: number;
  packing: boolean;
  neatPacking: boolean;
  datasets: DatasetSourceStats[];
  train: SplitStats;
  eval: SplitStats;
  warnings: string[];
}

export type ExampleKind = 'lm' | 'pairwise' | 'kto';

export interface BuiltDataset<E extends Example = Example> {
  kind: ExampleKind;
  train: E[];
  eval: E[];
  stats: DatasetStats;
  template: ChatTemplate;
}

const STAGES: Stage[] = ['pt', 'sft', 'rm', 'dpo', 'orpo', 'simpo', 'kto'];

export function exampleKind(stage: Stage): ExampleKind {
  if (stage === 'rm' || stage === 'dpo' || stage === 'orpo' || stage === 'simpo') return 'pairwise';
  if (stage === 'kto') return 'kto';
  return 'lm';
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness (deterministic; not numpy's generator, so splits differ from HF datasets')

export function rng(seed: number): () => number {
  let a = (seed >>> 0) ^ 0x9e3779b9;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function permutation(n: number, seed: number): number[] {
  const r = rng(seed);
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** A seeded shuffle (e.g. per epoch: shuffled(train, seed + epoch)). */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  return permutation(items.length, seed).map((i) => items[i]);
}

// ---------------------------------------------------------------------------------------------

function joinPath(dir: string, name: string): string {
  if (!dir || dir === '.' || name.startsWith('/')) return name;
  return dir.replace(/\/+$/, '') + '/' + name.replace(/^\.\//, '');
}

function splitNames(v: string | string[] | null | undefined): string[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : String(v).split(',');
  return list.map((s) => s.trim()).filter(Boolean);
}

interface LoadedDataset {
  attr: DatasetAttr;
  files: string[];
  records: number;
  aligned: Aligned[];
  tokenized: TokenizedRecord[];
  drops: Map<string, DropCount>;
  /** From reading the files (bytes that are not UTF-8). */
  warnings: string[];
}

function dropKey(reason: string): string {
  return reason.replace(/\d+/g, 'N');
}

function addDrop(drops: Map<string, DropCount>, reason: string, where: DataErrorLocation): void {
  const k = dropKey(reason);
  const d = drops.get(k);
  if (d) d.count++;
  else drops.set(k, { reason, count: 1, first: formatLocation(where).replace(/: $/, '') });
}

/** Guess the attributes of a data file that has no dataset_info.json entry. */
export function detectAttr(name: string, loadFrom: DatasetAttr['loadFrom'], source: string, first: Row | undefined): DatasetAttr {
  const attr = defaultAttr(name, loadFrom, source);
  if (!first) return attr;
  const has = (k: string) => k in first;
  const msgCol = has('messages') ? 'messages' : has('conversations') ? 'conversations' : undefined;
  if (msgCol) {
    const list = first[msgCol];
    const m0 = Array.isArray(list) && list.length ? (list[0] as Row) : undefined;
    const openai = !!m0 && typeof m0 === 'object' && 'role' in m0;
    attr.formatting = openai ? 'openai' : 'sharegpt';
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
  return attr;
}

interface Access {
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

async function loadDataset(attr: DatasetAttr, config: DataConfig, deps: DataDeps, access: Access, datasetDir: string, seed: number, autodetect: boolean): Promise<LoadedDataset> {
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
  if (autodetect) attr = detectAttr(attr.name, attr.loadFrom, attr.source, rows[0]);
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
    else aligned.push(res.ok);
  }
  return { attr, files: blobs.map((b) => b.path), records, aligned, tokenized, drops, warnings };
}

function checkStage(attr: DatasetAttr, stage: Stage, pretokenized: boolean): void {
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

async function resolveAttrs(names: string[], config: DataConfig, deps: DataDeps, access: Access): Promise<Array<{ attr: DatasetAttr; autodetect: boolean }>> {
  const dir = config.dataset_dir ?? 'data';
  if (dir === 'ONLINE') return names.map((n) => ({ attr: defaultAttr(n, 'hf_hub', n), autodetect: false }));
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
    if (info && n in info) return { attr: attrFromInfo(n, info[n], infoPath), autodetect: false };
    if (fileType(n) !== undefined) return { attr: defaultAttr(n, 'file', n), autodetect: true };
    if (info) {
      throw new DataError(`dataset "${n}" is not defined in dataset_info.json (defined: ${Object.keys(info).slice(0, 30).join(', ')}${Object.keys(info).length > 30 ? ', ...' : ''}); or give a file name such as ${n}.jsonl`, { file: infoPath });
    }
    throw new DataError(`dataset "${n}": cannot read ${infoPath} (${infoErr}); define the dataset there or give a data file name (json, jsonl, csv, parquet, txt)`, { file: infoPath });
  });
}

/**
 * HF datasets' interleave_datasets, as LLaMA-Factory's mix strategies use it: interleave_under stops
 * when one dataset is exhausted, interleave_over when all are (restarting the exhausted ones),
 * interleave_once when all are (without repeats). Without probabilities: round robin.
 * (Seeded, but not numpy's generator: the order differs from HF's.)
 */
export function interleave<T>(lists: T[][], mix: string, probs: number[] | undefined, seed: number): T[] {
  const n = lists.length;
  const pos = new Array<number>(n).fill(0);
  const done = new Array<boolean>(n).fill(false);
  const r = rng(seed);
  const out: T[] = [];
  const total = lists.reduce((s, l) => s + l.length, 0);
  if (lists.some((l) => l.length === 0)) {
    if (mix === 'interleave_under') return [];
  }
  let turn = 0;
  for (let guard = 0; guard < total * n * 4 + 16; guard++) {
    let i: number;
    if (probs) {
      const live = probs.map((p, k) => (mix === 'interleave_once' && done[k] ? 0 : p));
      const sum = live.reduce((a, b) => a + b, 0);
      if (sum <= 0) break;
      let x = r() * sum;
      i = 0;
      while (i < n - 1 && x >= live[i]) x -= live[i++];
    } else {
      i = turn++ % n;
      if (mix === 'interleave_once' && done[i]) {
        if (done.every(Boolean)) break;
        continue;
      }
    }
    const l = lists[i];
    if (!l.length) {
      done[i] = true;
      if (done.every(Boolean)) break;
      continue;
    }
    out.push(l[pos[i] % l.length]);
    pos[i]++;
    if (pos[i] >= l.length) {
      done[i] = true;
      if (mix === 'interleave_under' || done.every(Boolean)) break;
    }
  }
  return out;
}

function emptySplit(): SplitStats {
  return { examples: 0, sequences: 0, tokens: 0, learnedTokens: 0, truncated: 0, maxLength: 0 };
}

function countLm(s: SplitStats, e: { input_ids: number[]; labels: number[] }) {
  s.tokens += e.input_ids.length;
  for (const l of e.labels) if (l !== IGNORE_INDEX) s.learnedTokens++;
  s.maxLength = Math.max(s.maxLength, e.input_ids.length);
}

interface ProcessContext {
  stage: Stage;
  kind: ExampleKind;
  template: ChatTemplate;
  tok: Tokenizer;
  cutoffLen: number;
  packing: boolean;
  neat: boolean;
  packedLen: number;
  batchSize: number;
  trainOnPrompt: boolean;
  maskHistory: boolean;
  eosText: string;
}

type Item = { kind: 'aligned'; a: Aligned } | { kind: 'tok'; t: TokenizedRecord };

function itemLocation(it: Item): DataErrorLocation {
  const s = it.kind === 'aligned' ? it.a.source : it.t.source;
  return { dataset: it.kind === 'aligned' ? it.a.dataset : it.t.dataset, file: s.file, line: s.line, index: s.index };
}

function processItems(items: Item[], ctx: ProcessContext, drops: Map<string, Map<string, DropCount>>, window?: ExampleWindow): { examples: Example[]; stats: SplitStats } {
  const stats = emptySplit();
  const out: Example[] = [];
  // Counts the examples that survive; true for one outside the window (not tokenized).
  let survived = 0;
  const skip = (): boolean => {
    const i = survived++;
    return window !== undefined && (i < window.offset || i >= window.offset + window.count);
  };
  const drop = (it: Item, reason: string) => {
    const ds = it.kind === 'aligned' ? it.a.dataset : it.t.dataset;
    if (!drops.has(ds)) drops.set(ds, new Map());
    addDrop(drops.get(ds)!, reason, itemLocation(it));
  };
  const wrap = <T>(it: Item, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      if (e instanceof DataError) throw e;
      const loc = itemLocation(it);
      throw new DataError((e as Error).message, loc);
    }
  };
  for (let b = 0; b < items.length; b += ctx.batchSize) {
    const batch = items.slice(b, b + ctx.batchSize);
    if (ctx.stage === 'pt') {
      const texts: string[] = [];
      for (const it of batch) {
        if (skip()) continue;
        if (it.kind === 'tok') {
          const e = tokenizedToLm(it.t, ctx.cutoffLen);
          if (e.truncated) stats.truncated++;
          out.push({ input_ids: e.input_ids, labels: e.labels });
          countLm(stats, e);
          stats.sequences++;
          continue;
        }
        texts.push(it.a.prompt[0]?.content ?? '');
      }
      if (texts.length) {
        const r = encodePretrainBatch(ctx.tok, texts, { cutoffLen: ctx.cutoffLen, packing: ctx.packing, eosText: ctx.eosText });
        stats.truncated += r.truncated;
        stats.sequences += texts.length;
        for (const e of r.examples) {
          out.push(e);
          countLm(stats, e);
        }
      }
      continue;
    }
    if (ctx.kind === 'lm') {
      const seqs: Array<{ input_ids: number[]; labels: number[] }> = [];
      for (const it of batch) {
        let e: { input_ids: number[]; labels: number[]; truncated: boolean };
        if (it.kind === 'tok') {
          if (skip()) continue;
          e = tokenizedToLm(it.t, ctx.cutoffLen);
        } else {
          if (it.a.prompt.length % 2 !== 1 || it.a.response.length !== 1) {
            drop(it, it.a.response.length === 0 ? 'no response to learn (stage sft needs a response/output column or complete turns; for raw text use stage pt)' : `expected one response for sft, found ${it.a.response.length}`);
            continue;
          }
          if (skip()) continue;
          e = wrap(it, () => encodeSupervised(ctx.template, it.a, { cutoffLen: ctx.cutoffLen, trainOnPrompt: ctx.trainOnPrompt, maskHistory: ctx.maskHistory }));
        }
        if (e.truncated) stats.truncated++;
        seqs.push({ input_ids: e.input_ids, labels: e.labels });
      }
      stats.sequences += seqs.length;
      const examples: LmExample[] = ctx.packing ? packBatch(seqs, ctx.packedLen, padIdOf(ctx), ctx.neat) : seqs;
      for (const e of examples) {
        out.push(e);
        countLm(stats, e);
      }
      continue;
    }
    if (ctx.kind === 'pairwise') {
      for (const it of batch) {
        let ex: PairwiseExample & { truncated?: boolean };
        if (it.kind === 'tok') {
          if (!it.t.chosen || !it.t.rejected) {
            drop(it, 'pre-tokenized preference rows need chosen_input_ids and rejected_input_ids');
            continue;
          }
          if (skip()) continue;
          const side = (s: { input_ids: number[]; labels?: number[] }) => ({ input_ids: s.input_ids.slice(0, ctx.cutoffLen), labels: (s.labels ?? s.input_ids).slice(0, ctx.cutoffLen) });
          ex = { chosen: side(it.t.chosen), rejected: side(it.t.rejected), truncated: Math.max(it.t.chosen.input_ids.length, it.t.rejected.input_ids.length) > ctx.cutoffLen };
        } else {
          if (it.a.prompt.length % 2 !== 1 || it.a.response.length < 2) {
            drop(it, 'a preference record needs a prompt ending with a user turn and two responses (chosen, rejected)');
            continue;
          }
          if (skip()) continue;
          ex = wrap(it, () => encodePairwise(ctx.template, it.a, ctx.cutoffLen));
        }
        if (ex.truncated) stats.truncated++;
        const clean: PairwiseExample = { chosen: ex.chosen, rejected: ex.rejected };
        out.push(clean);
        stats.sequences++;
        countLm(stats, clean.chosen);
        countLm(stats, clean.rejected);
      }
      continue;
    }
    // kto: the KL completion of record i is the response of record i-1 in this batch (first ← last).
    const responses = batch.map((it) => (it.kind === 'aligned' ? it.a.response : []));
    const kl = [responses[responses.length - 1], ...responses.slice(0, -1)];
    batch.forEach((it, i) => {
      let ex: KtoExample & { truncated?: boolean };
      if (it.kind === 'tok') {
        if (it.t.kto_tag === undefined || !it.t.kl_input_ids) {
          drop(it, 'pre-tokenized KTO rows need kl_input_ids and kto_tag');
          return;
        }
        if (skip()) return;
        ex = {
          input_ids: it.t.input_ids.slice(0, ctx.cutoffLen),
          labels: (it.t.labels ?? it.t.input_ids).slice(0, ctx.cutoffLen),
          kl_input_ids: it.t.kl_input_ids.slice(0, ctx.cutoffLen),
          kl_labels: (it.t.kl_labels ?? it.t.kl_input_ids).slice(0, ctx.cutoffLen),
          kto_tag: it.t.kto_tag,
        };
      } else {
        if (it.a.prompt.length % 2 !== 1 || it.a.response.length < 2) {
          drop(it, it.a.ktoTag === undefined ? 'KTO record without a boolean kto_tag' : 'a KTO record needs a prompt ending with a user turn and a response');
          return;
        }
        if (kl[i].length < 2) {
          drop(it, 'its KL partner (the previous record) is not a valid KTO record');
          return;
        }
        if (skip()) return;
        ex = wrap(it, () => encodeKto(ctx.template, it.a, kl[i], ctx.cutoffLen));
      }
      if (ex.truncated) stats.truncated++;
      out.push({ input_ids: ex.input_ids, labels: ex.labels, kl_input_ids: ex.kl_input_ids, kl_labels: ex.kl_labels, kto_tag: ex.kto_tag });
      stats.sequences++;
      countLm(stats, ex);
    });
  }
  stats.examples = window ? survived : out.length;
  return { examples: out, stats };
}

/** pad_token, else the template's eos (LLaMA-Factory sets pad = eos after replacing eos). */
export function padIdFor(tok: Tokenizer, template: ChatTemplate): number {
  const pad = tok.padToken !== undefined ? tok.tokenToId(tok.padToken) : undefined;
  return pad ?? template.eosId;
}

function padIdOf(ctx: ProcessContext): number {
  return padIdFor(ctx.tok, ctx.template);
}

function explainEmpty(loaded: LoadedDataset[], procDrops: Map<string, Map<string, DropCount>>, ctx: ProcessContext, hint: string): string {
  const lines: string[] = [];
  for (const d of loaded) {
    const all = new Map(d.drops);
    for (const [k, v] of procDrops.get(d.attr.name) ?? []) {
      const cur = all.get(k);
      if (cur) cur.count += v.count;
      else all.set(k, { ...v });
    }
    const used = d.aligned.length + d.tokenized.length;
    lines.push(`  dataset "${d.attr.name}" (${d.files.join(', ') || d.attr.source}): ${d.records} records, ${used} converted`);
    for (const v of all.values()) lines.push(`    - ${v.count} dropped: ${v.reason} (first: ${v.first})`);
    if (d.records === 0) lines.push('    - the file has no records');
  }
  return `no training examples survive for stage "${ctx.stage}":\n${lines.join('\n')}${hint ? '\n' + hint : ''}`;
}

/**
 * Build the train and eval examples of a LLaMA-Factory data config.
 * Throws DataError for malformed files/records, unknown datasets, stage mismatches, and when no
 * example survives (with the reasons and where the first dropped record is).
 */
export async function buildDataset(config: DataConfig, deps: DataDeps): Promise<BuiltDataset> {
  const stage = (config.stage ?? 'sft') as Stage;
  if (!STAGES.includes(stage)) throw new DataError(`unknown stage "${stage}"; valid: ${STAGES.join(', ')}`);
  if (config.streaming) throw new DataError('streaming is not supported; remove `streaming: true`');
  const mix = config.mix_strategy ?? 'concat';
  if (!['concat', 'interleave_under', 'interleave_over', 'interleave_once'].includes(mix)) {
    throw new DataError(`unknown mix_strategy "${mix}"; valid: concat, interleave_under, interleave_over, interleave_once`);
  }
  let probs: number[] | undefined;
  if (config.interleave_probs !== undefined && config.interleave_probs !== null) {
    if (mix === 'concat') throw new DataError('`interleave_probs` is only valid for interleaved mixing');
    probs = String(config.interleave_probs).split(',').map((x) => Number(x.trim()));
    if (probs.some((p) => !(p >= 0)) || !(probs.reduce((a, b) => a + b, 0) > 0)) throw new DataError(`\`interleave_probs\` must be non-negative numbers, got ${JSON.stringify(config.interleave_probs)}`);
  }
  const trainOnPrompt = config.train_on_prompt === true;
  const maskHistory = config.mask_history === true;
  if (trainOnPrompt && maskHistory) throw new DataError('`mask_history` is incompatible with `train_on_prompt`');
  if (stage !== 'sft' && (trainOnPrompt || maskHistory)) throw new DataError('`train_on_prompt` and `mask_history` apply to stage sft only');
  if (stage !== 'sft' && config.neat_packing) throw new DataError('`neat_packing` applies to stage sft only');
  const names = splitNames(config.dataset);
  const evalNames = splitNames(config.eval_dataset);
  if (!names.length) throw new DataError('no `dataset` given');
  const valSize = config.val_size ?? 0;
  if (valSize < 0) throw new DataError('`val_size` must be >= 0');
  if (evalNames.length && valSize > 1e-6) throw new DataError('cannot set `val_size` together with `eval_dataset`');
  const seed = config.seed ?? 42;
  const neat = config.neat_packing === true;
  const explicitPacking = config.packing === true || neat;
  const packing = neat || (config.packing ?? stage === 'pt') === true;
  const cutoff0 = config.cutoff_len ?? 2048;
  if (!Number.isInteger(cutoff0) || cutoff0 < 2) throw new DataError('`cutoff_len` must be an integer >= 2');
  // LLaMA-Factory lowers cutoff_len by one when packing is set explicitly; packed rows are cutoff_len+1.
  const cutoffLen = explicitPacking ? cutoff0 - 1 : cutoff0;
  const tok = deps.tokenizer;
  const template =
    deps.template ??
    getTemplate(config.template ?? undefined, tok, {
      enableThinking: config.enable_thinking === false ? false : true,
      preserveThinking: config.preserve_thinking === true,
      defaultSystem: config.default_system ?? undefined,
      toolFormat: config.tool_format ?? undefined,
    });
  const warnings: string[] = [];
  const log = (m: string) => {
    warnings.push(m);
    deps.log?.(m);
  };
  for (const k of ['tokenized_path', 'eval_on_each_dataset', 'media_dir']) {
    if (config[k] !== undefined && config[k] !== null && config[k] !== false) log(`\`${k}\` is not supported and is ignored`);
  }
  const access: Access = {
    readLocal: deps.readFile,
    listLocal: async (p) => (deps.listFiles ? deps.listFiles(p) : null),
  };
  const dir = config.dataset_dir ?? 'data';
  if (dir.startsWith('REMOTE:')) {
    const repo = dir.slice(7);
    if (!deps.fetchFile) throw new DataError(`dataset_dir "${dir}" needs Hub access (deps.fetchFile)`);
    const f = deps.fetchFile;
    access.readLocal = (p) => f(repo, p.slice(dir.length + 1));
    access.listLocal = async () => null;
  }

  const loadAll = async (list: string[]) => {
    const out: LoadedDataset[] = [];
    for (const { attr, autodetect } of await resolveAttrs(list, config, deps, access)) {
      const d = await loadDataset(attr, config, deps, access, dir, seed, autodetect);
      for (const w of d.warnings) log(w);
      checkStage(d.attr, stage, d.tokenized.length > 0);
      if (d.tokenized.length) log(`dataset "${d.attr.name}" is pre-tokenized: used as is (no template)`);
      out.push(d);
    }
    return out;
  };
  const loaded = await loadAll(names);
  const loadedEval = evalNames.length ? await loadAll(evalNames) : [];

  const toItems = (ds: LoadedDataset[]): Item[] => {
    const lists = ds.map((d) => [...d.aligned.map((a): Item => ({ kind: 'aligned', a })), ...d.tokenized.map((t): Item => ({ kind: 'tok', t }))]);
    if (mix === 'concat' || lists.length < 2) return lists.flat();
    if (probs && probs.length !== lists.length) throw new DataError(`\`interleave_probs\` has ${probs.length} values for ${lists.length} datasets`);
    return interleave(lists, mix, probs, seed);
  };
  let trainItems = toItems(loaded);
  let evalItems = toItems(loadedEval);
  if (valSize > 1e-6) {
    const n = trainItems.length;
    const nTest = valSize >= 1 ? Math.trunc(valSize) : Math.ceil(valSize * n);
    if (nTest >= n) throw new DataError(`val_size ${valSize} leaves no training records (${n} records in total)`);
    const perm = permutation(n, seed);
    const testIdx = new Set(perm.slice(n - nTest));
    evalItems = perm.slice(n - nTest).map((i) => trainItems[i]);
    trainItems = trainItems.filter((_, i) => !testIdx.has(i));
  }

  // Pretraining appends eos to every document: LLaMA-Factory uses the tokenizer's eos after the
  // template replaced it (<|end_of_text|> for llama3); without a template, the tokenizer's own eos.
  const eosToken =
    stage === 'pt' && config.template === 'llama3'
      ? '<|end_of_text|>'
      : config.template || deps.template
        ? (tok.idToToken(template.eosId) ?? '')
        : (tok.eosToken ?? tok.idToToken(template.eosId) ?? '');
  const ctx: ProcessContext = {
    stage,
    kind: exampleKind(stage),
    template,
    tok,
    cutoffLen,
    packing: packing && (stage === 'pt' || stage === 'sft'),
    neat,
    packedLen: cutoffLen + 1,
    batchSize: config.preprocessing_batch_size ?? 1000,
    trainOnPrompt,
    maskHistory,
    eosText: eosToken,
  };
  if (stage === 'pt') ctx.packedLen = cutoffLen;
  const procDrops = new Map<string, Map<string, DropCount>>();
  const window = config.window;
  const train = processItems(trainItems, ctx, procDrops, window);
  const evalRes = processItems(evalItems, ctx, procDrops);

  if (train.stats.examples === 0) {
    let hint = '';
    if (stage === 'pt' && ctx.packing && train.stats.sequences > 0) hint = `hint: with packing, pretraining text is concatenated and cut into blocks of cutoff_len (${cutoffLen}) tokens; there is less text than one block — lower cutoff_len or set packing: false`;
    throw new DataError(explainEmpty(loaded, procDrops, ctx, hint));
  }
  // With a window these look at a few examples only: a training run makes them on the whole set.
  if (!window && ctx.kind !== 'pairwise' && train.stats.learnedTokens === 0) {
    throw new DataError(`no training example has a token to learn (all labels are -100): cutoff_len ${cutoff0} leaves no room for the responses, or the responses are empty. ${train.stats.truncated} of ${train.stats.sequences} examples were truncated.`);
  }
  if (!window && ctx.kind === 'kto') {
    const pos = train.examples.filter((e) => (e as KtoExample).kto_tag).length;
    if (pos === 0 || pos === train.examples.length) log('the KTO dataset has only one preference type (all desirable or all undesirable)');
  }
  const trainExamples = config.shuffle === false ? train.examples : shuffled(train.examples, seed);

  const dsStats: DatasetSourceStats[] = [...loaded, ...loadedEval].map((d) => {
    const all = new Map(d.drops);
    for (const [k, v] of procDrops.get(d.attr.name) ?? []) {
      const cur = all.get(k);
      if (cur) cur.count += v.count;
      else all.set(k, { ...v });
    }
    const dropped = [...all.values()];
    const nd = dropped.reduce((s, x) => s + x.count, 0);
    if (nd) log(`dataset "${d.attr.name}": dropped ${nd} of ${d.records} records (${dropped.map((x) => `${x.count}: ${x.reason}`).join('; ')})`);
    return { name: d.attr.name, files: d.files, records: d.records, used: d.aligned.length + d.tokenized.length - (procDrops.get(d.attr.name) ? [...procDrops.get(d.attr.name)!.values()].reduce((s, x) => s + x.count, 0) : 0), pretokenized: d.tokenized.length > 0, dropped };
  });
  if (train.stats.truncated) log(`${train.stats.truncated} ${window ? `of the ${train.examples.length} examples shown were` : 'training examples were'} truncated to cutoff_len ${cutoff0}`);
  return {
    kind: ctx.kind,
    train: trainExamples,
    eval: evalRes.examples,
    template,
    stats: {
      stage,
      kind: ctx.kind,
      template: template.name,
      cutoffLen: cutoff0,
      packing: ctx.packing,
      neatPacking: neat,
      datasets: dsStats,
      train: train.stats,
      eval: evalRes.stats,
      warnings,
    },
  };
}
