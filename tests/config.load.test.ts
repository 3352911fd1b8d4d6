// The config schema and loader: LLaMA-Factory names, defaults, types, notices and errors.

import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CONFIG_KEYS,
  ConfigError,
  IGNORED_KEYS,
  RENAMED_KEYS,
  SCHEMA,
  UNSUPPORTED_KEYS,
  checkConfigFor,
  configFromObject,
  defaultConfig,
  editDistance,
  loadConfig,
  parseConfig,
  type ArgSpec,
} from '../src/config';

function problem(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('schema', () => {
  // The keys the brief names; each must be a typed key (or, for gradient checkpointing, LLaMA-Factory's switch).
  const REQUIRED = `model_name_or_path adapter_name_or_path template stage do_train finetuning_type lora_rank lora_alpha
    lora_dropout lora_target additional_target use_rslora use_dora pissa_init pissa_iter pissa_convert loraplus_lr_ratio
    freeze_trainable_layers freeze_trainable_modules quantization_bit quantization_method dataset eval_dataset dataset_dir
    cutoff_len packing neat_packing train_on_prompt mask_history val_size max_samples overwrite_cache
    preprocessing_num_workers learning_rate lr_scheduler_type warmup_ratio warmup_steps num_train_epochs max_steps
    per_device_train_batch_size per_device_eval_batch_size gradient_accumulation_steps max_grad_norm weight_decay
    adam_beta1 adam_beta2 adam_epsilon neftune_noise_alpha seed output_dir overwrite_output_dir logging_steps save_steps
    save_total_limit eval_steps eval_strategy resume_from_checkpoint plot_loss pref_beta pref_ftx pref_loss simpo_gamma
    kto_chosen_weight kto_rejected_weight export_dir export_size export_legacy_format infer_backend max_new_tokens
    temperature top_p top_k repetition_penalty default_system enable_thinking disable_gradient_checkpointing`.split(/\s+/);

  it('covers the LLaMA-Factory keys Crucible reads', () => {
    for (const key of REQUIRED) expect(CONFIG_KEYS, key).toContain(key);
  });

  it('has a type, group, commands and one line of help for every key, and defaults that pass its own checks', () => {
    for (const key of CONFIG_KEYS) {
      const spec: ArgSpec = SCHEMA[key];
      expect(spec.help.length, key).toBeGreaterThan(10);
      expect(spec.help, key).not.toMatch(/\n/);
      expect(spec.commands.length, key).toBeGreaterThan(0);
      if (spec.type === 'enum') expect(spec.choices, key).toContain(spec.default);
      if (spec.default === null) expect(spec.nullable, key).toBe(true);
    }
    expect(() => defaultConfig()).not.toThrow();
  });

  it('keeps supported, ignored, unsupported and renamed keys apart', () => {
    const sets = [CONFIG_KEYS, Object.keys(IGNORED_KEYS), Object.keys(UNSUPPORTED_KEYS), Object.keys(RENAMED_KEYS)];
    const seen = new Map<string, number>();
    sets.forEach((keys, i) => keys.forEach((k) => {
      expect(seen.has(k), `${k} is in two lists`).toBe(false);
      seen.set(k, i);
    }));
  });

  it("uses LLaMA-Factory's and HF's defaults", () => {
    const c = defaultConfig();
    expect(c).toMatchObject({
      stage: 'sft',
      do_train: false,
      finetuning_type: 'lora',
      lora_rank: 8,
      lora_alpha: 16,
      lora_dropout: 0,
      lora_target: ['all'],
      pissa_iter: 16,
      freeze_trainable_layers: 2,
      freeze_trainable_modules: ['all'],
      dataset_dir: 'data',
      cutoff_len: 2048,
      packing: null,
      val_size: 0,
      learning_rate: 5e-5,
      lr_scheduler_type: 'linear',
      warmup_ratio: 0,
      warmup_steps: 0,
      num_train_epochs: 3,
      max_steps: -1,
      per_device_train_batch_size: 8,
      gradient_accumulation_steps: 1,
      max_grad_norm: 1,
      weight_decay: 0,
      adam_beta1: 0.9,
      adam_beta2: 0.999,
      adam_epsilon: 1e-8,
      seed: 42,
      logging_steps: 500,
      save_steps: 500,
      eval_strategy: 'no',
      pref_beta: 0.1,
      pref_ftx: 0,
      pref_loss: 'sigmoid',
      simpo_gamma: 0.5,
      kto_chosen_weight: 1,
      export_size: 5,
      infer_backend: 'huggingface',
      temperature: 0.95,
      top_p: 0.7,
      top_k: 50,
      max_new_tokens: 1024,
      repetition_penalty: 1,
      enable_thinking: true,
      disable_gradient_checkpointing: null,
      memory_budget: null,
      passthrough: {},
    });
  });

  it('measures edit distance', () => {
    expect(editDistance('lerning_rate', 'learning_rate')).toBe(1);
    expect(editDistance('lora_rnak', 'lora_rank')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
  });
});

describe('parseConfig', () => {
  it('reads types as LLaMA-Factory does: "1.0e-4" strings, YAML 1.1 booleans, comma lists', () => {
    const { config } = parseConfig(
      [
        'learning_rate: "1.0e-4"',
        'weight_decay: 1e-2',
        'adam_epsilon: 1.0e-7',
        'lora_rank: 16',
        'lora_dropout: "0.05"',
        'num_train_epochs: 2',
        'do_train: yes',
        'plot_loss: "true"',
        'dataset: identity, alpaca_en_demo',
        'lora_target:\n  - q_proj\n  - v_proj',
        'template: 123',
        'lr_scheduler_kwargs: {min_lr_rate: 0.1}',
        'resume_from_checkpoint: true',
        'warmup_steps: 0.1',
      ].join('\n'),
    );
    expect(config.learning_rate).toBe(1e-4);
    expect(config.weight_decay).toBe(0.01);
    expect(config.adam_epsilon).toBe(1e-7);
    expect(config.lora_rank).toBe(16);
    expect(config.lora_alpha).toBe(32);
    expect(config.lora_dropout).toBe(0.05);
    expect(config.num_train_epochs).toBe(2);
    expect(config.do_train).toBe(true);
    expect(config.plot_loss).toBe(true);
    expect(config.dataset).toEqual(['identity', 'alpaca_en_demo']);
    expect(config.lora_target).toEqual(['q_proj', 'v_proj']);
    expect(config.template).toBe('123');
    expect(config.lr_scheduler_kwargs).toEqual({ min_lr_rate: 0.1 });
    expect(config.resume_from_checkpoint).toBe(true);
    expect(config.warmup_steps).toBe(0.1);
  });

  it('keeps an explicit lora_alpha', () => {
    expect(parseConfig('lora_rank: 4\nlora_alpha: 7').config.lora_alpha).toBe(7);
    expect(parseConfig('lora_rank: 4').config.lora_alpha).toBe(8);
  });

  it('names the key, the value and the expected type on a wrong type', () => {
    const cases: Array<[string, RegExp]> = [
      ['learning_rate: abc', /run\.yaml:2: learning_rate: expected a float .*, got "abc"/],
      ['lora_rank: 8.5', /lora_rank: expected an integer, got 8\.5/],
      ['do_train: maybe', /do_train: expected true or false, got "maybe"/],
      ['stage: SFT', /stage: expected one of pt, sft, rm, dpo, kto, ppo, got "SFT" \(did you mean "sft"\?\)/],
      ['lora_target: {a: 1}', /lora_target: expected a comma-separated list .*, got \{"a":1\}/],
      ['cutoff_len: null', /cutoff_len: expected an integer, got null/],
      ['lora_dropout: 1.5', /lora_dropout: must be < 1, got 1\.5/],
      ['per_device_train_batch_size: 0', /per_device_train_batch_size: must be >= 1, got 0/],
      ['logging_steps: 2.5', /logging_steps: expected a whole number or a fraction below 1, got 2\.5/],
    ];
    for (const [line, re] of cases) expect(problem(() => parseConfig(`seed: 1\n${line}`, [], { fileName: 'run.yaml' }))).toMatch(re);
  });

  it('rejects infinite and NaN numbers, naming the key and the value given', () => {
    expect(problem(() => parseConfig('seed: 1', ['learning_rate=.inf']))).toBe('override learning_rate=.inf: learning_rate: must be a finite number, got .inf');
    expect(problem(() => parseConfig('learning_rate: -.inf', [], { fileName: 'run.yaml' }))).toBe('run.yaml:1: learning_rate: must be a finite number, got -.inf');
    expect(problem(() => parseConfig('max_grad_norm: .nan'))).toBe('config:1: max_grad_norm: must be a finite number, got .nan');
    expect(problem(() => parseConfig('max_steps: "1e999"'))).toBe('config:1: max_steps: must be a finite number, got "1e999"');
    expect(problem(() => configFromObject({ warmup_steps: Infinity }, { source: 'form' }))).toBe('form: warmup_steps: must be a finite number, got .inf');
  });

  it('says that max_steps: 0 means no limit (LLaMA-Factory reads <= 0 as unset)', () => {
    const { config, notices } = parseConfig('max_steps: 0\nnum_train_epochs: 2');
    expect(config.max_steps).toBe(0);
    expect(notices).toContain('note: max_steps: 0 sets no step limit (LLaMA-Factory reads max_steps <= 0 as unset); training runs num_train_epochs (2)');
    expect(parseConfig('max_steps: -1').notices).toEqual([]);
  });

  it('rejects an unknown key, naming the nearest valid one', () => {
    expect(problem(() => parseConfig('lerning_rate: 1.0e-4', [], { fileName: 'a.yaml' }))).toBe(
      'a.yaml:1: unknown key "lerning_rate" (did you mean "learning_rate"?)',
    );
    expect(problem(() => parseConfig('x: 1\nlora_rnak: 4'))).toMatch(/config:2: unknown key "lora_rnak" \(did you mean "lora_rank"\?\)/);
    expect(problem(() => parseConfig('bf17: true'))).toMatch(/did you mean "bf16"/);
  });

  it('reports every problem at once', () => {
    const e = (() => {
      try {
        parseConfig('lerning_rate: 1\nlora_rank: x\n');
      } catch (err) {
        return err as ConfigError;
      }
    })()!;
    expect(e.problems).toHaveLength(2);
  });

  it('names the file, line and column of broken YAML', () => {
    expect(problem(() => parseConfig('stage: sft\nlora_rank: [8\ncutoff_len: 1\n', [], { fileName: 'bad.yaml' }))).toMatch(/^bad\.yaml:\d+:\d+: invalid YAML: /);
    expect(problem(() => parseConfig('stage: sft\n  lora_rank: 8\n', [], { fileName: 'bad.yaml' }))).toMatch(/^bad\.yaml:1:8: invalid YAML: Nested mappings/);
    expect(problem(() => parseConfig('stage: sft\nstage: pt\n', [], { fileName: 'dup.yaml' }))).toMatch(/^dup\.yaml:2:1: invalid YAML: Map keys must be unique/);
    expect(problem(() => parseConfig('- a\n- b\n', [], { fileName: 'list.yaml' }))).toMatch(/^list\.yaml:1:1: expected "key: value" lines/);
  });

  it('accepts PyTorch settings with one notice each, and keeps them', () => {
    const { config, notices } = parseConfig('tf32: false\ndeepspeed: ds_z3.json\nrun_name: demo\ngradient_checkpointing: true', ['tf32=true']);
    expect(notices).toEqual([
      'note: tf32 is a PyTorch setting; Crucible ignores it',
      'note: deepspeed is a distributed-training setting; Crucible ignores it',
      'note: run_name is an experiment-tracking setting; Crucible ignores it',
      'note: gradient_checkpointing is a PyTorch setting; Crucible ignores it (disable_gradient_checkpointing decides activation recomputation)',
    ]);
    expect(config.passthrough).toEqual({ tf32: true, deepspeed: 'ds_z3.json', run_name: 'demo', gradient_checkpointing: true });
  });

  it('accepts LLaMA-Factory features Crucible lacks only at their default', () => {
    expect(() => parseConfig('mix_strategy: concat\nnum_beams: 1\nref_model: null')).not.toThrow();
    expect(problem(() => parseConfig('stage: ppo\nreward_model_adapters: a'))).toMatch(/reward_model_adapters: .* adapters on or quantization of a PPO reward model, which Crucible does not implement/);
    expect(problem(() => parseConfig('finetuning_type: oft\noft_rank: 8'))).toMatch(/set exactly one of oft_rank \(8\) and oft_block_size \(32\)/);
    expect(() => parseConfig('finetuning_type: oft\noft_rank: 8\noft_block_size: 0\nquantization_bit: 4')).not.toThrow();
    expect(problem(() => parseConfig('lr_scheduler_type: polynomial'))).toMatch(/HF schedule Crucible does not implement/);
    expect(problem(() => parseConfig('optim: sgd'))).toMatch(/Crucible implements AdamW only/);
  });

  it('takes num_beams and length_penalty for beam search; beam sampling is refused, eval_num_beams / generation_num_beams yield to num_beams', () => {
    const { config } = parseConfig('num_beams: 4\nlength_penalty: 0.6\ndo_sample: false');
    expect([config.num_beams, config.length_penalty]).toEqual([4, 0.6]);
    expect(problem(() => parseConfig('num_beams: 4'))).toMatch(/num_beams 4 with do_sample: true asks for beam sampling, which Crucible does not implement; set do_sample: false/);
    expect(parseConfig('eval_num_beams: 3').notices).toContain(
      'note: eval_num_beams: 3 does not change generation: as in LLaMA-Factory, num_beams (1) is passed to it and takes precedence; set num_beams: 3 for beam search',
    );
    expect(parseConfig('generation_num_beams: 2\nnum_beams: 2\ndo_sample: false').notices).toEqual([]);
  });

  it('reads an old key name as the new one', () => {
    const { config, notices } = parseConfig('evaluation_strategy: steps\nval_size: 0.1\ndataset: a');
    expect(config.eval_strategy).toBe('steps');
    expect(notices).toContain('note: evaluation_strategy is the old name of eval_strategy; reading it as eval_strategy');
  });

  it("applies LLaMA-Factory's consistency checks", () => {
    expect(problem(() => parseConfig('finetuning_type: full\nuse_dora: true'))).toMatch(/use_dora is only valid for LoRA training/);
    expect(problem(() => parseConfig('finetuning_type: freeze\nadapter_name_or_path: a'))).toMatch(/adapter_name_or_path is only valid/);
    expect(problem(() => parseConfig('mask_history: true\ntrain_on_prompt: true'))).toMatch(/mask_history is incompatible with train_on_prompt/);
    expect(problem(() => parseConfig('stage: dpo\nneat_packing: true'))).toMatch(/neat_packing is only valid for stage: sft/);
    expect(problem(() => parseConfig('quantization_bit: 3'))).toMatch(/4 or 8 bits/);
    expect(problem(() => parseConfig('quantization_bit: 4\nfinetuning_type: full'))).toMatch(/needs finetuning_type: lora/);
    expect(problem(() => parseConfig('bf16: true\nfp16: true'))).toMatch(/config:2: bf16 and fp16 both ask for half precision; set one of them/);
    expect(problem(() => parseConfig('dataset: a\nval_size: 0.1\neval_dataset: b'))).toMatch(/val_size cannot be combined with eval_dataset/);
    expect(problem(() => parseConfig('val_size: 0.1'))).toMatch(/val_size needs a dataset/);
    expect(problem(() => parseConfig('stage: dpo\npref_loss: ipo\ndpo_label_smoothing: 0.1'))).toMatch(/only valid with pref_loss: sigmoid/);
    expect(problem(() => parseConfig('stage: kto\npissa_init: true'))).toMatch(/pissa_init cannot be used with stage kto/);
    expect(problem(() => parseConfig('stage: ppo\npissa_init: true'))).toMatch(/pissa_init cannot be used with stage ppo/);
  });

  it('notes keys given for another stage or method', () => {
    const { notices } = parseConfig('stage: sft\npref_beta: 0.2\nfinetuning_type: full\nlora_rank: 16');
    expect(notices).toContain('note: pref_beta only applies to stage dpo, kto; it has no effect with stage: sft');
    expect(notices).toContain('note: lora_rank only applies to finetuning_type lora; it has no effect with full');
  });

  it('applies key=value overrides after the file, read as YAML scalars', () => {
    const { config, given } = parseConfig('learning_rate: 1.0e-4\nlora_rank: 8', ['learning_rate=5e-5', 'lora_rank=32', 'dataset=a,b', 'template=null', 'do_train=true']);
    expect(config.learning_rate).toBe(5e-5);
    expect(config.lora_rank).toBe(32);
    expect(config.lora_alpha).toBe(64);
    expect(config.dataset).toEqual(['a', 'b']);
    expect(config.template).toBeNull();
    expect(config.do_train).toBe(true);
    expect(given).toEqual(['learning_rate', 'lora_rank', 'dataset', 'template', 'do_train']);
    expect(problem(() => parseConfig('', ['lora_rank=abc']))).toBe('override lora_rank=abc: lora_rank: expected an integer, got "abc"');
    expect(problem(() => parseConfig('', ['lora_rank']))).toMatch(/not key=value/);
  });

  it('treats an empty file as all defaults', () => {
    expect(parseConfig('').config).toEqual(defaultConfig());
    expect(parseConfig('# only a comment\n').config).toEqual(defaultConfig());
  });
});

describe('loadConfig and configFromObject', () => {
  it('reads a file by path and names it in errors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crucible-config-'));
    const path = join(dir, 'run.yaml');
    writeFileSync(path, 'stage: sft\nlearning_rate: abc\n');
    await expect(loadConfig(path)).rejects.toThrow(`${path}:2: learning_rate: expected a float`);
    writeFileSync(path, 'stage: pt\n');
    expect((await loadConfig(path, ['cutoff_len=512'])).config).toMatchObject({ stage: 'pt', cutoff_len: 512 });
    await expect(loadConfig(join(dir, 'missing.yaml'), [], { fileName: 'missing.yaml' })).rejects.toThrow('cannot read config missing.yaml: no such file');
    // YAML text works as well
    expect((await loadConfig('stage: rm\n')).config.stage).toBe('rm');
  });

  it('builds the same config from an object as from YAML, and round-trips a config', () => {
    const yaml = parseConfig('stage: dpo\nlearning_rate: 5.0e-6\nlora_target: q_proj,v_proj\nbf16: true\npref_loss: simpo');
    const obj = configFromObject({ stage: 'dpo', learning_rate: '5.0e-6', lora_target: ['q_proj', 'v_proj'], bf16: true, pref_loss: 'simpo' });
    expect(obj.config).toEqual(yaml.config);
    expect(configFromObject(obj.config).config).toEqual(obj.config);
    expect(() => configFromObject({ learning_rat: 1 }, { source: 'form' })).toThrow('form: unknown key "learning_rat" (did you mean "learning_rate"?)');
  });
});

describe('checkConfigFor', () => {
  it('asks each command for what it needs', () => {
    const c = (y: string) => parseConfig(y).config;
    expect(() => checkConfigFor(c('do_train: true\ndataset: a'), 'train')).toThrow(/model_name_or_path is required/);
    expect(() => checkConfigFor(c('model_name_or_path: m'), 'train')).toThrow(/set do_train: true/);
    expect(() => checkConfigFor(c('model_name_or_path: m\ndo_train: true'), 'train')).toThrow(/do_train needs a dataset/);
    expect(() => checkConfigFor(c('model_name_or_path: m\ndo_train: true\ndataset: a\neval_strategy: steps'), 'train')).toThrow(/eval_dataset or val_size/);
    expect(() => checkConfigFor(c('model_name_or_path: m\ndo_train: true\ndataset: a'), 'train')).not.toThrow();
    expect(() => checkConfigFor(c('model_name_or_path: m'), 'chat')).not.toThrow();
    expect(() => checkConfigFor(c('model_name_or_path: m'), 'export')).toThrow(/export needs export_dir/);
    expect(() => checkConfigFor(c('model_name_or_path: m\nexport_dir: out\nquantization_bit: 4'), 'export')).toThrow(/cannot merge into a quantized model/);
  });
});
