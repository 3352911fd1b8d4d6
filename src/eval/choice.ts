// `crucible eval`: LLaMA-Factory's multiple-choice evaluation (eval/evaluator.py). Each question
// becomes a conversation of n_shot dev exemplars (user: question + options + "Answer:",
// assistant: the letter) and the question itself, the first user turn prefixed with the
// language's instruction; the chat template encodes it as one turn, and the model's choice is
// the letter among A/B/C/D whose token has the largest logit after the prompt (LLaMA-Factory takes
// the argmax of their softmax: the same letter, the first on ties). Accuracy is reported per
// category (LLaMA-Factory's results.log) and per subject; results.json holds every answer.
//
// Differences from LLaMA-Factory, by necessity: the exemplars are a seeded shuffle of the dev
// split by Crucible's generator (LLaMA-Factory shuffles with datasets' numpy-seeded one, so the
// exemplars and their order differ); rows of a batch are right-padded like LLaMA-Factory's.

import type { ChatTemplate, Message, Tokenizer } from '../data';
import { permutation } from '../data';
import type { Tensor } from '../gpu/tensor';
import { logitsForRows } from '../kernels/loss';
import { forwardBackward, Workspace } from '../model/forward';
import { contextLength } from '../model/generate';
import type { Model } from '../model/model';
import { CATEGORIES, CHOICES, type ChoiceQuestion, type ChoiceTask, type Subject } from './choice-task';
import type { OutputFolder } from './predict';
import { pyRound } from './python-float';

/** LLaMA-Factory's eval templates (eval/template.py), by `lang`. */
export const EVAL_TEMPLATES = {
  en: { system: 'The following are multiple choice questions (with answers) about {subject}.\n\n', choice: '\n{choice}. {content}', answer: '\nAnswer:' },
  zh: { system: '以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n', choice: '\n{choice}. {content}', answer: '\n答案：' },
} as const;
export type EvalLang = keyof typeof EVAL_TEMPLATES;

export interface ChoiceOptions {
  lang: EvalLang;
  nShot: number;
  /** Questions per forward pass (LLaMA-Factory's batch_size). */
  batchSize: number;
  seed: number;
}

export interface ChoiceHooks {
  onSubject?: (subject: Subject, index: number, total: number) => void;
  signal?: AbortSignal;
}

export interface SubjectResult {
  id: string;
  name: string;
  category: string;
  /** The chosen letter per question. */
  predictions: string[];
  correct: boolean[];
  /** The logits of A, B, C, D after each question's prompt. */
  choiceLogits: number[][];
  accuracy: number;
}

export interface CategoryResult {
  name: (typeof CATEGORIES)[number];
  questions: number;
  /** Percent, as LLaMA-Factory prints it (100 * mean). */
  accuracy: number;
}

export interface ChoiceResult {
  subjects: SubjectResult[];
  /** Categories with questions, in LLaMA-Factory's order (Average first). */
  categories: CategoryResult[];
  /** results.log's text: one "{category:>15}: {accuracy:.2f}" line per category. */
  scoreInfo: string;
}

/** A question as LLaMA-Factory's EvalTemplate parses it: prompt text and the answer. */
function parseExample(t: (typeof EVAL_TEMPLATES)[EvalLang], q: ChoiceQuestion): [string, string] {
  const options = q.choices.map((c) => t.choice.replace('{choice}', c.letter).replace('{content}', c.text));
  return [[q.question, ...options, t.answer].join(''), q.answer];
}

/** The messages of one question with its exemplars (format_example). */
export function choiceMessages(lang: EvalLang, target: ChoiceQuestion, support: readonly ChoiceQuestion[], subjectName: string): Message[] {
  const t = EVAL_TEMPLATES[lang];
  const messages: Message[] = [];
  for (const q of [...support, target]) {
    const [prompt, response] = parseExample(t, q);
    messages.push({ role: 'user', content: prompt }, { role: 'assistant', content: response });
  }
  messages[0] = { role: 'user', content: t.system.replace('{subject}', subjectName) + messages[0]!.content };
  return messages;
}

/** The token id of each answer letter: the last id of encoding the bare letter (as LLaMA-Factory). */
export function choiceTokenIds(tokenizer: Tokenizer): number[] {
  return CHOICES.map((ch) => {
    const ids = tokenizer.encode(ch);
    if (ids.length === 0) throw new Error(`the tokenizer encodes the answer letter "${ch}" as nothing`);
    return ids[ids.length - 1]!;
  });
}

/** The index of the largest value, the first on ties (torch.argmax). */
export function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

