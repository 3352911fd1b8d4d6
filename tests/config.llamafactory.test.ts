// LLaMA-Factory compatibility: its example configs load unchanged, and a config exported with
// toLlamaFactory loads back to the same config.

import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, relative } from 'node:path';
import { parse } from 'yaml';
import { datasetInfoFromRecords, formatFloat, isDatasetFile, loadConfig, parseConfig, toLlamaFactory, type CrucibleConfig } from '../src/config';

const EXAMPLES = fileURLToPath(new URL('./fixtures/llamafactory-examples/', import.meta.url));

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? yamlFiles(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

// the v1 examples (examples/v1) have their own test: config.llamafactory-v1.test.ts
const files = yamlFiles(EXAMPLES).filter((f) => !relative(EXAMPLES, f).startsWith('v1/'));

describe('LLaMA-Factory example configs', () => {
  it('are all present', () => {
    expect(files.map((f) => relative(EXAMPLES, f)).sort()).toEqual([
      'extras/apollo/llama3_full_sft.yaml',
      'extras/badam/llama3_full_sft.yaml',
      'extras/galore/llama3_full_sft.yaml',
      'extras/oft/llama3_oft_sft.yaml',
      'extras/qoft/llama3_oft_sft_bnb_npu.yaml',
      'inference/qwen3_lora_sft.yaml',
      'merge_lora/qwen3_lora_sft.yaml',
      'ppo/llama3_lora_ppo.yaml',
      'train_lora/qwen3_lora_dpo.yaml',
      'train_lora/qwen3_lora_kto.yaml',
      'train_lora/qwen3_lora_pretrain.yaml',
      'train_lora/qwen3_lora_reward.yaml',
      'train_lora/qwen3_lora_sft.yaml',
    ]);
  });

  it.each(files.map((f) => [relative(EXAMPLES, f), f]))('%s loads with no error, every key accounted for', async (_name, file) => {
    const { config, notices, given } = await loadConfig(file);
    const raw = parse(readFileSync(file, 'utf8'), { version: '1.1' }) as Record<string, unknown>;
    // each key is either read or noted as ignored
    for (const key of Object.keys(raw)) {
      const read = given.includes(key);
      const noted = notices.some((n) => n.startsWith(`note: ${key} `));
      expect(read || noted, key).toBe(true);
    }
    for (const n of notices) expect(n).toMatch(/^note: \w+ is an? [\w -]+ setting; Crucible ignores it/);
    expect(config.model_name_or_path).toBe(file.includes('/extras/') || file.includes('/ppo/') ? 'meta-llama/Meta-Llama-3-8B-Instruct' : 'Qwen/Qwen3-4B-Instruct-2507');
  });

  it('reads the values of the SFT example', async () => {
    const { config, notices } = await loadConfig(join(EXAMPLES, 'train_lora/qwen3_lora_sft.yaml'));
    expect(config).toMatchObject({
      stage: 'sft',
      do_train: true,
      finetuning_type: 'lora',
      lora_rank: 8,
      lora_alpha: 16,
      lora_target: ['all'],
      dataset: ['identity', 'alpaca_en_demo'],
      template: 'qwen3_nothink',
      cutoff_len: 2048,
      max_samples: 1000,
      preprocessing_num_workers: 16,
      output_dir: 'saves/qwen3-4b/lora/sft',
      logging_steps: 10,
      save_steps: 500,
      plot_loss: true,
      overwrite_output_dir: true,
      save_only_model: false,
      per_device_train_batch_size: 1,
      gradient_accumulation_steps: 8,
      learning_rate: 1e-4,
      num_train_epochs: 3,
      lr_scheduler_type: 'cosine',
      warmup_ratio: 0.1,
      resume_from_checkpoint: null,
    });
    expect(config.passthrough).toEqual({ trust_remote_code: true, dataloader_num_workers: 4, ddp_timeout: 180000000 });
    expect(config.report_to).toEqual(['none']);
    // bf16 selects the f16 tier (src/engine/precision.ts): a setting of its own, no notice
    expect(config.bf16).toBe(true);
    expect(notices.filter((n) => n.includes('bf16'))).toEqual([]);
  });

  it('reads the preference, inference and merge examples', async () => {
    const dpo = (await loadConfig(join(EXAMPLES, 'train_lora/qwen3_lora_dpo.yaml'))).config;
    expect(dpo).toMatchObject({ stage: 'dpo', pref_beta: 0.1, pref_loss: 'sigmoid', learning_rate: 5e-6 });
    const kto = (await loadConfig(join(EXAMPLES, 'train_lora/qwen3_lora_kto.yaml'))).config;
    expect(kto).toMatchObject({ stage: 'kto', pref_beta: 0.1, dataset: ['kto_en_demo'] });
    const infer = (await loadConfig(join(EXAMPLES, 'inference/qwen3_lora_sft.yaml'))).config;
    expect(infer).toMatchObject({ adapter_name_or_path: ['saves/qwen3-4b/lora/sft'], template: 'qwen3_nothink', infer_backend: 'huggingface' });
    const merge = (await loadConfig(join(EXAMPLES, 'merge_lora/qwen3_lora_sft.yaml'))).config;
    expect(merge).toMatchObject({ export_dir: 'saves/qwen3_sft_merged', export_size: 5, export_legacy_format: false });
    expect(merge.passthrough).toEqual({ trust_remote_code: true, export_device: 'cpu' });
  });
});

describe('toLlamaFactory', () => {
  it.each(files.map((f) => [relative(EXAMPLES, f), f]))('round-trips %s', async (_name, file) => {
    const { config } = await loadConfig(file);
    const { yaml, datasetInfo } = toLlamaFactory(config);
    expect(datasetInfo).toBeNull();
    expect(parseConfig(yaml).config).toEqual(config);
  });

  it('round-trips a config with many non-default values', () => {
    const { config } = parseConfig(
      [
        'model_name_or_path: ./models/tiny',
        'adapter_name_or_path: a1,a2',
        'stage: dpo',
        'do_train: true',
        'finetuning_type: lora',
        'lora_rank: 16',
        'lora_alpha: 8',
        'lora_dropout: 0.05',
        'lora_target: q_proj,v_proj',
        'additional_target: embed_tokens',
        'use_rslora: true',
        'use_dora: true',
        'loraplus_lr_ratio: 16.0',
        'quantization_bit: 4',
        'dataset: dpo_en_demo',
        'dataset_dir: ./data',
        'cutoff_len: 1024',
        'max_samples: 100',
        'val_size: 0.1',
        'learning_rate: 5.0e-6',
        'lr_scheduler_type: cosine_with_min_lr',
        'lr_scheduler_kwargs: {min_lr_rate: 0.1}',
        'warmup_steps: 10',
        'num_train_epochs: 1.5',
        'max_steps: 200',
        'per_device_train_batch_size: 2',
        'gradient_accumulation_steps: 4',
        'max_grad_norm: 0.5',
        'weight_decay: 0.01',
        'adam_epsilon: 1.0e-6',
        'neftune_noise_alpha: 5',
        'seed: 7',
        'output_dir: "out/my run: 1"',
        'logging_steps: 5',
        'save_total_limit: 2',
        'eval_strategy: steps',
        'eval_steps: 50',
        'resume_from_checkpoint: true',
        'pref_beta: 0.2',
        'pref_ftx: 0.5',
        'pref_loss: simpo',
        'simpo_gamma: 1.0',
        'default_system: "yes"',
        'enable_thinking: false',
        'temperature: 0.0',
        'top_k: 0',
        'disable_gradient_checkpointing: true',
        'bf16: true',
        'deepspeed: {zero_optimization: {stage: 3}}',
      ].join('\n'),
    );
    const { yaml } = toLlamaFactory(config);
    expect(yaml).toContain('learning_rate: 5.0e-6\n');
    expect(yaml).toContain('adam_epsilon: 1.0e-6\n');
    expect(yaml).toContain('num_train_epochs: 1.5\n');
    expect(yaml).toContain('lora_target: q_proj,v_proj\n');
    expect(yaml).toContain('default_system: "yes"\n');
    expect(yaml).toContain('bf16: true\n');
    expect(parseConfig(yaml).config).toEqual(config);
    // PyYAML-compatible floats: a dot and a signed exponent
    expect(parse(yaml, { version: '1.1' }).learning_rate).toBe(5e-6);
  });

  it('leaves out defaults and training keys for an inference config', () => {
    const { config } = parseConfig('model_name_or_path: m\ntemplate: llama3\ntemperature: 0.3');
    expect(toLlamaFactory(config).yaml).toBe('### model\nmodel_name_or_path: m\ntemplate: llama3\n\n### generation\ntemperature: 0.3\n');
  });

  it('always writes stage, do_train, finetuning_type and output_dir for a training run', () => {
    const { config } = parseConfig('model_name_or_path: m\ndo_train: true\ndataset: d');
    const { yaml } = toLlamaFactory(config);
    for (const line of ['stage: sft', 'do_train: true', 'finetuning_type: lora', 'output_dir: trainer_output']) expect(yaml).toContain(`${line}\n`);
  });

  it('turns data files into named datasets with a dataset_info.json', () => {
    const { config } = parseConfig('model_name_or_path: m\ndo_train: true\ndataset: ./my data.jsonl,identity,./other/my data.json\neval_dataset: ./my data.jsonl');
    const run = toLlamaFactory(config, {
      datasetDir: 'lf',
      describeFile: (p) => ({ file_name: `copied-${p.length}.jsonl`, formatting: 'sharegpt' }),
      namedEntries: { identity: { file_name: 'identity.json' } },
    });
    expect(run.datasetNames).toEqual({ './my data.jsonl': 'my_data', './other/my data.json': 'my_data_2' });
    expect(run.datasetInfo).toEqual({
      my_data: { file_name: 'copied-15.jsonl', formatting: 'sharegpt' },
      identity: { file_name: 'identity.json' },
      my_data_2: { file_name: 'copied-20.jsonl', formatting: 'sharegpt' },
    });
    const back = parseConfig(run.yaml).config;
    expect(back.dataset).toEqual(['my_data', 'identity', 'my_data_2']);
    expect(back.eval_dataset).toEqual(['my_data']);
    expect(back.dataset_dir).toBe('lf');
    expect({ ...back, dataset: config.dataset, eval_dataset: config.eval_dataset, dataset_dir: config.dataset_dir } satisfies CrucibleConfig).toEqual(config);
  });

  it('formats floats the way PyYAML reads them', () => {
    expect(formatFloat(1e-4)).toBe('1.0e-4');
    expect(formatFloat(5e-6)).toBe('5.0e-6');
    expect(formatFloat(1.5e-5)).toBe('1.5e-5');
    expect(formatFloat(3)).toBe('3.0');
    expect(formatFloat(0.1)).toBe('0.1');
    expect(formatFloat(0)).toBe('0.0');
    expect(formatFloat(2e7)).toBe('2.0e+7');
  });

  it('recognizes data files', () => {
    expect(isDatasetFile('data/x.jsonl')).toBe(true);
    expect(isDatasetFile('x.parquet')).toBe(true);
    expect(isDatasetFile('alpaca_en_demo')).toBe(false);
    expect(isDatasetFile('llamafactory/alpaca_en')).toBe(false);
  });
});

describe('datasetInfoFromRecords', () => {
  // First records of LLaMA-Factory's demo data; the expected entries are its own dataset_info.json.
  it('describes the LLaMA-Factory demo datasets as its dataset_info.json does', () => {
    expect(datasetInfoFromRecords('identity.json', [{ instruction: 'hi', input: '', output: 'Hello!' }], 'sft')).toEqual({ file_name: 'identity.json' });
    expect(
      datasetInfoFromRecords(
        'dpo_en_demo.json',
        [{ conversations: [{ from: 'human', value: 'Hi!' }], chosen: { from: 'gpt', value: 'a' }, rejected: { from: 'gpt', value: 'b' } }],
        'dpo',
      ),
    ).toEqual({ file_name: 'dpo_en_demo.json', formatting: 'sharegpt', ranking: true, columns: { messages: 'conversations', chosen: 'chosen', rejected: 'rejected' } });
    expect(
      datasetInfoFromRecords(
        'kto_en_demo.json',
        [{ messages: [{ content: 'q', role: 'user' }, { content: 'a', role: 'assistant' }], label: true }],
        'kto',
      ),
    ).toEqual({
      file_name: 'kto_en_demo.json',
      formatting: 'sharegpt',
      columns: { messages: 'messages', kto_tag: 'label' },
      tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant' },
    });
    expect(
      datasetInfoFromRecords(
        'glaive_toolcall_en_demo.json',
        [{ conversations: [{ from: 'human', value: 'q' }, { from: 'function_call', value: '{}' }, { from: 'observation', value: '{}' }, { from: 'gpt', value: 'a' }], tools: '[]' }],
        'sft',
      ),
    ).toEqual({ file_name: 'glaive_toolcall_en_demo.json', formatting: 'sharegpt', columns: { messages: 'conversations', tools: 'tools' } });
    expect(datasetInfoFromRecords('c4_demo.jsonl', [{ text: 'Some web text.' }], 'pt')).toEqual({ file_name: 'c4_demo.jsonl', columns: { prompt: 'text' } });
  });

  it('describes alpaca preference data and OpenAI-style tool messages', () => {
    expect(datasetInfoFromRecords('p.json', [{ instruction: 'q', input: '', chosen: 'a', rejected: 'b' }], 'rm')).toEqual({
      file_name: 'p.json',
      ranking: true,
      columns: { prompt: 'instruction', query: 'input', chosen: 'chosen', rejected: 'rejected' },
    });
    const tools = datasetInfoFromRecords('t.jsonl', [{ messages: [{ role: 'system', content: 's' }, { role: 'user', content: 'q' }, { role: 'tool', content: '{}' }] }], 'sft');
    expect(tools.tags).toEqual({ role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant', observation_tag: 'tool' });
    // OpenAI tool calls are read only by LLaMA-Factory's openai converter (the sharegpt one drops tool_calls)
    expect(tools.formatting).toBe('openai');
    const call = { role: 'assistant', content: '', tool_calls: [{ type: 'function', function: { name: 'f', arguments: '{}' } }] };
    const later = [{ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }] }, { messages: [{ role: 'user', content: 'q' }, call] }];
    expect(datasetInfoFromRecords('t.jsonl', later, 'sft').formatting).toBe('openai');
    expect(datasetInfoFromRecords('t.jsonl', later.slice(0, 1), 'sft').formatting).toBe('sharegpt');
  });

  it('chat and export configs hold no training arguments (llamafactory-cli chat/export reject seed)', () => {
    const { config } = parseConfig('model_name_or_path: m\nseed: 7\ntemplate: qwen3\ntemperature: 0.5\nlearning_rate: 1.0e-3\n');
    const chat = toLlamaFactory(config).yaml;
    expect(chat).not.toMatch(/seed|learning_rate/);
    expect(chat).toMatch(/^template: qwen3$/m);
    expect(chat).toMatch(/^temperature: 0.5$/m);
    const exported = toLlamaFactory(parseConfig('model_name_or_path: m\nseed: 7\nexport_dir: out\n').config).yaml;
    expect(exported).not.toMatch(/seed/);
    expect(exported).toMatch(/^export_dir: out$/m);
    const train = toLlamaFactory(parseConfig('model_name_or_path: m\nseed: 7\ndo_train: true\ndataset: a\n').config).yaml;
    expect(train).toMatch(/^seed: 7$/m);
  });
});
