// File formats (json, jsonl, csv, parquet, txt, folders), dataset formats (alpaca, sharegpt, openai,
// custom tags, history), pre-tokenized rows, num_samples, the Hub through an injected fetchFile.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildDataset, memoryFileAccess, type DataConfig, type KtoExample, type LmExample, type PairwiseExample } from '../src/data/index.ts';
import { deps, FORMATS, learnedText, tokenizerFor } from './fixtures/data/helpers.ts';

const tok = tokenizerFor('qwen3');
const base: DataConfig = { stage: 'sft', dataset_dir: FORMATS, template: 'qwen3_nothink', cutoff_len: 512, shuffle: false };
const build = (c: DataConfig) => buildDataset({ ...base, ...c }, deps(tok));
const texts = (ex: unknown[]) => (ex as LmExample[]).map((e) => [tok.decode(e.input_ids), learnedText(tok, e.labels)]);

describe('file formats', () => {
  it('json, jsonl, csv and parquet give identical examples', async () => {
    const json = await build({ dataset: 'alpaca_json' });
    expect(json.train.length).toBe(4);
    const [text0, learned0] = texts(json.train)[0];
    expect(text0).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\nHi!<|im_end|>\n');
    expect(learned0).toBe('Hi!<|im_end|>\n');
    expect(texts(json.train)[1][0]).toContain('user\nAdd the numbers\n2 and 3<|im_end|>');
    expect(texts(json.train)[2][1]).toBe('First line, still first.\nSecond "line" — naïve café 🤗<|im_end|>\n');
    for (const d of ['alpaca_jsonl', 'alpaca_csv', 'alpaca_parquet']) {
      const r = await build({ dataset: d });
      expect(r.train, d).toEqual(json.train);
    }
  });

  it('sharegpt from jsonl and parquet (nested lists) match, with tools and a system turn', async () => {
    const a = await build({ dataset: 'sharegpt_jsonl' });
    const b = await build({ dataset: 'sharegpt_parquet' });
    expect(a.train).toEqual(b.train);
    const [t0, l0] = texts(a.train)[0];
    expect(t0).toContain('"name": "get_weather"');
    expect(l0).toBe('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\nIt is 21 degrees in Paris.<|im_end|>\n');
    const [t1, l1] = texts(a.train)[1];
    expect(t1.startsWith('<|im_start|>system\nYou count.<|im_end|>\n')).toBe(true);
    expect(l1).toBe('Two.<|im_end|>\nFour.<|im_end|>\n');
  });

  it('OpenAI messages: tool_calls become function calls, consecutive tool results are merged', async () => {
    const r = await build({ dataset: 'openai_msgs' });
    expect(r.train.length).toBe(2);
    const [t0, l0] = texts(r.train)[0];
    // LLaMA-Factory's openai converter ends a system prompt with a line break when there are tools ...
    expect(t0.startsWith('<|im_start|>system\nYou are a weather bot.\n\n\n# Tools')).toBe(true);
    expect(l0).toBe(
      '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call><|im_end|>\nOslo 3, Rome 19.<|im_end|>\n',
    );
    expect(t0).toContain('<tool_response>\n{"temp": 3}\n</tool_response>\n<tool_response>\n{"temp": 19}\n</tool_response>');
    expect(texts(r.train)[1][1]).toBe('Hi there.<|im_end|>\n');
    // ... and without tools and system it sets "detailed thinking off"
    expect(texts(r.train)[1][0].startsWith('<|im_start|>system\ndetailed thinking off<|im_end|>\n<|im_start|>user\nHello')).toBe(true);
  });

  it('alpaca history becomes earlier turns, each learned', async () => {
    const r = await build({ dataset: 'history_alpaca' });
    const [t, l] = texts(r.train)[0];
    expect(t).toBe('<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n5<|im_end|>\n<|im_start|>user\nPlus 1?<|im_end|>\n<|im_start|>assistant\n6<|im_end|>\n<|im_start|>user\nAnd times 2?<|im_end|>\n<|im_start|>assistant\n10<|im_end|>\n');
    expect(l).toBe('5<|im_end|>\n6<|im_end|>\n10<|im_end|>\n');
  });

  it('custom sharegpt tags; records with roles out of order are dropped and counted', async () => {
    const r = await build({ dataset: 'custom_tags' });
    expect(r.train.length).toBe(1);
    expect(texts(r.train)[0][1]).toBe('Pong<|im_end|>\n');
    expect(r.stats.datasets[0].dropped[0].reason).toMatch(/roles out of order/);
    expect(r.stats.datasets[0].dropped[0].first).toMatch(/custom_tags.json, line 3, record 1/);
  });

  it('plain text for pretraining (txt) and a folder of jsonl files', async () => {
    const pt = await build({ stage: 'pt', dataset: 'wiki_txt', packing: false });
    expect(pt.train.map((e) => tok.decode((e as LmExample).input_ids))).toEqual([
      'The first document is about cats.<|im_end|>',
      'The second document is about dogs, and it is a little longer than the first one.<|im_end|>',
      'Third.<|im_end|>',
    ]);
    const packed = await build({ stage: 'pt', dataset: 'wiki_txt', cutoff_len: 8 });
    expect(packed.train.every((e) => (e as LmExample).input_ids.length === 8)).toBe(true);
    expect(packed.train.length).toBe(Math.floor(pt.stats.train.tokens / 8));
    const folder = await build({ dataset: 'folder_ds' });
    expect(texts(folder.train).map((x) => x[1])).toEqual(['a<|im_end|>\n', 'b<|im_end|>\n', 'c<|im_end|>\n']);
    expect(folder.stats.datasets[0].files.map((f) => f.split('/').pop())).toEqual(['part-0.jsonl', 'part-1.jsonl']);
  });

  it('preference and KTO data in alpaca style', async () => {
    const p = await build({ stage: 'dpo', dataset: 'pref_alpaca' });
    const e = p.train[0] as PairwiseExample;
    expect(learnedText(tok, e.chosen.labels)).toBe('Paris.<|im_end|>\n');
    expect(learnedText(tok, e.rejected.labels)).toBe('Lyon, probably.<|im_end|>\n');
    const k = await build({ stage: 'kto', dataset: 'kto_alpaca' });
    const ks = k.train as KtoExample[];
    expect(ks.map((x) => x.kto_tag)).toEqual([true, false, true]);
    expect(learnedText(tok, ks[1].labels)).toBe('22<|im_end|>\n');
    expect(learnedText(tok, ks[1].kl_labels)).toBe('Paris.<|im_end|>\n');
  });

  it('num_samples samples with repetition beyond the dataset size; max_samples takes the first N', async () => {
    const r = await build({ dataset: 'sampled' });
    expect(r.train.length).toBe(6);
    const uniq = new Set(r.train.map((e) => JSON.stringify(e)));
    expect(uniq.size).toBe(4);
    const m = await build({ dataset: 'alpaca_json,alpaca_csv', max_samples: 2 });
    expect(m.train.length).toBe(4);
  });

  it('browser-style access: dropped-in files as Blobs and bytes', async () => {
    const files = {
      'data/dataset_info.json': new Blob([readFileSync(join(FORMATS, 'dataset_info.json'))]),
      'data/alpaca.parquet': new Uint8Array(readFileSync(join(FORMATS, 'alpaca.parquet'))),
    };
    const r = await buildDataset({ ...base, dataset: 'alpaca_parquet', dataset_dir: 'data' }, { tokenizer: tok, ...memoryFileAccess(files) });
    const local = await build({ dataset: 'alpaca_parquet' });
    expect(r.train).toEqual(local.train);
  });

  it('a data file named directly (no dataset_info entry) is detected', async () => {
    const r = await build({ dataset: 'openai.jsonl' });
    expect(r.train.length).toBe(2);
  });
});