export async function evaluateChoices(model: Model, tokenizer: Tokenizer, template: ChatTemplate, task: ChoiceTask, options: ChoiceOptions, hooks: ChoiceHooks = {}, out?: OutputFolder): Promise<ChoiceResult> {
  if (!(options.batchSize >= 1)) throw new Error(`batch_size must be at least 1, got ${options.batchSize}`);
  if (!(options.nShot >= 0)) throw new Error(`n_shot must be 0 or more, got ${options.nShot}`);
  const letters = choiceTokenIds(tokenizer);
  const scorer = new LastLogits(model, tokenizer.padId ?? 0);
  const subjects: SubjectResult[] = [];
  let drawn = 0;
  try {
    for (const [si, subject] of task.subjects.entries()) {
      hooks.onSubject?.(subject, si, task.subjects.length);
      const prompts = subject.questions.map((q, qi) => {
        const order = permutation(subject.dev.length, options.seed * 1_000_003 + drawn++);
        const support = order.slice(0, Math.min(options.nShot, subject.dev.length)).map((i) => subject.dev[i]!);
        const ids = template.encodeOneTurn({ messages: choiceMessages(options.lang, q, support, subject.name) }).prompt;
        if (ids.length === 0) throw new Error(`subject "${subject.id}", question ${qi}: the template gives an empty prompt`);
        return ids;
      });
      const choiceLogits: number[][] = [];
      for (let b = 0; b < prompts.length; b += options.batchSize) {
        hooks.signal?.throwIfAborted();
        const rows = await scorer.lastRows(prompts.slice(b, b + options.batchSize), `subject "${subject.id}", question ${b}`);
        for (const row of rows) choiceLogits.push(letters.map((id) => row[id]!));
      }
      const predictions = choiceLogits.map((l) => CHOICES[argmax(l)]!);
      const correct = predictions.map((p, i) => p === subject.questions[i]!.answer);
      subjects.push({ id: subject.id, name: subject.name, category: subject.category, predictions, correct, choiceLogits, accuracy: mean(correct) });
    }
  } finally {
    scorer.release();
  }
  const categories = categoryAccuracy(subjects);
  const scoreInfo = categories.map((c) => `${c.name.padStart(15)}: ${pyRound(c.accuracy, 2).toFixed(2)}`).join('\n');
  const result = { subjects, categories, scoreInfo };
  if (out) await writeChoiceFiles(out, result);
  return result;
}

/** LLaMA-Factory's category_corrects: every question counts once in its category and in Average. */
export function categoryAccuracy(subjects: readonly SubjectResult[]): CategoryResult[] {
  return CATEGORIES.flatMap((name) => {
    const correct = subjects.filter((s) => name === 'Average' || s.category === name).flatMap((s) => s.correct);
    return correct.length ? [{ name, questions: correct.length, accuracy: 100 * mean(correct) }] : [];
  });
}

/** results.json (json.dump(results, indent=2): {subject: {"0": "A", ...}}) and results.log. */
export async function writeChoiceFiles(out: OutputFolder, result: ChoiceResult): Promise<void> {
  const results = Object.fromEntries(result.subjects.map((s) => [s.id, Object.fromEntries(s.predictions.map((p, i) => [String(i), p]))]));
  await out.write('results.json', asciiJson(results));
  await out.write('results.log', result.scoreInfo);
}

/** json.dump with indent=2 and ensure_ascii (non-ASCII as \uXXXX UTF-16 escapes). */
function asciiJson(v: unknown): string {
  return JSON.stringify(v, null, 2).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function mean(flags: readonly boolean[]): number {
  return flags.length ? flags.filter(Boolean).length / flags.length : NaN;
}

/**
 * The logits after the last token of each prompt: prompts of a batch are right-padded to one
 * length (causal attention keeps the padding out of the real positions), run forward, and the
 * lm_head is applied to each row's last real position only.
 */
class LastLogits {
  private ws: Workspace | null = null;
  private row: Tensor | null = null;
  private rows: Tensor | null = null;

  constructor(private readonly model: Model, private readonly padId: number) {}

  async lastRows(prompts: readonly (readonly number[])[], where: string): Promise<Float32Array[]> {
    const context = contextLength(this.model);
    const longest = Math.max(...prompts.map((p) => p.length));
    if (longest > context) throw new Error(`${where}: a prompt of ${longest} tokens is longer than the model's context of ${context}; lower n_shot`);
    const ws = this.workspace(prompts.length, Math.min(context, Math.ceil(longest / 64) * 64));
    const { B: rowsHeld, S } = ws;
    const B = prompts.length;
    const ids = new Int32Array(rowsHeld * S).fill(this.padId);
    prompts.forEach((p, b) => ids.set(p, b * S));
    ws.load({ B: rowsHeld, S, ids, labels: new Int32Array(rowsHeld * S).fill(-100), positions: Int32Array.from({ length: rowsHeld * S }, (_, i) => i % S) });
    forwardBackward(ws, { backward: false, gradScale: 0, head: () => {} });
    const V = this.model.spec.vocab;
    const gpu = this.model.gpu;
    this.row ??= gpu.tensor([1, V], 'f32', 'lastLogits');
    if (!this.rows || this.rows.shape[0]! < B) {
      if (this.rows) gpu.release(this.rows);
      this.rows = gpu.tensor([B, V], 'f32', 'lastLogitsBatch');
    }
    const softcap = this.model.spec.finalSoftcap;
    // one row at a time into a [1, V] tensor, gathered into [B, V]: one read for the batch
    for (const [b, p] of prompts.entries()) {
      logitsForRows(gpu, ws.final, this.model.lmHead.weight, this.row, { row: b * S + p.length - 1, rows: 1, ...(softcap ? { softcap } : {}) });
      gpu.copy(this.row, this.rows, V * 4, 0, b * V * 4);
    }
    const all = await gpu.readF32(this.rows);
    return prompts.map((_, b) => all.slice(b * V, (b + 1) * V));
  }

  /**
   * One workspace, kept while batches fit it (shorter prompts are padded further, fewer rows are
   * padded with whole padding rows) and replaced by a larger one when a batch needs it: lengths
   * are rounded up to 64, so a task allocates a few shapes at most.
   */
  private workspace(B: number, S: number): Workspace {
    if (this.ws && this.ws.B >= B && this.ws.S >= S) return this.ws;
    this.ws?.release();
    this.ws = new Workspace(this.model, Math.max(B, this.ws?.B ?? 0), Math.max(S, this.ws?.S ?? 0), true);
    return this.ws;
  }

  release(): void {
    this.ws?.release();
    for (const t of [this.row, this.rows]) if (t) this.model.gpu.release(t);
  }
}
