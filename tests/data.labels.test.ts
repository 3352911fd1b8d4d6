// Labels: masking variants, cutoff (infer_seqlen), packing / neat_packing, val split, shuffling, collate.
import { describe, expect, it } from 'vitest';
import {
  buildDataset,
  collate,
  collateKto,
  collatePairwise,
  greedyKnapsack,
  IGNORE_INDEX,
  inferSeqlen,
  memoryFileAccess,
  shuffled,
  type DataConfig,
  type KtoExample,
  type LmExample,
  type PairwiseExample,
} from '../src/data/index.ts';
import { encodeSupervised } from '../src/data/processor.ts';
import { getTemplate } from '../src/data/templates.ts';
import { deps, FORMATS, LF_DATA, learnedText, tokenizerFor } from './fixtures/data/helpers.ts';

const tok = tokenizerFor('qwen3');
const base: DataConfig = { stage: 'sft', dataset_dir: FORMATS, template: 'qwen3_nothink', cutoff_len: 512, shuffle: false };
const build = (c: DataConfig) => buildDataset({ ...base, ...c }, deps(tok));
const multi = 'sharegpt_jsonl';

describe('masking', () => {
  it('default: prompts masked, every assistant turn learned (incl. function calls)', async () => {
    const r = await build({ dataset: multi });
    expect(learnedText(tok, (r.train[1] as LmExample).labels)).toBe('Two.<|im_end|>\nFour.<|im_end|>\n');
  });

  it('train_on_prompt learns everything', async () => {
    const r = await build({ dataset: multi, train_on_prompt: true });
    const e = r.train[1] as LmExample;
    expect(e.labels).toEqual(e.input_ids);
  });

  it('mask_history learns the last turn only', async () => {
    const r = await build({ dataset: multi, mask_history: true });
    const e = r.train[1] as LmExample;
    expect(learnedText(tok, e.labels)).toBe('Four.<|im_end|>\n');
    expect(tok.decode(e.input_ids)).toContain('Two.<|im_end|>');
  });

  it('mask_history with train_on_prompt is rejected, as in LLaMA-Factory', async () => {
    await expect(build({ dataset: multi, mask_history: true, train_on_prompt: true })).rejects.toThrow(/incompatible/);
  });

  it('efficient_eos templates (gemma2): eos appended and learned; later prompts carry an eos label', () => {
    const g = tok; // slots are text; any tokenizer shows the labelling
    const t = getTemplate('gemma2', g);
    const a = { prompt: [{ role: 'user' as const, content: 'a' }, { role: 'assistant' as const, content: 'b' }, { role: 'user' as const, content: 'c' }], response: [{ role: 'assistant' as const, content: 'd' }], system: '', tools: '', source: { file: 'x', index: 0 }, dataset: 'x' };
    const e = encodeSupervised(t, a, { cutoffLen: 100, trainOnPrompt: false, maskHistory: false });
    expect(e.input_ids[e.input_ids.length - 1]).toBe(g.eosId);
    expect(e.labels[e.labels.length - 1]).toBe(g.eosId);
    // the first token of the second prompt is labelled eos (the end of the previous response)
    const turns = t.encodeConversation({ messages: [...a.prompt, ...a.response] }).turns;
    const second = turns[0].prompt.length + turns[0].response.length;
    expect(e.input_ids[second]).not.toBe(g.eosId);
    expect(e.labels[second]).toBe(g.eosId);
    expect(e.labels.slice(second + 1, second + turns[1].prompt.length).every((l) => l === IGNORE_INDEX)).toBe(true);
  });
});

describe('cutoff_len', () => {
  it('infer_seqlen matches LLaMA-Factory', () => {
    expect(inferSeqlen(10, 10, 100)).toEqual([10, 10]);
    expect(inferSeqlen(100, 20, 50)).toEqual([30, 20]); // short response: keep it, cut the prompt
    expect(inferSeqlen(10, 100, 50)).toEqual([10, 40]); // short prompt: keep it, cut the response
    expect(inferSeqlen(60, 40, 50)).toEqual([30, 20]); // both long: proportional
    expect(inferSeqlen(5, 5, 0)).toEqual([0, 0]);
  });

  it('keeps the response when the prompt is long', async () => {
    const long = 'word '.repeat(300);
    const files = { 'd/dataset_info.json': '{"x": {"file_name": "x.json"}}', 'd/x.json': JSON.stringify([{ instruction: long, output: 'Short answer.' }]) };
    const r = await buildDataset({ ...base, dataset: 'x', dataset_dir: 'd', cutoff_len: 64 }, { tokenizer: tok, ...memoryFileAccess(files) });
    const e = r.train[0] as LmExample;
    expect(e.input_ids.length).toBe(64);
    expect(learnedText(tok, e.labels)).toBe('Short answer.<|im_end|>\n');
    expect(r.stats.train.truncated).toBe(1);
  });

  it('multi-turn: later turns are dropped when the budget is spent; mask_history keeps the last turns instead', async () => {
    const r = await build({ dataset: multi, cutoff_len: 20 });
    const e = r.train[1] as LmExample;
    expect(e.input_ids.length).toBeLessThanOrEqual(20);
    expect(learnedText(tok, e.labels)).toContain('Two.');
    const m = await build({ dataset: multi, cutoff_len: 20, mask_history: true });
    const f = m.train[1] as LmExample;
    expect(learnedText(tok, f.labels)).toBe('Four.<|im_end|>\n');
  });

  it('preference pairs are cut to one response length', async () => {
    const r = await build({ stage: 'dpo', dataset: 'pref_alpaca', cutoff_len: 12 });
    const e = r.train[0] as PairwiseExample;
    expect(e.chosen.input_ids.length).toBeLessThanOrEqual(12);
    expect(e.rejected.input_ids.length).toBeLessThanOrEqual(12);
    expect(e.chosen.labels.findIndex((l) => l !== IGNORE_INDEX)).toBe(e.rejected.labels.findIndex((l) => l !== IGNORE_INDEX));
  });
});