describe('bytes that are not UTF-8', () => {
  const text = (s: string) => new TextEncoder().encode(s);
  const bytes = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
  const latin1 = Uint8Array.of(0x63, 0x61, 0x66, 0xe9); // "café" in Latin-1

  it('are read as U+FFFD with a warning naming the file and each line', async () => {
    const jsonl = bytes(
      text('{"instruction": "a", "output": "b"}\n{"instruction": "'),
      latin1,
      text('", "output": "b"}\n{"instruction": "c", "output": "d"}\n{"instruction": "'),
      latin1,
      text('", "output": "e"}\n'),
    );
    const logged: string[] = [];
    const r = await buildDataset({ ...base, dataset: 'x.jsonl', dataset_dir: 'd' }, { tokenizer: tok, ...memoryFileAccess({ 'd/x.jsonl': jsonl }), log: (m) => logged.push(m) });
    expect(r.train.length).toBe(4);
    const warning = 'd/x.jsonl: 2 lines hold bytes that are not UTF-8 (lines 2, 4); they were read as U+FFFD (\uFFFD) — re-save the file as UTF-8 to keep the text as written';
    expect(logged).toContain(warning);
    expect(r.stats.warnings).toContain(warning);
  });

  it('one line, in a csv file', async () => {
    const csv = bytes(text('instruction,output\na,b\n'), latin1, text(',x\n'));
    const r = await buildDataset({ ...base, dataset: 'x.csv', dataset_dir: 'd' }, { tokenizer: tok, ...memoryFileAccess({ 'd/x.csv': csv }) });
    expect(r.stats.warnings).toContain('d/x.csv: line 3 holds bytes that are not UTF-8; they were read as U+FFFD (\uFFFD) — re-save the file as UTF-8 to keep the text as written');
  });

  it('a U+FFFD written as UTF-8 is data, not a warning', async () => {
    const r = await buildDataset({ ...base, dataset: 'x.jsonl', dataset_dir: 'd' }, { tokenizer: tok, ...memoryFileAccess({ 'd/x.jsonl': '{"instruction": "\uFFFD", "output": "b"}\n' }) });
    expect(r.stats.warnings.filter((w) => w.includes('UTF-8'))).toEqual([]);
  });
});

