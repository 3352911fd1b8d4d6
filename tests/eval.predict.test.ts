// do_predict with predict_with_generate on the tiny test model: the eval split is encoded for
// generation (prompt -> input_ids, answer -> labels), answers are generated greedily, and the
// files LLaMA-Factory writes land in the output folder with metrics that are the metric
// functions applied to the written predictions.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildDataset, type LmExample } from '../src/data';
import { loadTokenizerFromDir, nodeFileAccess } from '../src/data/node';
import { diskFolder } from '../src/eval/folders-node';
import { runPredict, speedMetrics } from '../src/eval/predict';
import { computeSimilarity } from '../src/eval/similarity';
import { dirFiles } from '../src/model/files-node';
import { Generator } from '../src/model/generate';
import { Model } from '../src/model/model';
import { testGpu } from './helpers/gpu';

const MODEL = join(import.meta.dirname, 'fixtures/tiny-chat');
const DATA = join(import.meta.dirname, 'fixtures/tiny-chat-data');

async function evalSplit() {
  const tokenizer = await loadTokenizerFromDir(MODEL);
  const built = await buildDataset(
    { stage: 'sft', eval_dataset: 'identity', dataset_dir: DATA, template: 'chatml', cutoff_len: 64, max_samples: 5, predict_with_generate: true },
    { tokenizer, ...nodeFileAccess() },
  );
  return { tokenizer, built, examples: built.eval as LmExample[] };
}

describe('eval split encoded for generation', () => {
  it('puts the prompt up to the assistant header in input_ids and the answer in labels, without a train dataset', async () => {
    const { tokenizer, built, examples } = await evalSplit();
    expect(built.train).toEqual([]);
    expect(examples).toHaveLength(5);
    const records = JSON.parse(readFileSync(join(DATA, 'identity.json'), 'utf8')) as { instruction: string; output: string }[];
    expect(tokenizer.decode(examples[0]!.input_ids)).toBe(`<|im_start|>user\n${records[0]!.instruction}<|im_end|>\n<|im_start|>assistant\n`);
    // chatml's assistant slot: the answer, <|im_end|>, a newline (cut to fit cutoff_len 64)
    const label = tokenizer.decode(examples[0]!.labels);
    expect(`${records[0]!.output}<|im_end|>\n`.startsWith(label)).toBe(true);
    expect(examples[0]!.input_ids.length + examples[0]!.labels.length).toBeLessThanOrEqual(64);
  });
});