describe('packing', () => {
  it('greedy knapsack as LLaMA-Factory', () => {
    expect(greedyKnapsack([5, 3, 8, 1, 9], 10)).toEqual([[9, 1], [8], [5, 3]]);
  });

  it('packing fills sequences of exactly cutoff_len with whole examples, positions restart per example', async () => {
    const plain = await build({ dataset: 'alpaca_en_demo', dataset_dir: LF_DATA, max_samples: 60, cutoff_len: 1024 });
    const r = await build({ dataset: 'alpaca_en_demo', dataset_dir: LF_DATA, max_samples: 60, cutoff_len: 1024, packing: true });
    expect(r.train.length).toBeLessThan(plain.train.length);
    let learned = 0;
    for (const e of r.train as LmExample[]) {
      expect(e.input_ids.length).toBe(1024);
      expect(e.segment_ids).toBeUndefined();
      expect(e.position_ids![0]).toBe(0);
      learned += e.labels.filter((l) => l !== IGNORE_INDEX).length;
    }
    expect(learned).toBe(plain.stats.train.learnedTokens);
    expect(r.stats.train.sequences).toBe(60);
  });

  it('neat_packing: per-token segment ids (1..n, 0 on padding) that separate whole examples', async () => {
    const plain = await build({ dataset: 'alpaca_en_demo', dataset_dir: LF_DATA, max_samples: 40, cutoff_len: 1024 });
    const r = await build({ dataset: 'alpaca_en_demo', dataset_dir: LF_DATA, max_samples: 40, cutoff_len: 1024, neat_packing: true });
    const lengths = new Set((plain.train as LmExample[]).map((e) => e.input_ids.length));
    let samples = 0;
    for (const e of r.train as LmExample[]) {
      const seg = e.segment_ids!;
      expect(seg.length).toBe(1024);
      let prev = seg[0];
      expect(prev).toBe(1);
      let start = 0;
      for (let i = 1; i <= seg.length; i++) {
        if (i === seg.length || seg[i] !== prev) {
          if (prev !== 0) {
            samples++;
            expect(lengths.has(i - start)).toBe(true);
            expect(e.position_ids![start]).toBe(0);
            expect(e.position_ids![i - 1]).toBe(i - 1 - start);
            // every packed sample starts a fresh conversation
            expect(e.input_ids[start]).toBe(tok.tokenToId('<|im_start|>'));
          } else {
            for (let j = start; j < i; j++) expect(e.labels[j]).toBe(IGNORE_INDEX);
          }
          if (i < seg.length) {
            expect(seg[i] === 0 || seg[i] === prev + 1).toBe(true);
            prev = seg[i];
            start = i;
          }
        }
      }
    }
    expect(samples).toBe(40);
  });

  it('neat_packing outside sft is rejected', async () => {
    await expect(build({ stage: 'pt', dataset: 'wiki_txt', neat_packing: true })).rejects.toThrow(/sft only/);
  });
});

