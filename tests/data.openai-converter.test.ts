// LLaMA-Factory's openai converter details: the "detailed thinking off" system suffix, v1's pair
// records (chosen / rejected as whole conversations), and when role/content data is detected as
// openai rather than sharegpt.
import { describe, expect, it } from 'vitest';
import { attrFromInfo } from '../src/data/dataset-info';
import { convertRecord, thinkingOffSystem } from '../src/data/converter';
import { detectAttr } from '../src/data/sources';

const src = { file: 'pairs.jsonl', index: 0 };

describe('thinkingOffSystem (converter.py, OpenAIDatasetConverter)', () => {
  it.each([
    ['', '', 'detailed thinking off'],
    ['', '[{"name": "f"}]', ''],
    ['Be brief.', '', 'Be brief.\ndetailed thinking off'],
    ['Be brief.', '[{"name": "f"}]', 'Be brief.\n'],
    ['Be brief. detailed thinking on', '', 'Be brief. detailed thinking on'],
    ['detailed thinking off', '', 'detailed thinking off'],
  ])('system %j with tools %j -> %j', (system, tools, expected) => {
    expect(thinkingOffSystem(system, tools)).toBe(expected);
  });
});

describe('v1 pair records', () => {
  const attr = attrFromInfo('pairs', { file_name: 'pairs.jsonl', formatting: 'openai', ranking: true, columns: { chosen: 'chosen', rejected: 'rejected' } }, 'dataset_info');
  const prompt = [
    { role: 'system', content: 'Answer briefly.' },
    { role: 'user', content: 'Capital of France?' },
  ];

  it('share the prompt and differ in the last answer; no system suffix (v1 pair_converter adds none)', () => {
    const r = convertRecord({ chosen: [...prompt, { role: 'assistant', content: 'Paris.' }], rejected: [...prompt, { role: 'assistant', content: 'Lyon.' }] }, attr, src);
    expect(r).toEqual({
      ok: {
        prompt: [{ role: 'user', content: 'Capital of France?' }],
        response: [
          { role: 'assistant', content: 'Paris.' },
          { role: 'assistant', content: 'Lyon.' },
        ],
        system: 'Answer briefly.',
        tools: '',
        source: src,
        dataset: 'pairs',
      },
    });
  });

  it('are dropped, with the reason, when the prompts differ or a side is empty', () => {
    const other = [{ role: 'user', content: 'Capital of Spain?' }];
    expect(convertRecord({ chosen: [...prompt, { role: 'assistant', content: 'a' }], rejected: [...other, { role: 'assistant', content: 'b' }] }, attr, src)).toEqual({
      drop: 'pair record: "chosen" and "rejected" must share the conversation before their last message',
    });
    expect(convertRecord({ chosen: [], rejected: [] }, attr, src)).toEqual({ drop: 'pair record needs "chosen" and "rejected" as non-empty lists of messages' });
  });
});

describe('detecting role/content messages', () => {
  const plain = { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }] };
  const call = { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: '', tool_calls: [{ type: 'function', function: { name: 'f', arguments: '{}' } }] }] };

  it('is sharegpt with OpenAI tags, openai only when some record has OpenAI tool calls', () => {
    const a = detectAttr('d.jsonl', 'file', 'd.jsonl', plain, [plain]);
    expect(a.formatting).toBe('sharegpt');
    expect(a.tags).toMatchObject({ role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant', observation_tag: 'tool' });
    expect(detectAttr('d.jsonl', 'file', 'd.jsonl', plain, [plain, call]).formatting).toBe('openai');
  });
});