describe('pre-tokenized rows', () => {
  it.each(['tokenized_jsonl', 'tokenized_csv', 'tokenized_parquet'])('%s: ids and labels are used as given, padding removed by attention_mask', async (d) => {
    const r = await build({ dataset: d });
    expect(r.train).toEqual([
      { input_ids: [11, 12, 13, 14, 15], labels: [-100, -100, 13, 14, 15] },
      { input_ids: [21, 22, 23], labels: [-100, 22, 23] },
      { input_ids: [31, 32, 33, 34], labels: [31, 32, 33, 34] },
    ]);
    expect(r.stats.datasets[0].pretokenized).toBe(true);
  });

  it('are cut at cutoff_len and packed like any other example', async () => {
    const r = await build({ dataset: 'tokenized_jsonl', cutoff_len: 4 });
    expect((r.train[0] as LmExample).input_ids).toEqual([11, 12, 13, 14]);
    const p = await build({ dataset: 'tokenized_jsonl', neat_packing: true, cutoff_len: 9 });
    expect(p.train.length).toBe(2);
    expect((p.train[0] as LmExample).input_ids.length).toBe(9);
  });

  it('labels default to the input ids', async () => {
    const files = { 'd/dataset_info.json': '{"t": {"file_name": "t.jsonl"}}', 'd/t.jsonl': '{"input_ids": [5, 6, 7]}\n' };
    const r = await buildDataset({ ...base, dataset: 't', dataset_dir: 'd' }, { tokenizer: tok, ...memoryFileAccess(files) });
    expect(r.train).toEqual([{ input_ids: [5, 6, 7], labels: [5, 6, 7] }]);
  });
});

describe('Hub datasets through an injected fetchFile', () => {
  const parquet = new Uint8Array(readFileSync(join(FORMATS, 'alpaca.parquet')));
  const chat = new TextEncoder().encode(readFileSync(join(FORMATS, 'sharegpt.jsonl'), 'utf8'));
  const repos: Record<string, Record<string, Uint8Array>> = {
    'someone/tiny-alpaca': { 'README.md': new Uint8Array(), 'data/train-00000-of-00001.parquet': parquet },
    'someone/tiny-chat': { 'data/train.jsonl': new Uint8Array(), 'data/test.jsonl': chat },
  };
  const calls: string[] = [];
  const fetchFile = async (repo: string, path: string) => {
    calls.push(`${repo}/${path}`);
    const f = repos[repo]?.[path];
    if (!f) throw new Error(`404 ${repo}/${path}`);
    return f;
  };

  it('loads the split files listed by listRepoFiles', async () => {
    const r = await buildDataset({ ...base, dataset: 'hub_alpaca', eval_dataset: 'hub_sharegpt_eval' }, { ...deps(tok), fetchFile, listRepoFiles: async (repo) => Object.keys(repos[repo]) });
    const local = await build({ dataset: 'alpaca_parquet' });
    expect(r.train).toEqual(local.train);
    expect(r.eval.length).toBe(2);
    expect(calls).toContain('someone/tiny-chat/data/test.jsonl');
    expect(calls).not.toContain('someone/tiny-chat/data/train.jsonl');
    expect(r.stats.datasets[0].files).toEqual(['hub:someone/tiny-alpaca/data/train-00000-of-00001.parquet']);
  });

  it('without a listing, tries the conventional parquet name', async () => {
    const r = await buildDataset({ ...base, dataset: 'hub_alpaca' }, { ...deps(tok), fetchFile });
    expect(r.train.length).toBe(4);
  });

  it('without Hub access, says so', async () => {
    await expect(build({ dataset: 'hub_alpaca' })).rejects.toThrow(/Hub dataset.*someone\/tiny-alpaca.*fetchFile/);
  });
});
