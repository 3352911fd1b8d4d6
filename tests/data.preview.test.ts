import { describe, expect, it, vi } from 'vitest';
import { memoryFileAccess, previewExamples, previewWindow, type PreviewItem } from '../src/data/index.ts';
import { deps, FORMATS, LF_DATA, tokenizerFor } from './fixtures/data/helpers.ts';

const tok = tokenizerFor('qwen3');

describe('previewExamples', () => {
  it('sft: text split into learned and masked segments', async () => {
    const p = (await previewExamples({ stage: 'sft', dataset: 'sharegpt_jsonl', dataset_dir: FORMATS, template: 'qwen3_nothink' }, deps(tok), 2)) as PreviewItem[];
    expect(p.length).toBe(2);
    expect(p[1].segments).toEqual([
      { text: '<|im_start|>system\nYou count.<|im_end|>\n<|im_start|>user\nOne?<|im_end|>\n<|im_start|>assistant\n', learned: false },
      { text: 'Two.<|im_end|>\n', learned: true },
      { text: '<|im_start|>user\nThree?<|im_end|>\n<|im_start|>assistant\n', learned: false },
      { text: 'Four.<|im_end|>\n', learned: true },
    ]);
    expect(p[1].segments.map((s) => s.text).join('')).toBe(p[1].text);
    expect(p[1].input_ids.length).toBe(p[1].labels.length);
  });

  it('preference data: chosen and rejected', async () => {
    const p = await previewExamples({ stage: 'dpo', dataset: 'dpo_en_demo', dataset_dir: LF_DATA, template: 'qwen3_nothink', max_samples: 50 }, deps(tok), 1);
    const e = p[0] as { chosen: PreviewItem; rejected: PreviewItem };
    expect(e.chosen.segments[0].learned).toBe(false);
    expect(e.chosen.segments[1].learned).toBe(true);
    expect(e.rejected.segments[0].text).toBe(e.chosen.segments[0].text);
  });

  it('segments never split a character', async () => {
    const p = (await previewExamples({ stage: 'sft', dataset: 'alpaca_json', dataset_dir: FORMATS, template: 'qwen3_nothink' }, deps(tok), 3)) as PreviewItem[];
    expect(p[2].segments[1].text).toBe('First line, still first.\nSecond "line" — naïve café 🤗<|im_end|>\n');
  });
});

describe('previewWindow', () => {
  // 400 alpaca records; record 300 has no output (dropped for sft).
  const records = Array.from({ length: 400 }, (_, i) => ({ instruction: `Question ${i}?`, ...(i === 300 ? {} : { output: `Answer ${i}.` }) }));
  const files = { 'd/qa.json': JSON.stringify(records) };
  const config = { stage: 'sft' as const, dataset: 'qa.json', dataset_dir: 'd', template: 'qwen3_nothink' };

  it('tokenizes only the window, however far the offset', async () => {
    const encode = vi.spyOn(tok, 'encode');
    try {
      const past = await previewWindow(config, { tokenizer: tok, ...memoryFileAccess(files) }, { offset: 100_000, count: 3 });
      expect(past.examples).toEqual([]);
      expect(past.total).toBe(399);
      expect(encode.mock.calls.length).toBeLessThan(20);
    } finally {
      encode.mockRestore();
    }
  });

  it('the window is the same examples as the full list', async () => {
    const deps = { tokenizer: tok, ...memoryFileAccess(files) };
    const window = await previewWindow(config, deps, { offset: 298, count: 3 });
    expect((window.examples as PreviewItem[]).map((e) => e.segments[1]!.text)).toEqual(['Answer 298.<|im_end|>\n', 'Answer 299.<|im_end|>\n', 'Answer 301.<|im_end|>\n']);
    expect(window.examples).toEqual((await previewExamples(config, deps, 301)).slice(298));
  });

  it('reports dropped records of the whole dataset, as training does', async () => {
    const logged: string[] = [];
    const p = await previewWindow(config, { tokenizer: tok, ...memoryFileAccess(files), log: (m) => logged.push(m) }, { offset: 0, count: 3 });
    expect(p.examples.length).toBe(3);
    expect(logged).toContainEqual(expect.stringMatching(/^dataset "qa\.json": dropped 1 of 400 records \(1: no response to learn/));
    expect(p.stats.datasets[0]!.dropped[0]!.first).toBe('d/qa.json, line 1, record 300');
  });
});