describe('splits and order', () => {
  it('val_size as a fraction or a count; disjoint and seeded', async () => {
    const all = await build({ dataset: 'alpaca_en_demo', dataset_dir: LF_DATA, max_samples: 50 });
    const a = await build({ dataset: 'alpaca_en_demo', dataset_dir: LF_DATA, max_samples: 50, val_size: 0.1 });
    expect(a.eval.length).toBe(5);
    expect(a.train.length).toBe(45);
    const key = (e: unknown) => JSON.stringify(e);
    const trainKeys = new Set(a.train.map(key));
    expect(a.eval.every((e) => !trainKeys.has(key(e)))).toBe(true);
    expect(new Set([...a.train, ...a.eval].map(key))).toEqual(new Set(all.train.map(key)));
    const b = await build({ dataset: 'alpaca_en_demo', dataset_dir: LF_DATA, max_samples: 50, val_size: 7, seed: 1 });
    expect(b.eval.length).toBe(7);
    const c = await build({ dataset: 'alpaca_en_demo', dataset_dir: LF_DATA, max_samples: 50, val_size: 7, seed: 1 });
    expect(c.eval).toEqual(b.eval);
  });

  it('mix_strategy: concat, interleave_under / _over / _once (round robin or by interleave_probs)', async () => {
    const cfg = { dataset: 'alpaca_json,history_alpaca' };
    const names = (r: { train: unknown[] }) =>
      (r.train as LmExample[]).map((e) => {
        const t = learnedText(tok, e.labels);
        return t.includes('10<|im_end|>') ? 'H' : t.replace('<|im_end|>\n', '').slice(0, 5);
      });
    expect(names(await build(cfg))).toEqual(['Hi!', '5', 'First', 'chat', 'H']);
    expect(names(await build({ ...cfg, mix_strategy: 'interleave_under' }))).toEqual(['Hi!', 'H']);
    expect(names(await build({ ...cfg, mix_strategy: 'interleave_over' }))).toEqual(['Hi!', 'H', '5', 'H', 'First', 'H', 'chat']);
    expect(names(await build({ ...cfg, mix_strategy: 'interleave_once' }))).toEqual(['Hi!', 'H', '5', 'First', 'chat']);
    const p = names(await build({ ...cfg, mix_strategy: 'interleave_once', interleave_probs: '0.9,0.1' }));
    expect(p.sort()).toEqual(['5', 'First', 'H', 'Hi!', 'chat']);
    await expect(build({ ...cfg, mix_strategy: 'interleave_under', interleave_probs: '1' })).rejects.toThrow(/1 values for 2 datasets/);
  });

  it('train examples are shuffled from the seed', async () => {
    const cfg = { dataset: 'alpaca_en_demo', dataset_dir: LF_DATA, max_samples: 30 };
    const plain = await build(cfg);
    const s1 = await build({ ...cfg, shuffle: true, seed: 3 });
    const s2 = await build({ ...cfg, shuffle: true, seed: 3 });
    const s3 = await build({ ...cfg, shuffle: true, seed: 4 });
    expect(s1.train).toEqual(s2.train);
    expect(s1.train).not.toEqual(plain.train);
    expect(s1.train).not.toEqual(s3.train);
    expect(new Set(s1.train.map((e) => JSON.stringify(e)))).toEqual(new Set(plain.train.map((e) => JSON.stringify(e))));
    expect(shuffled([1, 2, 3, 4, 5], 9)).toEqual(shuffled([1, 2, 3, 4, 5], 9));
  });
});

describe('collate', () => {
  it('pads with padId and -100, keeps labels unshifted, reports lengths', () => {
    const ex: LmExample[] = [
      { input_ids: [1, 2, 3], labels: [-100, 2, 3] },
      { input_ids: [4], labels: [4] },
      { input_ids: [5, 6], labels: [5, 6] },
    ];
    const batches = collate(ex, 2, 0, { padToMultipleOf: 4 });
    expect(batches.length).toBe(2);
    expect(batches[0].seqLen).toBe(4);
    expect(Array.from(batches[0].input_ids)).toEqual([1, 2, 3, 0, 4, 0, 0, 0]);
    expect(Array.from(batches[0].labels)).toEqual([-100, 2, 3, -100, 4, -100, -100, -100]);
    expect(Array.from(batches[0].lengths)).toEqual([3, 1]);
    expect(batches[1].batchSize).toBe(1);
  });

  it('packed rows carry segment and position ids; pairwise puts chosen rows first; KTO carries KL rows', () => {
    const b = collate([{ input_ids: [1, 2, 9], labels: [1, 2, -100], segment_ids: [1, 2, 0], position_ids: [0, 0, 0] }], 1, 9)[0];
    expect(Array.from(b.segment_ids!)).toEqual([1, 2, 0]);
    const p: PairwiseExample[] = [
      { chosen: { input_ids: [1, 2], labels: [-100, 2] }, rejected: { input_ids: [1, 3, 4], labels: [-100, 3, 4] } },
      { chosen: { input_ids: [5], labels: [5] }, rejected: { input_ids: [6], labels: [6] } },
    ];
    const pb = collatePairwise(p, 2, 0)[0];
    expect(pb.batchSize).toBe(4);
    expect(pb.pairs).toBe(2);
    expect(Array.from(pb.input_ids)).toEqual([1, 2, 0, 5, 0, 0, 1, 3, 4, 6, 0, 0]);
    const k: KtoExample[] = [{ input_ids: [1], labels: [1], kl_input_ids: [2, 3], kl_labels: [-100, 3], kto_tag: false }];
    const kb = collateKto(k, 4, 0)[0];
    expect(Array.from(kb.kto_tags)).toEqual([0]);
    expect(Array.from(kb.kl.input_ids)).toEqual([2, 3]);
  });
});
