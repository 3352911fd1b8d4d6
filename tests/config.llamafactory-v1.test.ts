// LLaMA-Factory v1 configs (examples/v1): recognised as v1, read into the v0 keys the engine
// runs, their data YAML read into dataset_info entries, multi-GPU settings noted, and what
// Crucible cannot do refused with a message naming it.

import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, relative } from 'node:path';
import { ConfigError, configFromObject, parseConfig, toLlamaFactory, type LoadResult } from '../src/config';
import { isV1Config } from '../src/config/llamafactory-v1';
import { readV1DataYaml } from '../src/config/v1-data';

const V1 = fileURLToPath(new URL('./fixtures/llamafactory-examples/v1/', import.meta.url));
const LF_DATA = fileURLToPath(new URL('./fixtures/data/llamafactory/', import.meta.url));

/** File access as from a LLaMA-Factory checkout (its examples name data/v1_sft_demo.yaml ...): data/ is the fixtures' copy. */
const access = {
  readText: (path: string) => {
    const full = join(LF_DATA, path.replace(/^data\//, ''));
    return path.startsWith('data/') && existsSync(full) ? readFileSync(full, 'utf8') : null;
  },
  localPath: (path: string) => `/lf/${path}`,
};

function load(name: string, overrides: string[] = []): LoadResult {
  return parseConfig(readFileSync(join(V1, name), 'utf8'), overrides, { fileName: name, v1: access });
}

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).problems.join('\n');
  }
  throw new Error('expected a ConfigError');
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? yamlFiles(join(dir, e.name)) : [join(dir, e.name)]));
}

/** Each example's outcome: loads (notices only), or refused with a message naming the feature. */
const OUTCOME: Record<string, 'loads' | RegExp> = {
  'train_batching_strategy/train_full_fsdp2_batching_normal.yaml': 'loads',
  'train_batching_strategy/train_full_fsdp2_dynamic_batching.yaml': 'loads',
  'train_batching_strategy/train_full_fsdp2_dynamic_padding_free.yaml': 'loads',
  'train_batching_strategy/train_full_fsdp2_padding_free.yaml': 'loads',
  'train_freeze/train_freeze_sft.yaml': 'loads',
  'train_full/train_full_deepspeed.yaml': 'loads',
  'train_full/train_full_fsdp2.yaml': 'loads',
  'train_full/train_full_liger_kernel.yaml': 'loads',
  'train_full/train_full_muon.yaml': /optim_config: name "muon": Crucible implements AdamW only/,
  'train_full/train_full_qwen3_moe_fsdpturbo_ep_fsdp.yaml': 'loads',
  'train_full/train_full_ulysses_cp.yaml': 'loads',
  'train_full/train_multimodal.yaml': /multimodal_demo: no converter: records in LLaMA-Factory v1's own message format/,
  'train_lora/export_lora.yaml': 'loads',
  'train_lora/train_lora_dpo.yaml': 'loads',
  'train_lora/train_lora_sft.yaml': 'loads',
  'train_lora/train_lora_sft_rank0.yaml': 'loads',
  'train_qlora/quantization.yaml': 'loads',
};