describe('runPredict', () => {
  it('writes generated_predictions.jsonl, predict_results.json and all_results.json as LLaMA-Factory does', async () => {
    const { tokenizer, built, examples } = await evalSplit();
    const gpu = await testGpu();
    const model = await Model.load(gpu, dirFiles(MODEL));
    const dir = mkdtempSync(join(tmpdir(), 'crucible-predict-'));
    // an earlier run's results: kept in all_results.json, ints stay ints
    writeFileSync(join(dir, 'all_results.json'), '{\n    "epoch": 3.0,\n    "total_flos": 1234,\n    "predict_runtime": 99.0\n}');
    let t = 10;
    const progress: number[] = [];
    try {
      const result = await runPredict(model, tokenizer, examples, { maxNewTokens: 6, temperature: 0, stopIds: built.template.stopIds, batchSize: 2 }, {
        clock: () => (t += 0.5),
        onProgress: (done) => progress.push(done),
      }, diskFolder(dir));
      expect(progress).toEqual([1, 2, 3, 4, 5]);

      const lines = readFileSync(join(dir, 'generated_predictions.jsonl'), 'utf8').split('\n');
      expect(lines.pop()).toBe('');
      expect(lines).toHaveLength(5);
      const written = lines.map((l) => JSON.parse(l) as { prompt: string; predict: string; label: string });
      // Python's json.dumps layout: ", " and ": " separators, keys in LLaMA-Factory's order
      expect(lines[0]!.startsWith('{"prompt": ')).toBe(true);
      expect(Object.keys(written[0]!)).toEqual(['prompt', 'predict', 'label']);
      written.forEach((w, i) => {
        expect(w.prompt).toBe(tokenizer.decode(examples[i]!.input_ids));
        expect(w.label).toBe(tokenizer.decode(examples[i]!.labels, { skipSpecialTokens: true }));
      });
      // the answer is the generator's greedy continuation of the prompt, without special tokens
      const generator = new Generator(model);
      const ids: number[] = [];
      for await (const id of generator.generate(examples[0]!.input_ids, { maxNewTokens: 6, temperature: 0, stopIds: built.template.stopIds })) ids.push(id);
      generator.release();
      expect(written[0]!.predict).toBe(tokenizer.decode(ids, { skipSpecialTokens: true }));
      expect(written).toEqual(result.predictions);

      const metrics = JSON.parse(readFileSync(join(dir, 'predict_results.json'), 'utf8')) as Record<string, number>;
      const scores = computeSimilarity(written);
      // the clock is read at the start (10.5) and after scoring (11.0): runtime 0.5 s; 5 examples
      // in batches of 2 are 3 steps
      expect(metrics).toEqual({
        'predict_bleu-4': scores['bleu-4'],
        'predict_rouge-1': scores['rouge-1'],
        'predict_rouge-2': scores['rouge-2'],
        'predict_rouge-l': scores['rouge-l'],
        ...speedMetrics('predict', 0.5, 5, 3),
      });
      expect(Object.keys(JSON.parse(readFileSync(join(dir, 'predict_results.json'), 'utf8')) as object)).toEqual(Object.keys(metrics).sort());
      const all = readFileSync(join(dir, 'all_results.json'), 'utf8');
      expect(all).toContain('"total_flos": 1234\n}');
      expect(all).toContain('"epoch": 3.0,');
      expect(JSON.parse(all)).toEqual({ epoch: 3, total_flos: 1234, ...metrics });
    } finally {
      model.release();
    }
  }, 120_000);

  it('greedy answers are reproducible; a prompt that fills the context, no examples and an abort are refused', async () => {
    const { tokenizer, built, examples } = await evalSplit();
    const gpu = await testGpu();
    const model = await Model.load(gpu, dirFiles(MODEL));
    try {
      const opts = { maxNewTokens: 4, temperature: 0, stopIds: built.template.stopIds, batchSize: 1 };
      const a = await runPredict(model, tokenizer, examples.slice(0, 2), opts);
      const b = await runPredict(model, tokenizer, examples.slice(0, 2), opts);
      expect(b.predictions).toEqual(a.predictions);
      const long = { input_ids: new Array(128).fill(examples[0]!.input_ids[0]!), labels: examples[0]!.labels };
      await expect(runPredict(model, tokenizer, [long], opts)).rejects.toThrow(/example 0 has a prompt of 128 tokens.*context of 128/);
      await expect(runPredict(model, tokenizer, [], opts)).rejects.toThrow(/no examples/);
      // an abort stops between examples: nothing is scored or written
      const stop = new AbortController();
      await expect(runPredict(model, tokenizer, examples, opts, { onProgress: () => stop.abort(), signal: stop.signal })).rejects.toThrow(/aborted/);
    } finally {
      model.release();
    }
  }, 120_000);

  it('num_beams > 1 predicts each answer by beam search', async () => {
    const { tokenizer, built, examples } = await evalSplit();
    const gpu = await testGpu();
    const model = await Model.load(gpu, dirFiles(MODEL));
    const gen = new Generator(model);
    try {
      const beams = { maxNewTokens: 5, temperature: 0, numBeams: 3, lengthPenalty: 0.5, stopIds: built.template.stopIds };
      const result = await runPredict(model, tokenizer, examples.slice(0, 2), { ...beams, batchSize: 1 });
      for (const [i, ex] of examples.slice(0, 2).entries()) {
        const want = await gen.beamSearch(ex.input_ids, beams);
        expect(result.predictions[i]!.predict).toBe(tokenizer.decode(want!.tokens, { skipSpecialTokens: true }));
      }
    } finally {
      gen.release();
      model.release();
    }
  }, 120_000);

  it('speed metrics round as HF: runtime to 4 decimals, rates from the unrounded runtime to 3', () => {
    // 7 samples in 3 steps over 2.00005 s: the double 2.00005 is 2.0000499999999998834..., so
    // runtime rounds down to 2.0 (toFixed-style rounding of the decimal text would give 2.0001);
    // 7 / 2.00005 = 3.49991... -> 3.5, 3 / 2.00005 = 1.49996... -> 1.5
    expect(speedMetrics('predict', 2.00005, 7, 3)).toEqual({ predict_runtime: 2, predict_samples_per_second: 3.5, predict_steps_per_second: 1.5 });
    expect(speedMetrics('predict', 0, 7, 3)).toEqual({ predict_runtime: 0 });
  });
});
