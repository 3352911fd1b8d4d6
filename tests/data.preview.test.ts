import { describe, expect, it } from 'vitest';
import { previewExamples, type PreviewItem } from '../src/data/index.ts';
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