describe('LLaMA-Factory v1 example configs', () => {
  const names = yamlFiles(V1).map((f) => relative(V1, f)).sort();

  it('are all listed here', () => {
    expect(names).toEqual(Object.keys(OUTCOME).sort());
  });

  it.each(names)('%s loads as v1 or is refused naming the feature', (name) => {
    const outcome = OUTCOME[name]!;
    if (outcome === 'loads') {
      const { config, notices } = load(name);
      expect(notices[0]).toMatch(/is a LLaMA-Factory v1 config/);
      for (const n of notices) expect(n).not.toMatch(/unknown key|did you mean/);
      expect(config.model_name_or_path).toMatch(/^Qwen\//);
    } else {
      expect(refusal(() => load(name))).toMatch(outcome);
    }
  });

  it('train_lora_sft: LoRA fields, v1 defaults, the data YAML as dataset_info entries', () => {
    const { config, notices } = load('train_lora/train_lora_sft.yaml');
    expect(config).toMatchObject({
      model_name_or_path: 'Qwen/Qwen3-4B',
      stage: 'sft',
      do_train: true,
      finetuning_type: 'lora',
      lora_rank: 16,
      lora_alpha: 32,
      lora_dropout: 0.05,
      lora_target: ['all'],
      per_device_train_batch_size: 1,
      gradient_accumulation_steps: 1,
      cutoff_len: 2048,
      learning_rate: 1e-4,
      max_steps: 10,
      output_dir: './outputs/test_lora',
      // v1: torch AdamW's weight decay, a constant rate, log every step, no intermediate saves
      weight_decay: 0.01,
      lr_scheduler_type: 'constant',
      logging_steps: 1,
      save_strategy: 'no',
      max_new_tokens: 128,
      template: null,
      dataset: ['identity', 'alpaca_en_demo'],
      dataset_dir: '.',
    });
    expect(config.dataset_info).toEqual({
      identity: { file_name: '/lf/data/identity.json', formatting: 'alpaca', columns: { prompt: 'instruction', query: 'input', response: 'output', system: 'system' } },
      alpaca_en_demo: {
        file_name: '/lf/data/alpaca_en_demo.json',
        num_samples: 500,
        formatting: 'alpaca',
        columns: { prompt: 'instruction', query: 'input', response: 'output', system: 'system' },
      },
    });
    expect(notices).toContain('note: dist_config (name: fsdp2, with dcp_path) spreads training over several GPUs; Crucible trains on one GPU and ignores it');
    expect(notices).toContain('note: kernel_config (name: auto) chooses PyTorch/Triton kernels; Crucible runs its own WebGPU kernels and ignores it');
  });

  it('v1 defaults apply where the config is silent: full fine-tuning, LoRA r=8 alpha=16 dropout 0.05', () => {
    expect(load('train_full/train_full_fsdp2.yaml').config.finetuning_type).toBe('full');
    const lora = parseConfig('model: m\npeft_config:\n  name: lora\n', [], { v1: access }).config;
    expect(lora).toMatchObject({ finetuning_type: 'lora', lora_rank: 8, lora_alpha: 16, lora_dropout: 0.05, lora_target: ['all'], per_device_train_batch_size: 1 });
    expect(lora.output_dir).toMatch(/^outputs\/[0-9a-f]{32}$/);
  });

  it('freeze, QLoRA and the export example map to their v0 keys', () => {
    expect(load('train_freeze/train_freeze_sft.yaml').config).toMatchObject({ finetuning_type: 'freeze', freeze_trainable_layers: 2, freeze_trainable_modules: ['all'], freeze_extra_modules: null });
    const q = load('train_qlora/quantization.yaml');
    expect(q.config).toMatchObject({ finetuning_type: 'lora', quantization_bit: 4 });
    const e = load('train_lora/export_lora.yaml').config;
    // no train_dataset: a merge config (llamafactory-cli merge), not a training run
    expect(e).toMatchObject({ adapter_name_or_path: ['./outputs/test_lora'], export_dir: './merge_lora_model', export_size: 5, do_train: false });
    expect(e.passthrough).toMatchObject({ infer_dtype: 'auto' });
  });

  it('the DPO example trains DPO on its Hub dataset, read as pair data', () => {
    const { config, notices } = load('train_lora/train_lora_dpo.yaml');
    expect(config.stage).toBe('dpo');
    expect(config.dataset).toEqual(['dpo_zh_demo']);
    expect(config.dataset_info).toEqual({
      dpo_zh_demo: { hf_hub_url: 'HuggingFaceH4/orca_dpo_pairs', split: 'train_prefs', formatting: 'openai', ranking: true, columns: { chosen: 'chosen', rejected: 'rejected', tools: 'tools' } },
    });
    expect(notices.join('\n')).toMatch(/converter pair, so this trains DPO/);
  });

  it('batching strategies: padding_free is the same batches, dynamic ones pack to the same token budget', () => {
    expect(load('train_batching_strategy/train_full_fsdp2_padding_free.yaml').config.neat_packing).toBe(false);
    const dyn = load('train_batching_strategy/train_full_fsdp2_dynamic_padding_free.yaml');
    expect(dyn.config).toMatchObject({ neat_packing: true, per_device_train_batch_size: 4 });
    expect(dyn.notices.join('\n')).toMatch(/batching_strategy dynamic_padding_free .*(neat_packing)/);
    expect(load('train_batching_strategy/train_full_fsdp2_dynamic_batching.yaml').config.neat_packing).toBe(true);
    // LLaMA-Factory's own check: dynamic_batching is step-driven
    expect(refusal(() => load('train_batching_strategy/train_full_fsdp2_dynamic_batching.yaml', ['max_steps=null']))).toMatch(/dynamic_batching requires max_steps/);
  });

  it('multi-GPU keys are noted, never errors', () => {
    const moe = load('train_full/train_full_qwen3_moe_fsdpturbo_ep_fsdp.yaml').notices.join('\n');
    expect(moe).toMatch(/dist_config \(name: fsdpturbo, with ep_size, ep_dispatcher\) spreads training over several GPUs/);
    expect(moe).toMatch(/init_config \(name: init_on_meta\) places the weights across GPU ranks/);
    expect(moe).toMatch(/kernel_config \(name: auto, flash-linear-attention, with include_kernels, chunk_size\)/);
    expect(moe).toMatch(/cp_size: data\/context\/model-parallel layout over several GPUs/);
    const cp = load('train_full/train_full_ulysses_cp.yaml').notices.join('\n');
    expect(cp).toMatch(/cp_size, cp_mode: .* ignores them/);
    expect(cp).toMatch(/note: flash_attn is a PyTorch setting; Crucible ignores it/);
  });

  it('overrides: v1 keys, dotted plugin fields, and v0 keys', () => {
    const { config } = load('train_lora/train_lora_sft.yaml', ['model=/tiny', 'peft_config.r=4', 'micro_batch_size=2', 'global_batch_size=8', 'max_samples=8']);
    expect(config).toMatchObject({ model_name_or_path: '/tiny', lora_rank: 4, lora_alpha: 32, per_device_train_batch_size: 2, gradient_accumulation_steps: 4, max_samples: 8 });
    expect(refusal(() => load('train_lora/train_lora_sft.yaml', ['micro_batch_size=3', 'global_batch_size=8']))).toMatch(/global_batch_size: must be a multiple of micro_batch_size/);
  });

  it('unknown keys get suggestions among v1 keys; plugin configs need a name and known fields', () => {
    const text = 'model: m\nmicro_batch_sise: 2\n';
    expect(refusal(() => parseConfig(text, [], { v1: access }))).toMatch(/unknown key "micro_batch_sise" in a LLaMA-Factory v1 config \(did you mean "micro_batch_size"\?\)/);
    expect(refusal(() => parseConfig('model: m\npeft_config:\n  r: 8\n', [], { v1: access }))).toMatch(/peft_config: a plugin config must have a 'name' field/);
    expect(refusal(() => parseConfig('model: m\npeft_config:\n  name: lora\n  rank: 8\n', [], { v1: access }))).toMatch(/unknown field rank for lora/);
    expect(refusal(() => parseConfig('model: m\npeft_config:\n  name: oft\n', [], { v1: access }))).toMatch(/lora and freeze/);
    expect(refusal(() => parseConfig('model: m\nmodel_class: cls\n', [], { v1: access }))).toMatch(/model_class: "cls": Crucible trains causal language models only/);
    expect(refusal(() => parseConfig('model: m\ncustom_chat_template: "{{ x }}"\n', [], { v1: access }))).toMatch(/custom_chat_template: a chat template given as Jinja text/);
    expect(refusal(() => parseConfig('model: m\nlr_scheduler_config:\n  name: cosine\n', [], { v1: access }))).toMatch(/lr_scheduler_config: name "cosine"/);
  });

  it('eval_dataset is noted, as LLaMA-Factory v1 neither loads nor evaluates it', () => {
    const { config, notices } = load('train_lora/train_lora_sft.yaml', ['eval_dataset=data/v1_sft_demo.yaml']);
    expect(config.eval_dataset).toBeNull();
    expect(notices.join('\n')).toMatch(/eval_dataset: LLaMA-Factory v1 neither loads nor evaluates it yet/);
  });

  it('a v0 key inside a v1 config is read with a notice', () => {
    const { config, notices } = parseConfig('model: m\ntemplate: qwen3_nothink\n', [], { v1: access });
    expect(config.template).toBe('qwen3_nothink');
    expect(notices).toContain('note: template is a LLaMA-Factory v0 key (a v1 config has no such key); Crucible reads it as v0 does');
  });

  it('train_dataset must name a readable data YAML', () => {
    expect(refusal(() => parseConfig('model: m\ntrain_dataset: llamafactory/v1-sft-demo\n', [], { v1: access }))).toMatch(/v1 in its own message format, which Crucible does not read/);
    expect(refusal(() => parseConfig('model: m\ntrain_dataset: llamafactory/v1-sft-demo/dataset_info.yaml\n', [], { v1: access }))).toMatch(/a data YAML on the Hub is not fetched/);
    expect(refusal(() => parseConfig('model: m\ntrain_dataset: nowhere.yaml\n', [], { v1: access }))).toMatch(/cannot read the data YAML "nowhere.yaml" \(no such file\)/);
    expect(refusal(() => configFromObject({ model: 'm', train_dataset: 'data/v1_sft_demo.yaml' }))).toMatch(/no file access here/);
  });

  it('data YAML entries: converter, source, size and the refusals', () => {
    const read = (text: string) => readV1DataYaml(text, 'd.yaml', (p) => p);
    expect(read('a:\n  path: x.jsonl\n  source: local\n  converter: sharegpt\n').entries).toEqual({ a: { file_name: 'x.jsonl', formatting: 'sharegpt', columns: { messages: 'conversations', tools: 'tools' } } });
    expect(read('a:\n  path: x.jsonl\n  source: local\n').problems[0]).toMatch(/d.yaml: a: no converter/);
    expect(read('a:\n  path: x\n  source: s3\n  converter: alpaca\n').problems[0]).toMatch(/source: "s3" is a data loader Crucible does not have/);
    expect(read('a:\n  path: x\n  converter: alpaca\n  weight: 0.5\n').problems[0]).toMatch(/weight: resampling by weight is not implemented/);
    expect(read('a:\n  path: x\n  converter: alpaca\n  streaming: true\n').problems[0]).toMatch(/streaming: dataset streaming is not implemented/);
    expect(read('a:\n  path: x\n  converter: alpaca\n  size: 0\n').problems[0]).toMatch(/size: expected a positive whole number/);
    expect(read('a:\n  path: x\n  converter: alpaca\n  colums: {}\n').problems[0]).toMatch(/unknown key colums/);
  });

  it('v0 configs are not taken for v1', () => {
    expect(isV1Config(['model_name_or_path', 'stage', 'dataset', 'output_dir'])).toBe(false);
    expect(isV1Config(['model', 'train_dataset'])).toBe(true);
  });

  it('export-config writes the v1 datasets into dataset_info.json and keeps dataset_info out of the YAML', () => {
    const { config } = load('train_lora/train_lora_sft.yaml');
    const run = toLlamaFactory(config, { datasetDir: 'data' });
    expect(run.yaml).not.toMatch(/dataset_info/);
    expect(run.yaml).toMatch(/^dataset: identity,alpaca_en_demo$/m);
    expect(run.datasetInfo).toEqual(config.dataset_info);
  });
});
