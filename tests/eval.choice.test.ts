// `crucible eval`'s job: a multiple-choice task folder in LLaMA-Factory's layouts (MMLU, C-Eval,
// CMMLU CSVs and JSON, tests/fixtures/eval-tasks), the n-shot prompt as LLaMA-Factory's eval
// template builds it, the choice by the answer letters' logits, and the accuracies, checked
// against a CPU recomputation from the same logits and the logits against an unpadded forward.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getTemplate } from '../src/data';
import { loadTokenizerFromDir } from '../src/data/node';
import { argmax, choiceMessages, choiceTokenIds, evaluateChoices } from '../src/eval/choice';
import { loadChoiceTask } from '../src/eval/choice-task';
import { diskFolder, diskTaskReader } from '../src/eval/folders-node';
import { dirFiles } from '../src/model/files-node';
import { fullLogits, Workspace } from '../src/model/forward';
import { Model } from '../src/model/model';
import { testGpu } from './helpers/gpu';

// the demo model: its 256-token context holds a two-shot prompt (the tiny-chat fixture's 128 do not)
const MODEL = join(import.meta.dirname, '../public/demo/model');
const TASKS = join(import.meta.dirname, 'fixtures/eval-tasks');

describe('task folders', () => {
  it('reads MMLU, C-Eval, CMMLU and JSON layouts, subjects in mapping.json order', async () => {
    const task = await loadChoiceTask('tinybench_test', diskTaskReader(TASKS), true);
    expect(task.subjects.map((s) => [s.id, s.category, s.dev.length, s.questions.length])).toEqual([
      ['arithmetic', 'STEM', 3, 5],
      ['world_capitals', 'Social Sciences', 2, 3],
      ['colors', 'Other', 2, 2],
      ['chinese_words', 'Humanities', 1, 2],
    ]);
    const arithmetic = task.subjects[0]!;
    // a quoted field spanning two lines; an empty cell prints as pandas' NaN
    expect(arithmetic.questions[2]!.question).toBe('What is 10 - 3,\nwritten out?');
    expect(arithmetic.questions[3]!.choices.map((c) => c.text)).toEqual(['5', '6', 'nan', '8']);
    expect(task.subjects[2]!.questions[1]).toEqual({ question: 'The color of coal?', choices: ['blue', 'green', 'red', 'black'].map((text, i) => ({ letter: 'ABCD'[i], text })), answer: 'D' });
  });

  it('says what is missing', async () => {
    await expect(loadChoiceTask('tinybench_validation', diskTaskReader(TASKS), false)).rejects.toThrow(/subject "arithmetic": no validation file \(tried tinybench\/data\/val\/arithmetic_val.csv/);
    await expect(loadChoiceTask('nothere_test', diskTaskReader(TASKS), false)).rejects.toThrow(/nothere\/mapping.json not found/);
    await expect(loadChoiceTask('tinybench', diskTaskReader(TASKS), false)).rejects.toThrow(/must be <benchmark>_<split>/);
  });
});

describe('prompt', () => {
  it('is LLaMA-Factory\'s eval template: instruction, exemplars as turns, "Answer:"', async () => {
    const task = await loadChoiceTask('tinybench_test', diskTaskReader(TASKS), true);
    const s = task.subjects[1]!;
    expect(choiceMessages('en', s.questions[0]!, [s.dev[1]!], s.name)).toEqual([
      { role: 'user', content: 'The following are multiple choice questions (with answers) about world capitals.\n\nCapital of Italy?\nA. Paris\nB. Rome\nC. Berlin\nD. Madrid\nAnswer:' },
      { role: 'assistant', content: 'B' },
      { role: 'user', content: 'Capital of Germany?\nA. Paris\nB. Rome\nC. Berlin\nD. Madrid\nAnswer:' },
      { role: 'assistant', content: 'C' },
    ]);
    const zh = choiceMessages('zh', task.subjects[3]!.questions[0]!, [], '中文词语');
    expect(zh[0]!.content).toBe('以下是中国关于中文词语考试的单项选择题，请选出其中的正确答案。\n\n“谢谢”的意思是？\nA. hello\nB. goodbye\nC. thanks\nD. sorry\n答案：');
  });
});

describe('evaluateChoices on the demo model', () => {
  it('picks the letter with the largest logit; accuracies and files match a CPU recomputation', async () => {
    const gpu = await testGpu();
    const tokenizer = await loadTokenizerFromDir(MODEL);
    const template = getTemplate('fewshot', tokenizer);
    const model = await Model.load(gpu, dirFiles(MODEL));
    const task = await loadChoiceTask('tinybench_test', diskTaskReader(TASKS), true);
    const dir = mkdtempSync(join(tmpdir(), 'crucible-choice-'));
    try {
      const seen: string[] = [];
      const result = await evaluateChoices(model, tokenizer, template, task, { lang: 'en', nShot: 1, batchSize: 3, seed: 7 }, { onSubject: (s) => seen.push(s.id) }, diskFolder(dir));
      expect(seen).toEqual(['arithmetic', 'world_capitals', 'colors', 'chinese_words']);

      // CPU: argmax of each question's four logits, compared with the answers
      const letters = 'ABCD';
      let all = 0;
      let right = 0;
      const perCategory = new Map<string, [number, number]>();
      for (const [i, s] of result.subjects.entries()) {
        const answers = task.subjects[i]!.questions.map((q) => q.answer);
        expect(s.choiceLogits).toHaveLength(answers.length);
        const picked = s.choiceLogits.map((l) => letters[l.indexOf(Math.max(...l))]!);
        expect(s.predictions).toEqual(picked);
        const ok = picked.filter((p, j) => p === answers[j]).length;
        expect(s.accuracy).toBe(ok / answers.length);
        all += answers.length;
        right += ok;
        const [n, k] = perCategory.get(s.category) ?? [0, 0];
        perCategory.set(s.category, [n + answers.length, k + ok]);
      }
      const expected = [['Average', all, right] as const, ...['STEM', 'Social Sciences', 'Humanities', 'Other'].map((c) => [c, ...perCategory.get(c)!] as const)];
      expect(result.categories).toEqual(expected.map(([name, n, k]) => ({ name, questions: n, accuracy: 100 * (k / n) })));
      const log = readFileSync(join(dir, 'results.log'), 'utf8');
      expect(log).toBe(expected.map(([name, n, k]) => `${name.padStart(15)}: ${(100 * (k / n)).toFixed(2)}`).join('\n'));
      expect(JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'))).toEqual(Object.fromEntries(result.subjects.map((s) => [s.id, Object.fromEntries(s.predictions.map((p, j) => [String(j), p]))])));
      expect(readFileSync(join(dir, 'results.json'), 'utf8').startsWith('{\n  "arithmetic": {\n    "0": "')).toBe(true);

      // batches of 1 give the same logits as the padded batch of 3 (world_capitals' three
      // questions; the exemplars are drawn in the same sequence when the run starts there)
      const capitals = { ...task, subjects: [task.subjects[1]!] };
      const first = await evaluateChoices(model, tokenizer, template, capitals, { lang: 'en', nShot: 1, batchSize: 3, seed: 7 });
      const single = await evaluateChoices(model, tokenizer, template, capitals, { lang: 'en', nShot: 1, batchSize: 1, seed: 7 });
      single.subjects[0]!.choiceLogits.forEach((l, j) => l.forEach((x, c) => expect(x).toBeCloseTo(first.subjects[0]!.choiceLogits[j]![c]!, 4)));

      // zero-shot: the logits of the letters after the prompt, from an unpadded full forward
      const subject = { ...task.subjects[0]!, questions: task.subjects[0]!.questions.slice(0, 3) };
      const zero = await evaluateChoices(model, tokenizer, template, { ...task, subjects: [subject] }, { lang: 'en', nShot: 0, batchSize: 3, seed: 7 });
      const ids = choiceTokenIds(tokenizer);
      for (const [j, q] of subject.questions.entries()) {
        const prompt = template.encodeOneTurn({ messages: choiceMessages('en', q, [], subject.name) }).prompt;
        const S = prompt.length;
        const ws = new Workspace(model, 1, S, true);
        const out = gpu.tensor([S, model.spec.vocab], 'f32', 'logits');
        ws.load({ B: 1, S, ids: Int32Array.from(prompt), labels: new Int32Array(S).fill(-100), positions: Int32Array.from({ length: S }, (_, t) => t) });
        fullLogits(ws, out);
        const logits = await gpu.readF32(out);
        ws.release();
        gpu.release(out);
        const last = ids.map((id) => logits[(S - 1) * model.spec.vocab + id]!);
        last.forEach((x, c) => expect(zero.subjects[0]!.choiceLogits[j]![c]!).toBeCloseTo(x, 4));
        expect(zero.subjects[0]!.predictions[j]).toBe(letters[argmax(last)]);
      }
    } finally {
      model.release();
    }
  }, 300_000);
});
