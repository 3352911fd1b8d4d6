// LLaMA-Factory's demo datasets and example configs, unchanged (copied into tests/fixtures/data/llamafactory).
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { buildDataset, IGNORE_INDEX, type DataConfig, type KtoExample, type LmExample, type PairwiseExample } from '../src/data/index.ts';
import { deps, LF_DATA, learnedText, tokenizerFor } from './fixtures/data/helpers.ts';

const tok = tokenizerFor('qwen3');
const IM_END = tok.tokenToId('<|im_end|>')!;

function exampleConfig(name: string, extra: Partial<DataConfig> = {}): DataConfig {
  const y = parse(readFileSync(join(LF_DATA, 'examples', name), 'utf8')) as DataConfig;
  return { ...y, dataset_dir: LF_DATA, ...extra };
}

function checkLm(e: LmExample) {
  expect(e.labels.length).toBe(e.input_ids.length);
  for (let i = 0; i < e.labels.length; i++) if (e.labels[i] !== IGNORE_INDEX) expect(e.labels[i]).toBe(e.input_ids[i]);
}

describe('LLaMA-Factory demo datasets through dataset_info.json', () => {
  it('qwen3_lora_sft.yaml: identity + alpaca_en_demo, prompts masked, responses end with <|im_end|>\\n', async () => {
    const cfg = exampleConfig('qwen3_lora_sft.yaml', { shuffle: false });
    expect(cfg.template).toBe('qwen3_nothink');
    const r = await buildDataset(cfg, deps(tok));
    expect(r.kind).toBe('lm');
    expect(r.train.length).toBe(91 + 999);
    expect(r.eval.length).toBe(0);
    const first = r.train[0] as LmExample;
    checkLm(first);
    expect(tok.decode(first.input_ids)).toBe('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHello! I am {{name}}, an AI assistant developed by {{author}}. How can I assist you today?<|im_end|>\n');
    expect(learnedText(tok, first.labels)).toBe('Hello! I am {{name}}, an AI assistant developed by {{author}}. How can I assist you today?<|im_end|>\n');
    for (const e of r.train as LmExample[]) {
      checkLm(e);
      expect(e.input_ids.length).toBeLessThanOrEqual(2048);
      const learned = e.labels.filter((l) => l !== IGNORE_INDEX);
      expect(learned.length).toBeGreaterThan(0);
      expect(learned[learned.length - 2]).toBe(IM_END);
      expect(e.labels[0]).toBe(IGNORE_INDEX);
    }
    // alpaca input is joined to the instruction with a newline
    const alpaca = JSON.parse(readFileSync(join(LF_DATA, 'alpaca_en_demo.json'), 'utf8')) as Array<{ instruction: string; input: string; output: string }>;
    const k = alpaca.findIndex((a) => a.input);
    const ex = r.train[91 + k] as LmExample;
    expect(tok.decode(ex.input_ids)).toContain(`<|im_start|>user\n${alpaca[k].instruction}\n${alpaca[k].input}<|im_end|>`);
    expect(r.stats.datasets.map((d) => [d.name, d.records, d.used])).toEqual([
      ['identity', 91, 91],
      ['alpaca_en_demo', 999, 999],
    ]);
  });

  it('glaive_toolcall_en_demo: tools in the system prompt, function calls learned, observations masked (named and own template)', async () => {
    for (const [template, n] of [['qwen3_nothink', 300], [undefined, 60]] as const) {
      const r = await buildDataset({ stage: 'sft', dataset: 'glaive_toolcall_en_demo', dataset_dir: LF_DATA, template, cutoff_len: 4096, shuffle: false, max_samples: n }, deps(tok));
      expect(r.train.length).toBe(n);
      const e = r.train[0] as LmExample;
      checkLm(e);
      const text = tok.decode(e.input_ids);
      expect(text).toContain('<tools>\n{"type": "function", "function": {"name": "search_recipes"');
      const learned = learnedText(tok, e.labels);
      expect(learned).toContain('<tool_call>\n{"name": "search_recipes", "arguments": {"ingredients": ["chicken", "bell peppers", "rice"]}}\n</tool_call><|im_end|>\n');
      expect(learned).toContain('Of course! I can help you with that.');
      expect(learned).not.toContain('<tool_response>');
      expect(learned).not.toContain('I have chicken, bell peppers, and rice.');
    }
  });

  it('qwen3_lora_dpo.yaml / qwen3_lora_reward.yaml: dpo_en_demo gives chosen/rejected pairs with a shared masked prompt', async () => {
    for (const [file, n] of [['qwen3_lora_dpo.yaml', 300], ['qwen3_lora_reward.yaml', 40]] as const) {
      const r = await buildDataset(exampleConfig(file, { shuffle: false, ...(n < 300 ? { max_samples: n } : {}) }), deps(tok));
      expect(r.kind).toBe('pairwise');
      expect(r.train.length).toBe(n);
      for (const e of r.train as PairwiseExample[]) {
        const p = e.chosen.labels.findIndex((l) => l !== IGNORE_INDEX);
        const q = e.rejected.labels.findIndex((l) => l !== IGNORE_INDEX);
        expect(p).toBeGreaterThan(0);
        expect(p).toBe(q);
        expect(e.chosen.input_ids.slice(0, p)).toEqual(e.rejected.input_ids.slice(0, q));
        expect(e.chosen.input_ids.length).toBeLessThanOrEqual(2048);
        checkLm(e.chosen);
        checkLm(e.rejected);
      }
      const e0 = r.train[0] as PairwiseExample;
      expect(tok.decode(e0.chosen.input_ids)).toMatch(/^<\|im_start\|>user\nHi! I'd like to create a new language game/);
      expect(learnedText(tok, e0.chosen.labels)).toMatch(/^That sounds like a fun and engaging idea!.*<\|im_end\|>\n$/s);
    }
  });

  it('qwen3_lora_kto.yaml: kto_en_demo with tags and KL examples built from the previous record', async () => {
    const r = await buildDataset(exampleConfig('qwen3_lora_kto.yaml', { shuffle: false }), deps(tok));
    expect(r.kind).toBe('kto');
    const ex = r.train as KtoExample[];
    expect(ex.length).toBe(300);
    const raw = JSON.parse(readFileSync(join(LF_DATA, 'kto_en_demo.json'), 'utf8')) as Array<{ messages: Array<{ content: string }>; label: boolean }>;
    expect(ex.map((e) => e.kto_tag)).toEqual(raw.map((x) => x.label));
    const e1 = ex[1];
    // the KL example pairs record 1's prompt with record 0's completion
    const promptLen = e1.labels.findIndex((l) => l !== IGNORE_INDEX);
    const klPromptLen = e1.kl_labels.findIndex((l) => l !== IGNORE_INDEX);
    expect(e1.kl_input_ids.slice(0, klPromptLen)).toEqual(e1.input_ids.slice(0, promptLen));
    expect(learnedText(tok, e1.kl_labels)).toBe(learnedText(tok, ex[0].labels));
    expect(learnedText(tok, ex[0].kl_labels)).toBe(learnedText(tok, ex[299].labels));
    expect(learnedText(tok, e1.labels).startsWith(raw[1].messages[raw[1].messages.length - 1].content.slice(0, 40))).toBe(true);
  });

  it('qwen3_lora_pretrain.yaml: c4_demo text + eos, packed into cutoff_len blocks, every token learned', async () => {
    const r = await buildDataset(exampleConfig('qwen3_lora_pretrain.yaml', { shuffle: false }), deps(tok));
    expect(r.kind).toBe('lm');
    expect(r.stats.packing).toBe(true);
    expect(r.train.length).toBeGreaterThan(50);
    for (const e of r.train as LmExample[]) {
      expect(e.input_ids.length).toBe(2048);
      expect(e.labels).toEqual(e.input_ids);
    }
    // documents are separated by the tokenizer's eos (no template set)
    expect((r.train[0] as LmExample).input_ids).toContain(IM_END);
    const unpacked = await buildDataset(exampleConfig('qwen3_lora_pretrain.yaml', { packing: false, max_samples: 5, shuffle: false }), deps(tok));
    expect(unpacked.train.length).toBe(5);
    const doc = unpacked.train[0] as LmExample;
    expect(doc.input_ids[doc.input_ids.length - 1]).toBe(IM_END);
    expect(tok.decode(doc.input_ids)).toMatch(/^Don’t think you need all the bells and whistles\?/);
  });

  it('a preference dataset in an sft run is an error that says which stages it needs', async () => {
    await expect(buildDataset({ stage: 'sft', dataset: 'dpo_en_demo', dataset_dir: LF_DATA, template: 'qwen3' }, deps(tok))).rejects.toThrow(/dpo_en_demo.*preference dataset.*rm, dpo/);
    await expect(buildDataset({ stage: 'dpo', dataset: 'alpaca_en_demo', dataset_dir: LF_DATA, template: 'qwen3' }, deps(tok))).rejects.toThrow(/alpaca_en_demo.*needs a preference dataset/);
  });

  it('an undefined dataset lists the defined ones', async () => {
    await expect(buildDataset({ stage: 'sft', dataset: 'alpaca_fr_demo', dataset_dir: LF_DATA }, deps(tok))).rejects.toThrow(/"alpaca_fr_demo" is not defined in dataset_info.json \(defined: identity, alpaca_en_demo/);
  });
});
