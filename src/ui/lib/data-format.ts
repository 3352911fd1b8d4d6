// The app's side of dataset formats (src/data/describe.ts says what a dataset holds): the
// stages each kind of data trains, the user's format choice for an upload and the
// dataset_info.json entry it becomes. Pure functions: the page and the tests share them.

import { kindOf, type DataFormat, type DataKind, type Formatting } from '../../data/describe';

export type AppStage = 'pt' | 'sft' | 'dpo' | 'kto' | 'rm' | 'ppo';

/** The user's format for an upload, replacing the detected one. */
export interface FormatChoice {
  formatting: Formatting;
  kind: DataKind;
}

export const FORMATTINGS: Formatting[] = ['alpaca', 'sharegpt', 'openai'];

export const KIND_LABELS: Record<DataKind, string> = {
  lm: 'supervised (prompt, response)',
  pairwise: 'preference (prompt, chosen, rejected)',
  kto: 'KTO (prompt, response, desirable tag)',
};

/** The stages each kind of data trains, the first being the one to switch to. */
const STAGES_FOR: Record<DataKind, AppStage[]> = { lm: ['sft', 'pt', 'ppo'], pairwise: ['dpo', 'rm'], kto: ['kto'] };

export const stageFits = (stage: unknown, kind: DataKind): boolean => STAGES_FOR[kind].includes(stage as AppStage);
export const stageFor = (kind: DataKind): AppStage => STAGES_FOR[kind][0]!;

export function formatLabel(f: Pick<DataFormat, 'formatting' | 'kind'>): string {
  return `${f.formatting}, ${KIND_LABELS[f.kind]}`;
}

const ALPACA_COLUMNS = { prompt: 'instruction', query: 'input', response: 'output' };
const SHAREGPT_COLUMNS = { messages: 'conversations' };
const KIND_COLUMNS = ['chosen', 'rejected', 'kto_tag'];

/**
 * The dataset_info.json entry that reads `file` with the chosen format. Columns and message tags
 * come from the detected format when both are message formats (or both alpaca); otherwise from
 * LLaMA-Factory's defaults for the chosen formatting.
 */
export function infoEntry(file: string, detected: DataFormat, choice: FormatChoice): Record<string, unknown> {
  const messages = (f: Formatting) => f !== 'alpaca';
  const sameShape = messages(detected.formatting) === messages(choice.formatting);
  const base = sameShape ? detected.columns : messages(choice.formatting) ? SHAREGPT_COLUMNS : ALPACA_COLUMNS;
  const columns: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (!KIND_COLUMNS.includes(k)) columns[k] = v;
  if (choice.kind === 'pairwise') {
    columns.chosen = detected.columns.chosen ?? 'chosen';
    columns.rejected = detected.columns.rejected ?? 'rejected';
  }
  if (choice.kind === 'kto') columns.kto_tag = detected.columns.kto_tag ?? 'kto_tag';
  return {
    file_name: file,
    formatting: choice.formatting,
    ...(choice.kind === 'pairwise' ? { ranking: true } : {}),
    columns,
    ...(sameShape && messages(choice.formatting) ? { tags: { ...detected.tags } } : {}),
  };
}

/** Upload files with `entry` as dataset `name` of their dataset_info.json (added, or merged into an uploaded one). */
export function withInfoEntry(files: Record<string, Uint8Array>, name: string, entry: Record<string, unknown>): Record<string, Uint8Array> {
  const own = files['dataset_info.json'];
  const info = own ? (JSON.parse(new TextDecoder().decode(own)) as Record<string, unknown>) : {};
  return { ...files, 'dataset_info.json': new TextEncoder().encode(JSON.stringify({ ...info, [name]: entry }, null, 2)) };
}

/**
 * The dataset an upload trains: the entry of an uploaded dataset_info.json whose file_name is one
 * of the uploaded files, else the first data file (its format then detected).
 */
export function uploadDataset(names: readonly string[], info: Record<string, { file_name?: unknown }> | null): string {
  const data = names.filter((n) => n !== 'dataset_info.json');
  const entry = info && Object.entries(info).find(([, e]) => typeof e?.file_name === 'string' && data.includes(e.file_name));
  return entry ? entry[0] : (data[0] ?? names[0] ?? '');
}

/** The demo dataset for a stage: the current one when it fits, else the first that does. */
export function demoDatasetFor(stage: unknown, info: Record<string, { ranking?: unknown; columns?: { kto_tag?: unknown } }>, current: string): string {
  const fits = (name: string) => !!info[name] && stageFits(stage, kindOf(info[name]!));
  if (fits(current)) return current;
  return Object.keys(info).find(fits) ?? current;
}
