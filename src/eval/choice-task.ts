// Multiple-choice benchmark folders in LLaMA-Factory's `eval` layout (MMLU, CMMLU, C-Eval):
// `<task_dir>/<task>/mapping.json` ({subject: {name, category}}) and per subject a file per
// split, found in any of the layouts those benchmarks ship (unzipped):
//   MMLU    data/{dev,val,test}/<subject>_<split>.csv   no header: question,A,B,C,D,answer
//   C-Eval  {dev,val,test}/<subject>_<split>.csv        header: id,question,A,B,C,D,answer,...
//   CMMLU   {dev,test}/<subject>.csv                    header: ,Question,A,B,C,D,Answer
//   JSON    {dev,val,test}/<subject>[_<split>].json(l)  records with question, A-D, answer
// The task name is "<benchmark>_<split>" (mmlu_test, ceval_validation, cmmlu_test); few-shot
// exemplars come from the dev ("train") split. Cells are text: pandas, which LLaMA-Factory reads
// the CSVs with, turns an empty cell into "nan" (done here too) and an all-numeric column into
// numbers ("1.50" would print as 1.5; not done here).

import { DataError, parseDataFile } from '../data';

export const CHOICES = ['A', 'B', 'C', 'D'] as const;
/** LLaMA-Factory's SUBJECTS: the categories results are grouped in, "Average" over all questions. */
export const CATEGORIES = ['Average', 'STEM', 'Social Sciences', 'Humanities', 'Other'] as const;

export interface ChoiceQuestion {
  question: string;
  /** The options the record has, in A-D order. */
  choices: { letter: string; text: string }[];
  /** The right letter ("" where the split has no answers, as C-Eval's test split). */
  answer: string;
}

export interface Subject {
  id: string;
  /** The name the prompt uses ("abstract algebra"). */
  name: string;
  category: string;
  dev: ChoiceQuestion[];
  questions: ChoiceQuestion[];
}

export interface ChoiceTask {
  benchmark: string;
  split: string;
  subjects: Subject[];
}

/** Reads a file under the task folder (a path joined with '/'); null when it does not exist. */
export type TaskReader = (path: string) => Promise<Uint8Array | null>;

const SPLIT_FOLDERS: Record<string, string> = { train: 'dev', validation: 'val', test: 'test' };

/** Loads `<benchmark>_<split>` from the task folder; `needDev`: the few-shot split must exist. */
export async function loadChoiceTask(task: string, read: TaskReader, needDev: boolean): Promise<ChoiceTask> {
  const [benchmark, split] = task.split('_');
  if (!benchmark || !split) throw new DataError(`task "${task}" must be <benchmark>_<split>, e.g. mmlu_test, ceval_validation, cmmlu_test`);
  const folder = SPLIT_FOLDERS[split];
  if (!folder) throw new DataError(`task "${task}": unknown split "${split}"; valid: ${Object.keys(SPLIT_FOLDERS).join(', ')}`);
  const mappingPath = `${benchmark}/mapping.json`;
  const bytes = await read(mappingPath);
  if (!bytes) throw new DataError(`${mappingPath} not found in task_dir: a task folder needs mapping.json ({"<subject>": {"name": ..., "category": ...}}) and the unzipped dev/test files`);
  let mapping: unknown;
  try {
    mapping = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new DataError(`malformed JSON: ${(e as Error).message}`, { file: mappingPath });
  }
  if (!mapping || typeof mapping !== 'object' || Array.isArray(mapping)) throw new DataError('expected an object of subjects', { file: mappingPath });
  const subjects: Subject[] = [];
  for (const [id, info] of Object.entries(mapping as Record<string, unknown>)) {
    const { name, category } = (info ?? {}) as { name?: unknown; category?: unknown };
    if (typeof name !== 'string' || typeof category !== 'string') throw new DataError(`subject "${id}" needs a string "name" and "category"`, { file: mappingPath });
    if (!(CATEGORIES as readonly string[]).includes(category) || category === 'Average') {
      throw new DataError(`subject "${id}": category "${category}" is not one of ${CATEGORIES.slice(1).join(', ')}`, { file: mappingPath });
    }
    const questions = await readSplit(read, benchmark, id, folder);
    if (!questions) throw new DataError(`subject "${id}": no ${split} file (tried ${candidates(benchmark, id, folder).map((c) => c.path).join(', ')})`);
    const dev = (await readSplit(read, benchmark, id, 'dev')) ?? [];
    if (needDev && dev.length === 0) throw new DataError(`subject "${id}": n_shot needs dev examples, and none were found (tried ${candidates(benchmark, id, 'dev').map((c) => c.path).join(', ')})`);
    subjects.push({ id, name, category, dev, questions });
  }
  if (subjects.length === 0) throw new DataError('mapping.json lists no subjects', { file: mappingPath });
  return { benchmark, split, subjects };
}

interface Candidate {
  path: string;
  /** MMLU's CSVs have no header row. */
  header: boolean;
}

function candidates(benchmark: string, subject: string, folder: string): Candidate[] {
  const base = `${benchmark}/${folder}/${subject}`;
  return [
    { path: `${benchmark}/data/${folder}/${subject}_${folder}.csv`, header: false },
    { path: `${base}_${folder}.csv`, header: true },
    { path: `${base}.csv`, header: true },
    { path: `${base}_${folder}.json`, header: true },
    { path: `${base}.json`, header: true },
    { path: `${base}.jsonl`, header: true },
  ];
}

async function readSplit(read: TaskReader, benchmark: string, subject: string, folder: string): Promise<ChoiceQuestion[] | null> {
  for (const c of candidates(benchmark, subject, folder)) {
    const bytes = await read(c.path);
    if (!bytes) continue;
    const data = c.header ? bytes : concat(new TextEncoder().encode('question,A,B,C,D,answer\n'), bytes);
    const csv = c.path.endsWith('.csv');
    const { rows, sources } = await parseDataFile(data, c.path);
    return rows.map((row, i) => {
      const loc = { file: c.path, index: i, ...(sources[i]?.line !== undefined ? { line: sources[i].line - (c.header ? 0 : 1) } : {}) };
      const question = row.question ?? row.Question;
      if (question === undefined) throw new DataError('no "question" column', loc);
      const answer = row.answer ?? row.Answer;
      const choices = CHOICES.filter((ch) => ch in row).map((ch) => ({ letter: ch, text: cellText(row[ch], csv) }));
      if (choices.length === 0) throw new DataError('no choice columns (A, B, C, D)', loc);
      return { question: cellText(question, csv), choices, answer: answer === undefined || answer === null ? '' : String(answer) };
    });
  }
  return null;
}

/** A cell as Python's str.format prints it: pandas' NaN for an empty CSV cell, None for a JSON null. */
function cellText(v: unknown, csv: boolean): string {
  if (v === null || v === undefined) return csv ? 'nan' : 'None';
  return typeof v === 'string' ? v : typeof v === 'boolean' ? (v ? 'True' : 'False') : String(v);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
