// LLaMA-Factory's training and inference arguments as Crucible reads them: one flat namespace of
// keys (LLaMA-Factory merges its model/data/training/finetuning/generating dataclasses the same
// way), each with a type, LLaMA-Factory's default, where it applies and one line of help.
//
// Three kinds of keys:
//  - SCHEMA: keys Crucible reads. Names, defaults and meanings follow LLaMA-Factory
//    (src/llamafactory/hparams/*.py) and HF TrainingArguments, so a YAML moves between the two
//    unchanged.
//  - IGNORED_KEYS: settings of PyTorch and its ecosystem (precision flags, DeepSpeed, DDP, loggers,
//    vLLM ...) that have no meaning on WebGPU. Accepted with a one-line notice, and kept for export.
//  - UNSUPPORTED_KEYS: LLaMA-Factory features Crucible does not implement (PPO,
//    multimodal ...). Accepted at their default value; any other value is an error, because
//    ignoring it would silently train something else.
// Anything else is an unknown key (an error naming the nearest known key).

export const STAGES = ['pt', 'sft', 'rm', 'dpo', 'kto', 'ppo'] as const;
export type Stage = (typeof STAGES)[number];
export const FINETUNING_TYPES = ['lora', 'oft', 'freeze', 'full'] as const;
export type FinetuningType = (typeof FINETUNING_TYPES)[number];
/** The CLI commands that read a key. */
export type Command = 'train' | 'chat' | 'api' | 'export' | 'preview' | 'bench' | 'eval';
export type Group =
  | 'model'
  | 'method'
  | 'lora'
  | 'oft'
  | 'freeze'
  | 'quantization'
  | 'dataset'
  | 'train'
  | 'output'
  | 'eval'
  | 'preference'
  | 'export'
  | 'generation';

/**
 * string: text; int / float: numbers ("1.0e-4" strings accepted, as LLaMA-Factory does);
 * number: int or float (HF's "steps or ratio" keys); bool; enum: one of `choices`;
 * list: comma-separated string or YAML list, stored as string[]; dict: mapping or JSON string;
 * checkpoint: a path, or true for "the latest checkpoint in output_dir".
 */
export type ArgType = 'string' | 'int' | 'float' | 'number' | 'bool' | 'enum' | 'list' | 'dict' | 'checkpoint';

export interface ArgSpec<T = unknown> {
  readonly type: ArgType;
  readonly default: T;
  readonly nullable: boolean;
  readonly choices?: readonly string[];
  readonly group: Group;
  /** Training stages the key matters to (absent: all). */
  readonly stages?: readonly Stage[];
  /** Fine-tuning methods the key matters to (absent: all). */
  readonly methods?: readonly FinetuningType[];
  readonly commands: readonly Command[];
  readonly help: string;
  /** Inclusive bounds; `gt` / `lt` are exclusive ones. */
  readonly min?: number;
  readonly max?: number;
  readonly gt?: number;
  readonly lt?: number;
}

interface Opts {
  group: Group;
  help: string;
  commands?: readonly Command[];
  stages?: readonly Stage[];
  methods?: readonly FinetuningType[];
  min?: number;
  max?: number;
  gt?: number;
  lt?: number;
}

const ALL: readonly Command[] = ['train', 'chat', 'api', 'export', 'preview', 'bench', 'eval'];
const TRAIN: readonly Command[] = ['train', 'bench'];
const DATA: readonly Command[] = ['train', 'preview', 'bench'];
const GEN: readonly Command[] = ['chat', 'api'];
/** Sampling keys: chat, the server, and stage ppo's rollouts. */
const SAMPLING: readonly Command[] = ['chat', 'api', 'train'];
const TEMPLATE: readonly Command[] = ['train', 'chat', 'api', 'preview', 'bench', 'export', 'eval'];
const EVAL: readonly Command[] = ['eval'];

function spec<T>(type: ArgType, def: T, nullable: boolean, o: Opts, choices?: readonly string[]): ArgSpec<T> {
  const { commands = ALL, ...rest } = o;
  return { type, default: def, nullable, commands, ...rest, ...(choices ? { choices } : {}) };
}
const str = (def: string, o: Opts) => spec<string>('string', def, false, o);
const strOrNull = (o: Opts) => spec<string | null>('string', null, true, o);
const int = (def: number, o: Opts) => spec<number>('int', def, false, o);
const intOrNull = (o: Opts) => spec<number | null>('int', null, true, o);
const float = (def: number, o: Opts) => spec<number>('float', def, false, o);
const floatOrNull = (o: Opts) => spec<number | null>('float', null, true, o);
const num = (def: number, o: Opts) => spec<number>('number', def, false, o);
const numOrNull = (o: Opts) => spec<number | null>('number', null, true, o);
const bool = (def: boolean, o: Opts) => spec<boolean>('bool', def, false, o);
const boolOrNull = (def: boolean | null, o: Opts) => spec<boolean | null>('bool', def, true, o);
const list = (def: string[], o: Opts) => spec<string[]>('list', def, false, o);
const listOrNull = (o: Opts) => spec<string[] | null>('list', null, true, o);
const dictOrNull = (o: Opts) => spec<Record<string, unknown> | null>('dict', null, true, o);
function oneOf<const C extends readonly string[]>(choices: C, def: C[number], o: Opts): ArgSpec<C[number]> {
  return spec<C[number]>('enum', def, false, o, choices);
}

export const LR_SCHEDULERS = ['constant', 'constant_with_warmup', 'linear', 'cosine', 'cosine_with_min_lr'] as const;

export const PREF_LOSSES = ['sigmoid', 'hinge', 'ipo', 'kto_pair', 'orpo', 'simpo'] as const;

export const SCHEMA = {
  // ---- model ---------------------------------------------------------------------------------
  model_name_or_path: strOrNull({
    group: 'model',
    help: 'Hub model id (org/name) or local directory with config.json, *.safetensors and tokenizer files.',
  }),
  adapter_name_or_path: listOrNull({
    group: 'model',
    methods: ['lora'],
    help: 'PEFT LoRA adapter directory(ies) or Hub id(s) to load on top of the model; comma-separated.',
  }),
  cache_dir: strOrNull({ group: 'model', help: 'Where downloaded models are stored (default: $HF_HOME/hub).' }),
  model_revision: str('main', { group: 'model', help: 'Hub branch, tag or commit of the model.' }),
  hf_hub_token: strOrNull({ group: 'model', help: 'Hugging Face token (default: $HF_TOKEN).' }),
  template: strOrNull({
    group: 'model',
    commands: TEMPLATE,
    help: "Prompt template (LLaMA-Factory's names, e.g. qwen3_nothink, llama3); null: the tokenizer's chat_template.",
  }),
  default_system: strOrNull({
    group: 'model',
    commands: TEMPLATE,
    help: "Replace the template's default system message.",
  }),
  enable_thinking: boolOrNull(true, {
    group: 'model',
    commands: TEMPLATE,
    help: 'Enable thinking mode of reasoning models (templates that support it).',
  }),
  // ---- eval (`crucible eval`: LLaMA-Factory's EvaluationArguments) -----------------------------
  task: strOrNull({ group: 'eval', commands: EVAL, help: 'Multiple-choice benchmark folder under task_dir (mmlu_test, ceval_validation, cmmlu_test, ...).' }),
  task_dir: str('evaluation', { group: 'eval', commands: EVAL, help: 'Folder holding the benchmark folders.' }),
  batch_size: int(4, { group: 'eval', commands: EVAL, min: 1, help: 'Questions per forward pass.' }),
  lang: oneOf(['en', 'zh'], 'en', { group: 'eval', commands: EVAL, help: 'Language of the prompt wording.' }),
  n_shot: int(5, { group: 'eval', commands: EVAL, min: 0, help: 'Examples from the dev split put before each question.' }),
  save_dir: strOrNull({ group: 'eval', commands: EVAL, help: 'Where results.json and results.log go (must not exist yet); null: print only.' }),
  preserve_thinking: bool(false, {
    group: 'model',
    commands: TEMPLATE,
    help: 'Keep the thinking content of earlier turns in multi-turn prompts.',
  }),
  tool_format: strOrNull({
    group: 'model',
    commands: TEMPLATE,
    help: 'Tool-call format for function-calling data and chat (default: the template\'s own).',
  }),
  infer_backend: oneOf(['huggingface', 'vllm', 'sglang', 'ktransformers'], 'huggingface', {
    group: 'model',
    commands: GEN,
    help: "LLaMA-Factory's inference engine; Crucible always generates with its WebGPU engine.",
  }),

  // ---- method --------------------------------------------------------------------------------
  stage: oneOf(STAGES, 'sft', {
    group: 'method',
    commands: TRAIN,
    help: 'pt: pre-training; sft: supervised fine-tuning; rm: reward model; dpo: preference (DPO/ORPO/SimPO); kto: KTO; ppo: PPO against a reward model.',
  }),
  do_train: bool(false, { group: 'method', commands: TRAIN, help: 'Run training (LLaMA-Factory configs set it to true).' }),
  do_eval: bool(false, { group: 'eval', commands: TRAIN, help: 'Evaluate on eval_dataset or the val_size split.' }),
  do_predict: bool(false, { group: 'eval', commands: TRAIN, help: 'Generate for eval_dataset (after training, with its adapter): generated_predictions.jsonl, predict_results.json with BLEU-4 / ROUGE.' }),
  predict_with_generate: bool(false, { group: 'eval', commands: TRAIN, help: 'With do_predict: predict by generation (Crucible predicts only this way).' }),
  finetuning_type: oneOf(FINETUNING_TYPES, 'lora', {
    group: 'method',
    help: 'lora: low-rank adapters; oft: orthogonal fine-tuning (block rotations of each input); freeze: train the last layers only; full: all weights.',
  }),

  // ---- LoRA ----------------------------------------------------------------------------------
  lora_rank: int(8, { group: 'lora', methods: ['lora'], commands: TRAIN, min: 1, help: 'LoRA rank r.' }),
  lora_alpha: intOrNull({
    group: 'lora',
    methods: ['lora'],
    commands: TRAIN,
    gt: 0,
    help: 'LoRA scale numerator (scaling = alpha / r); default 2 * lora_rank.',
  }),
  lora_dropout: float(0, {
    group: 'lora',
    methods: ['lora'],
    commands: TRAIN,
    min: 0,
    lt: 1,
    help: 'Dropout on the LoRA input, in training (stages pt, sft, rm; off in dpo and kto, as LLaMA-Factory).',
  }),
  lora_target: list(['all'], {
    group: 'lora',
    methods: ['lora'],
    commands: TRAIN,
    help: 'Modules to adapt: comma-separated names (q_proj,v_proj,...) or "all" linear layers.',
  }),
  additional_target: listOrNull({
    group: 'lora',
    methods: ['lora'],
    commands: TRAIN,
    help: 'Extra modules trained in full and saved with the adapter (e.g. embed_tokens,lm_head).',
  }),
  use_rslora: bool(false, {
    group: 'lora',
    methods: ['lora'],
    commands: TRAIN,
    help: 'Rank-stabilized LoRA: scaling = alpha / sqrt(r).',
  }),
  use_dora: bool(false, {
    group: 'lora',
    methods: ['lora'],
    commands: TRAIN,
    help: 'Weight-decomposed LoRA (DoRA): train a magnitude vector per output too.',
  }),
  pissa_init: bool(false, {
    group: 'lora',
    methods: ['lora'],
    commands: TRAIN,
    help: 'Initialize LoRA from the principal singular vectors of the weights (PiSSA).',
  }),
  pissa_iter: int(16, {
    group: 'lora',
    methods: ['lora'],
    commands: TRAIN,
    min: -1,
    help: 'Fast-SVD iterations for PiSSA; -1 for an exact SVD.',
  }),
  pissa_convert: bool(false, {
    group: 'lora',
    methods: ['lora'],
    commands: TRAIN,
    help: 'Convert the trained PiSSA adapter into a plain LoRA adapter when saving.',
  }),
  loraplus_lr_ratio: floatOrNull({
    group: 'lora',
    methods: ['lora'],
    commands: TRAIN,
    gt: 0,
    help: 'LoRA+: learning rate of B = ratio * learning rate of A.',
  }),
  loraplus_lr_embedding: float(1e-6, {
    group: 'lora',
    methods: ['lora'],
    commands: TRAIN,
    min: 0,
    help: 'LoRA+: learning rate of LoRA on embedding layers.',
  }),
  create_new_adapter: bool(false, {
    group: 'lora',
    methods: ['lora'],
    commands: TRAIN,
    help: 'Train a fresh adapter on top of adapter_name_or_path instead of continuing it.',
  }),

  // ---- OFT -----------------------------------------------------------------------------------
  oft_rank: int(0, {
    group: 'oft',
    methods: ['oft'],
    commands: TRAIN,
    min: 0,
    help: 'OFT blocks per layer (PEFT r); 0 takes them from oft_block_size. Set exactly one of the two.',
  }),
  oft_block_size: int(32, {
    group: 'oft',
    methods: ['oft'],
    commands: TRAIN,
    min: 0,
    help: 'Size of each orthogonal block (in_features / oft_rank); 0 when oft_rank is set.',
  }),
  oft_target: list(['all'], {
    group: 'oft',
    methods: ['oft'],
    commands: TRAIN,
    help: 'Modules to adapt: comma-separated names (q_proj,v_proj,...) or "all" linear layers.',
  }),
  module_dropout: float(0, {
    group: 'oft',
    methods: ['oft'],
    commands: TRAIN,
    min: 0,
    lt: 1,
    help: "OFT's multiplicative dropout, saved in adapter_config.json; PEFT's OFT linear layers never apply it, nor does Crucible.",
  }),

  // ---- freeze --------------------------------------------------------------------------------
  freeze_trainable_layers: int(2, {
    group: 'freeze',
    methods: ['freeze'],
    commands: TRAIN,
    help: 'Trainable layers for freeze tuning: n > 0 the last n, n < 0 the first |n|.',
  }),
  freeze_trainable_modules: list(['all'], {
    group: 'freeze',
    methods: ['freeze'],
    commands: TRAIN,
    help: 'Trainable modules inside those layers: comma-separated names or "all".',
  }),
  freeze_extra_modules: listOrNull({
    group: 'freeze',
    methods: ['freeze'],
    commands: TRAIN,
    help: 'Modules outside the hidden layers to train as well (e.g. embed_tokens).',
  }),

  // ---- quantization --------------------------------------------------------------------------
  quantization_bit: intOrNull({
    group: 'quantization',
    help: 'Quantize the frozen base weights on load: 4 or 8 bits (QLoRA).',
  }),
  quantization_method: oneOf(['bnb', 'gptq', 'awq', 'aqlm', 'quanto', 'eetq', 'hqq', 'mxfp4', 'fp8'], 'bnb', {
    group: 'quantization',
    help: "LLaMA-Factory's quantization library; Crucible quantizes with its own 4/8-bit block formats.",
  }),

  // ---- dataset -------------------------------------------------------------------------------
  dataset: listOrNull({
    group: 'dataset',
    commands: DATA,
    help: 'Training datasets: names from dataset_dir/dataset_info.json, comma-separated (Crucible also takes data files in dataset_dir).',
  }),
  eval_dataset: listOrNull({
    group: 'dataset',
    commands: DATA,
    help: 'Evaluation datasets, same forms as dataset.',
  }),
  dataset_info: dictOrNull({
    group: 'dataset',
    commands: DATA,
    help: 'Crucible: dataset_info.json entries given inline (a LLaMA-Factory v1 data YAML is read into this); names defined here are found before dataset_dir/dataset_info.json.',
  }),
  dataset_dir: str('data', { group: 'dataset', commands: DATA, help: 'Folder holding dataset_info.json and the data files.' }),
  cutoff_len: int(2048, { group: 'dataset', commands: DATA, min: 1, help: 'Maximum tokens per example (longer ones are truncated).' }),
  train_on_prompt: bool(false, {
    group: 'dataset',
    commands: DATA,
    stages: ['sft'],
    help: 'Also compute the loss on prompt tokens.',
  }),
  mask_history: bool(false, {
    group: 'dataset',
    commands: DATA,
    stages: ['sft'],
    help: 'Train on the last turn only; earlier turns are masked.',
  }),
  packing: boolOrNull(null, {
    group: 'dataset',
    commands: DATA,
    help: 'Pack several examples into each sequence; null: on for pt, off otherwise.',
  }),
  neat_packing: bool(false, {
    group: 'dataset',
    commands: DATA,
    stages: ['sft'],
    help: 'Packing without attention across packed examples (implies packing).',
  }),
  val_size: num(0, {
    group: 'dataset',
    commands: DATA,
    min: 0,
    help: 'Hold out a validation split: a fraction in [0,1) or a number of examples.',
  }),
  max_samples: intOrNull({ group: 'dataset', commands: DATA, min: 1, help: 'Use at most this many examples of each dataset.' }),
  overwrite_cache: bool(false, { group: 'dataset', commands: DATA, help: 'Re-tokenize instead of using cached tokenized datasets.' }),
  preprocessing_num_workers: intOrNull({
    group: 'dataset',
    commands: DATA,
    min: 1,
    help: 'Parallel workers for tokenization (Node worker threads).',
  }),
  disable_shuffling: bool(false, { group: 'dataset', commands: TRAIN, help: 'Keep the training set in file order.' }),
  media_dir: strOrNull({ group: 'dataset', commands: DATA, help: 'Folder the image paths of multimodal records are relative to (default: dataset_dir).' }),
  image_max_pixels: int(768 * 768, { group: 'dataset', commands: DATA, min: 1, help: 'Images larger than this many pixels are first resized down to it (LLaMA-Factory).' }),
  image_min_pixels: int(32 * 32, { group: 'dataset', commands: DATA, min: 1, help: 'Images smaller than this many pixels are first resized up to it (LLaMA-Factory).' }),

  // ---- training ------------------------------------------------------------------------------
  learning_rate: float(5e-5, { group: 'train', commands: TRAIN, min: 0, help: 'Peak learning rate of AdamW.' }),
  lr_scheduler_type: oneOf(LR_SCHEDULERS, 'linear', {
    group: 'train',
    commands: TRAIN,
    help: 'Learning-rate schedule after warmup (HF names).',
  }),
  lr_scheduler_kwargs: dictOrNull({
    group: 'train',
    commands: TRAIN,
    help: 'Extra schedule arguments: {min_lr_rate: 0.1} (or {min_lr: 1.0e-6}) for cosine_with_min_lr.',
  }),
  warmup_ratio: float(0, {
    group: 'train',
    commands: TRAIN,
    min: 0,
    max: 1,
    help: 'Linear warmup over this fraction of the total steps.',
  }),
  warmup_steps: num(0, {
    group: 'train',
    commands: TRAIN,
    min: 0,
    help: 'Linear warmup steps (a value below 1 is a fraction of the total); overrides warmup_ratio.',
  }),
  num_train_epochs: float(3, { group: 'train', commands: TRAIN, gt: 0, help: 'Epochs to train (fractions allowed).' }),
  max_steps: int(-1, { group: 'train', commands: TRAIN, min: -1, help: 'Total optimizer steps; overrides num_train_epochs when > 0.' }),
  per_device_train_batch_size: int(8, { group: 'train', commands: TRAIN, min: 1, help: 'Sequences per micro-batch.' }),
  gradient_accumulation_steps: int(1, {
    group: 'train',
    commands: TRAIN,
    min: 1,
    help: 'Micro-batches per optimizer step (effective batch = batch size * this).',
  }),
  max_grad_norm: float(1, { group: 'train', commands: TRAIN, min: 0, help: 'Clip the global gradient norm to this; 0 disables.' }),
  optim: oneOf(
    ['adamw_torch', 'adamw_torch_fused', 'adamw_hf', 'adamw_apex_fused', 'adamw_torch_xla', 'adamw_torch_npu_fused'],
    'adamw_torch',
    { group: 'train', commands: TRAIN, help: 'Optimizer; Crucible implements AdamW (decoupled weight decay), the HF AdamW names are accepted.' },
  ),
  use_llama_pro: bool(false, {
    group: 'freeze',
    methods: ['freeze', 'lora'],
    commands: TRAIN,
    help: 'LLaMA Pro: train the freeze_trainable_layers blocks `crucible expand` inserted (every L/n-th layer), whole (freeze) or with LoRA on them.',
  }),
  use_muon: bool(false, {
    group: 'train',
    commands: TRAIN,
    help: 'Muon: 2-D weights (not embeddings or lm_head) take Nesterov momentum orthogonalised by Newton-Schulz; the rest AdamW.',
  }),
  use_adam_mini: bool(false, {
    group: 'train',
    commands: TRAIN,
    help: 'Adam-mini: one second moment per head / output neuron / tensor instead of per weight (adam-mini 1.1.1).',
  }),
  use_galore: bool(false, {
    group: 'train',
    methods: ['full', 'freeze'],
    commands: TRAIN,
    help: 'GaLore: Adam on gradients projected onto their top galore_rank singular vectors (galore-torch\'s GaLoreAdamW).',
  }),
  galore_target: list(['all'], { group: 'train', commands: TRAIN, help: 'GaLore: linear modules (name parts, or "all") whose weights take the projection.' }),
  galore_rank: int(16, { group: 'train', commands: TRAIN, min: 1, help: 'GaLore: rank of the projected gradient.' }),
  galore_update_interval: int(200, { group: 'train', commands: TRAIN, min: 1, help: 'GaLore: steps between recomputing the projection (an SVD of the gradient).' }),
  galore_scale: float(2.0, { group: 'train', commands: TRAIN, help: 'GaLore: scale of the projected-back update.' }),
  galore_proj_type: oneOf(['std', 'reverse_std', 'right', 'left', 'full'], 'std', { group: 'train', commands: TRAIN, help: 'GaLore: which side is projected (std: the smaller one).' }),
  galore_layerwise: bool(false, { group: 'train', commands: TRAIN, help: 'GaLore: each weight stepped as its gradient is ready (the same update, without gradient clipping; needs gradient_accumulation_steps: 1).' }),
  use_apollo: bool(false, {
    group: 'train',
    methods: ['full', 'freeze'],
    commands: TRAIN,
    help: 'APOLLO: the raw gradient scaled channel- or tensor-wise by Adam\'s effect in a random low-rank projection (apollo-torch).',
  }),
  apollo_target: list(['all'], { group: 'train', commands: TRAIN, help: 'APOLLO: linear modules (name parts, or "all") whose weights take the scaling.' }),
  apollo_rank: int(16, { group: 'train', commands: TRAIN, min: 1, help: 'APOLLO: rank of the projected gradient.' }),
  apollo_update_interval: int(200, { group: 'train', commands: TRAIN, min: 1, help: 'APOLLO: steps between drawing a new projection.' }),
  apollo_scale: float(32.0, { group: 'train', commands: TRAIN, help: 'APOLLO: the update is multiplied by sqrt(apollo_scale).' }),
  apollo_proj: oneOf(['random', 'svd'], 'random', { group: 'train', commands: TRAIN, help: 'APOLLO: random Gaussian projection, or GaLore\'s SVD one.' }),
  apollo_proj_type: oneOf(['std', 'right', 'left'], 'std', { group: 'train', commands: TRAIN, help: 'APOLLO: which side is projected (std: the smaller one).' }),
  apollo_scale_type: oneOf(['channel', 'tensor'], 'channel', { group: 'train', commands: TRAIN, help: 'APOLLO: one scaling factor per channel or per tensor.' }),
  apollo_layerwise: bool(false, { group: 'train', commands: TRAIN, help: 'APOLLO: each weight stepped as its gradient is ready (the same update, without gradient clipping; needs gradient_accumulation_steps: 1).' }),
  apollo_scale_front: bool(false, { group: 'train', commands: TRAIN, help: 'APOLLO: apply sqrt(apollo_scale) before the norm-growth limiter.' }),
  use_badam: bool(false, {
    group: 'train',
    methods: ['full', 'freeze'],
    commands: TRAIN,
    help: 'BAdam: block coordinate descent, Adam on one block of layers at a time (layer mode) or on a moving part of each weight (ratio mode).',
  }),
  badam_mode: oneOf(['layer', 'ratio'], 'layer', { group: 'train', commands: TRAIN, help: 'BAdam: train one decoder layer at a time, or a badam_update_ratio part of every weight.' }),
  badam_start_block: intOrNull({ group: 'train', commands: TRAIN, min: 0, help: 'BAdam (layer): the layer trained first.' }),
  badam_switch_mode: oneOf(['ascending', 'descending', 'random', 'fixed'], 'ascending', { group: 'train', commands: TRAIN, help: 'BAdam (layer): the order of the layers.' }),
  badam_switch_interval: int(50, { group: 'train', commands: TRAIN, min: -1, help: 'BAdam (layer): steps on one layer before the next; -1 never switches.' }),
  badam_update_ratio: float(0.05, { group: 'train', commands: TRAIN, gt: 0, max: 1, help: 'BAdam (ratio): the part of each weight updated.' }),
  badam_mask_mode: oneOf(['adjacent', 'scatter'], 'adjacent', { group: 'train', commands: TRAIN, help: 'BAdam (ratio): a run of adjacent entries, or entries scattered at random.' }),
  badam_verbose: int(0, { group: 'train', commands: TRAIN, min: 0, max: 2, help: 'BAdam: its diagnostic prints (accepted with a note; Crucible prints none).' }),
  use_dft_loss: bool(false, {
    group: 'train',
    commands: TRAIN,
    stages: ['sft'],
    help: 'DFT: each token\'s loss weighted by its own (detached) probability.',
  }),
  use_eaft_loss: bool(false, {
    group: 'train',
    commands: TRAIN,
    stages: ['sft'],
    help: 'EAFT: each token\'s loss weighted by (entropy of its 20 most likely tokens / 3)^eaft_alpha.',
  }),
  eaft_alpha: float(1.0, { group: 'train', commands: TRAIN, stages: ['sft'], min: 0, help: 'EAFT: the power of the entropy weight.' }),
  use_asft_loss: bool(false, {
    group: 'train',
    commands: TRAIN,
    stages: ['sft'],
    help: 'ASFT: the DFT loss plus asft_alpha times the KL divergence from the reference (the base with the LoRA adapter off).',
  }),
  asft_alpha: float(0.1, { group: 'train', commands: TRAIN, stages: ['sft'], min: 0, help: 'ASFT: the weight of the KL term.' }),
  label_smoothing_factor: float(0, {
    group: 'train',
    commands: TRAIN,
    stages: ['pt', 'sft'],
    min: 0,
    lt: 1,
    help: 'Label smoothing of the token loss (HF Trainer\'s LabelSmoother).',
  }),
  weight_decay: float(0, {
    group: 'train',
    commands: TRAIN,
    min: 0,
    help: 'AdamW decoupled weight decay (not applied to biases and norm weights).',
  }),
  adam_beta1: float(0.9, { group: 'train', commands: TRAIN, min: 0, lt: 1, help: 'AdamW first-moment decay.' }),
  adam_beta2: float(0.999, { group: 'train', commands: TRAIN, min: 0, lt: 1, help: 'AdamW second-moment decay.' }),
  adam_epsilon: float(1e-8, { group: 'train', commands: TRAIN, gt: 0, help: 'AdamW epsilon.' }),
  neftune_noise_alpha: floatOrNull({
    group: 'train',
    commands: TRAIN,
    min: 0,
    help: 'NEFTune: add uniform noise of this scale to input embeddings while training.',
  }),
  disable_gradient_checkpointing: boolOrNull(null, {
    group: 'train',
    commands: TRAIN,
    help: 'true: keep all activations; false: recompute each layer in backward (activation checkpointing); '
      + 'unset: recompute only when the step would not fit memory_budget without it.',
  }),
  memory_budget: floatOrNull({
    group: 'train',
    commands: TRAIN,
    gt: 0,
    help: 'GPU memory (GiB) a run may use, for the recomputation choice (default: the device\'s reported memory, else 2).',
  }),
  bf16: bool(false, {
    group: 'train',
    commands: TRAIN,
    help: 'Half precision, the f16 tier: LoRA stores the frozen base weights in f16 (half the memory) and runs their products with f16 operands and f32 sums, where the GPU has shader-f16 (else f32, with a note). The adapter, optimizer state and loss stay f32.',
  }),
  fp16: bool(false, {
    group: 'train',
    commands: TRAIN,
    help: "Same as bf16: Crucible's half type is IEEE f16 either way.",
  }),
  seed: int(42, { group: 'train', commands: ALL, min: 0, help: 'Random seed (initialization, shuffling, dropout, sampling).' }),
  data_seed: intOrNull({ group: 'train', commands: TRAIN, min: 0, help: 'Seed of the data order (default: seed).' }),

  // ---- output --------------------------------------------------------------------------------
  output_dir: str('trainer_output', { group: 'output', commands: TRAIN, help: 'Where checkpoints, the adapter and logs are written.' }),
  overwrite_output_dir: bool(false, {
    group: 'output',
    commands: TRAIN,
    help: 'Start afresh in a non-empty output_dir instead of resuming from its last checkpoint.',
  }),
  logging_steps: num(500, {
    group: 'output',
    commands: TRAIN,
    gt: 0,
    help: 'Log loss and learning rate every N steps (below 1: a fraction of the total).',
  }),
  save_strategy: oneOf(['no', 'steps', 'epoch'], 'steps', { group: 'output', commands: TRAIN, help: 'When to save checkpoints.' }),
  save_steps: num(500, {
    group: 'output',
    commands: TRAIN,
    gt: 0,
    help: 'Save a checkpoint every N steps (below 1: a fraction of the total).',
  }),
  save_total_limit: intOrNull({ group: 'output', commands: TRAIN, min: 1, help: 'Keep at most this many checkpoints.' }),
  save_only_model: bool(false, {
    group: 'output',
    commands: TRAIN,
    help: 'Checkpoints hold the weights only (no optimizer state: cannot resume).',
  }),
  resume_from_checkpoint: spec<string | boolean | null>('checkpoint', null, true, {
    group: 'output',
    commands: TRAIN,
    help: 'Checkpoint directory to resume from (true: the latest in output_dir).',
  }),
  report_to: list(['none'], {
    group: 'output',
    commands: TRAIN,
    help: 'tensorboard: also write TensorBoard event files under output_dir/runs; none; other trackers (wandb, mlflow ...) are not contacted. trainer_log.jsonl and running_log.txt are always written.',
  }),
  plot_loss: bool(false, { group: 'output', commands: TRAIN, help: 'Save training_loss.png (and eval loss) in output_dir.' }),

  // ---- evaluation ----------------------------------------------------------------------------
  eval_strategy: oneOf(['no', 'steps', 'epoch'], 'no', { group: 'eval', commands: TRAIN, help: 'When to evaluate during training.' }),
  eval_steps: numOrNull({
    group: 'eval',
    commands: TRAIN,
    gt: 0,
    help: 'Evaluate every N steps (default: logging_steps; below 1: a fraction of the total).',
  }),
  generation_num_beams: intOrNull({
    group: 'eval',
    commands: TRAIN,
    min: 1,
    help: "Beams of generation in evaluation; as in LLaMA-Factory, num_beams (default 1) is passed to generation and takes precedence.",
  }),
  eval_num_beams: intOrNull({
    group: 'eval',
    commands: TRAIN,
    min: 1,
    help: 'LLaMA-Factory sets generation_num_beams from it; num_beams takes precedence as there.',
  }),
  per_device_eval_batch_size: int(8, { group: 'eval', commands: TRAIN, min: 1, help: 'Sequences per evaluation batch.' }),
  eval_on_start: bool(false, { group: 'eval', commands: TRAIN, help: 'Evaluate once before the first step (logged at step 0).' }),
  eval_delay: num(0, { group: 'eval', commands: TRAIN, min: 0, help: 'No evaluation before this many steps (eval_strategy steps) or epochs (epoch).' }),
  load_best_model_at_end: bool(false, {
    group: 'eval',
    commands: TRAIN,
    help: 'Leave the best checkpoint\'s model in output_dir at the end (eval_strategy must equal save_strategy, save_steps a multiple of eval_steps).',
  }),
  metric_for_best_model: strOrNull({
    group: 'eval',
    commands: TRAIN,
    help: 'Evaluation metric that picks the best checkpoint (eval_ is prepended; default with load_best_model_at_end: loss).',
  }),
  greater_is_better: boolOrNull(null, { group: 'eval', commands: TRAIN, help: 'Whether a larger metric is better (default: false for names ending in loss, true otherwise).' }),
  early_stopping_steps: intOrNull({
    group: 'eval',
    commands: TRAIN,
    min: 1,
    help: 'Stop after this many evaluations without improvement of metric_for_best_model.',
  }),

  // ---- preference (rm / dpo / kto) -----------------------------------------------------------
  pref_beta: float(0.1, {
    group: 'preference',
    commands: TRAIN,
    stages: ['dpo', 'kto'],
    gt: 0,
    help: 'beta of the preference loss (strength of the pull towards the reference).',
  }),
  pref_ftx: float(0, {
    group: 'preference',
    commands: TRAIN,
    stages: ['dpo', 'kto'],
    min: 0,
    help: 'Weight of an added SFT loss on the chosen responses.',
  }),
  pref_loss: oneOf(PREF_LOSSES, 'sigmoid', {
    group: 'preference',
    commands: TRAIN,
    stages: ['dpo'],
    help: 'sigmoid (DPO), hinge, ipo, kto_pair, orpo or simpo (the last two need no reference model).',
  }),
  dpo_label_smoothing: float(0, {
    group: 'preference',
    commands: TRAIN,
    stages: ['dpo'],
    min: 0,
    max: 0.5,
    help: 'Robust DPO (cDPO) label smoothing, sigmoid loss only.',
  }),
  simpo_gamma: float(0.5, {
    group: 'preference',
    commands: TRAIN,
    stages: ['dpo'],
    help: 'SimPO target reward margin.',
  }),
  kto_chosen_weight: float(1, {
    group: 'preference',
    commands: TRAIN,
    stages: ['kto'],
    min: 0,
    help: 'KTO weight of desirable examples.',
  }),
  kto_rejected_weight: float(1, {
    group: 'preference',
    commands: TRAIN,
    stages: ['kto'],
    min: 0,
    help: 'KTO weight of undesirable examples.',
  }),
  ref_model: strOrNull({
    group: 'preference',
    commands: TRAIN,
    stages: ['dpo', 'kto'],
    help: 'A separate reference model (Hub id or folder); null: the base without the LoRA adapter, or the initial weights (full, freeze). Scored once before training, then unloaded.',
  }),
  ref_model_adapters: listOrNull({
    group: 'preference',
    commands: TRAIN,
    stages: ['dpo', 'kto'],
    help: 'A PEFT adapter applied to ref_model.',
  }),
  ref_model_quantization_bit: intOrNull({
    group: 'preference',
    commands: TRAIN,
    stages: ['dpo', 'kto'],
    help: 'Quantize ref_model on load: 4 or 8 bits.',
  }),

  // ---- ppo -----------------------------------------------------------------------------------
  reward_model: strOrNull({
    group: 'preference',
    commands: TRAIN,
    stages: ['ppo'],
    help: 'The reward model: a `crucible train` stage rm output (LoRA adapter, or a full model) with its value_head.safetensors.',
  }),
  reward_model_type: oneOf(['lora', 'full', 'api'], 'lora', {
    group: 'preference',
    commands: TRAIN,
    stages: ['ppo'],
    help: 'lora: reward_model is an adapter on this base (swapped in to score); full: a separate model; api is not supported.',
  }),
  ppo_epochs: int(4, { group: 'preference', commands: TRAIN, stages: ['ppo'], min: 1, help: 'Passes over each batch of rollouts.' }),
  ppo_buffer_size: int(1, {
    group: 'preference',
    commands: TRAIN,
    stages: ['ppo'],
    min: 1,
    help: 'Backward batches (batch size x gradient accumulation rollouts) sampled per PPO step.',
  }),
  ppo_score_norm: bool(false, { group: 'preference', commands: TRAIN, stages: ['ppo'], help: 'Normalise the reward scores by their running mean and std.' }),
  ppo_target: float(6.0, { group: 'preference', commands: TRAIN, stages: ['ppo'], gt: 0, help: 'Target KL of the adaptive KL controller.' }),
  ppo_whiten_rewards: bool(false, { group: 'preference', commands: TRAIN, stages: ['ppo'], help: 'Whiten the per-token rewards before GAE.' }),

  // ---- export --------------------------------------------------------------------------------
  export_dir: strOrNull({ group: 'export', commands: ['export'], help: 'Where `crucible export` writes the merged model.' }),
  export_size: int(5, { group: 'export', commands: ['export'], min: 1, help: 'Shard size of the exported safetensors, in GB.' }),
  export_legacy_format: bool(false, {
    group: 'export',
    commands: ['export'],
    help: 'Write .bin files instead of .safetensors (Crucible writes .safetensors only).',
  }),

  // ---- generation ----------------------------------------------------------------------------
  do_sample: bool(true, { group: 'generation', commands: SAMPLING, help: 'Sample; false: greedy decoding.' }),
  temperature: float(0.95, { group: 'generation', commands: SAMPLING, min: 0, help: 'Sampling temperature.' }),
  top_p: float(0.7, { group: 'generation', commands: SAMPLING, gt: 0, max: 1, help: 'Nucleus sampling: keep the smallest set of tokens with this total probability.' }),
  top_k: int(50, { group: 'generation', commands: SAMPLING, min: 0, help: 'Keep the k most probable tokens (0: no limit).' }),
  max_new_tokens: int(1024, { group: 'generation', commands: SAMPLING, min: 1, help: 'Maximum tokens generated per reply.' }),
  max_length: int(1024, {
    group: 'generation',
    commands: GEN,
    min: 1,
    help: 'Maximum prompt + reply tokens; max_new_tokens takes precedence.',
  }),
  repetition_penalty: float(1, { group: 'generation', commands: SAMPLING, gt: 0, help: 'Penalty on repeated tokens; 1.0: none.' }),
  num_beams: int(1, {
    group: 'generation',
    commands: GEN,
    min: 1,
    help: 'Beam search with this many beams (1: sampling or greedy decoding); needs do_sample: false.',
  }),
  length_penalty: float(1, {
    group: 'generation',
    commands: GEN,
    help: 'Beam search: a finished answer scores its log-probability / length ** length_penalty (above 0 favours longer answers).',
  }),
  skip_special_tokens: bool(true, { group: 'generation', commands: GEN, help: 'Drop special tokens from decoded text.' }),
} as const satisfies Record<string, ArgSpec<unknown>>;

export type ConfigKey = keyof typeof SCHEMA;
type ValueOf<S> = S extends ArgSpec<infer T> ? T : never;

/** The resolved configuration: every SCHEMA key with its value (lora_alpha resolved to 2 * lora_rank). */
export type CrucibleConfig = { -readonly [K in ConfigKey]: ValueOf<(typeof SCHEMA)[K]> } & {
  lora_alpha: number;
  /** Keys Crucible ignores (IGNORED_KEYS) as given, kept so export-config writes them back. */
  passthrough: Record<string, unknown>;
};

export const CONFIG_KEYS = Object.keys(SCHEMA) as ConfigKey[];

export function argSpec(key: string): ArgSpec | undefined {
  return Object.hasOwn(SCHEMA, key) ? (SCHEMA as Record<string, ArgSpec>)[key] : undefined;
}

// ---- keys Crucible ignores ---------------------------------------------------------------------

/** What a key configures, for the notice "note: <key> is a <what> setting; Crucible ignores it". */
const PYTORCH = 'PyTorch';
const TRACKING = 'experiment-tracking';
const DISTRIBUTED = 'distributed-training';
const HUB_PUSH = 'Hub upload';
const VLLM = 'vLLM';
const SGLANG = 'SGLang';
const KTRANSFORMERS = 'KTransformers';
const RAY = 'Ray';
const MEGATRON = 'Megatron';

function keys(what: string, names: string): Record<string, string> {
  return Object.fromEntries(names.trim().split(/\s+/).map((k) => [k, what]));
}

export const IGNORED_KEYS: Readonly<Record<string, string>> = {
  ...keys(
    PYTORCH,
    `tf32 bf16_full_eval fp16_full_eval fp16_opt_level fp16_backend half_precision_backend pure_bf16
     fp8 fp8_backend fp8_enable_fsdp_float8_all_gather
     gradient_checkpointing gradient_checkpointing_kwargs use_reentrant_gc use_unsloth_gc
     torch_compile torch_compile_backend torch_compile_mode torchdynamo jit_mode_eval use_ipex
     flash_attn use_unsloth enable_liger_kernel use_liger_kernel liger_kernel_config use_v1_kernels
     upcast_layernorm upcast_lmhead_output low_cpu_mem_usage offload_folder trust_remote_code use_fast_tokenizer
     infer_dtype use_kv_cache use_cache quantization_type double_quantization quantization_device_map export_device
     dataloader_num_workers dataloader_pin_memory dataloader_persistent_workers dataloader_prefetch_factor
     preprocessing_batch_size remove_unused_columns label_names torch_empty_cache_steps skip_memory_metrics
     use_cpu no_cuda use_mps_device tpu_num_cores tpu_metrics_debug past_index debug full_determinism
     accelerator_config parallelism_config eval_accumulation_steps eval_do_concat_batches eval_use_gather_object
     batch_eval_metrics include_for_metrics include_inputs_for_metrics prediction_loss_only
     save_safetensors save_on_each_node enable_jit_checkpoint restore_callback_states_from_checkpoint ignore_data_skip
     average_tokens_across_devices dispatch_batches split_batches data_shared_file_system print_param_status
     enable_torch_profiler profiler_output_dir profiler_wait_steps profiler_warmup_steps profiler_active_steps
     profiler_repeat profiler_record_shapes profiler_profile_memory profiler_with_stack profile_modules
     include_num_input_tokens_seen include_tokens_per_second include_effective_tokens_per_second
     logging_strategy logging_first_step logging_nan_inf_filter logging_dir log_level log_level_replica
     log_on_each_node disable_tqdm`,
  ),
  ...keys(
    DISTRIBUTED,
    `ddp_timeout ddp_backend ddp_find_unused_parameters ddp_bucket_cap_mb ddp_broadcast_buffers local_rank
     deepspeed fsdp fsdp_config fsdp_min_num_params fsdp_transformer_layer_cls_to_wrap sharded_ddp mp_parameters
     use_mca use_megatron_bridge use_hyper_parallel hyper_parallel_args hyper_parallel_cp_size`,
  ),
  ...keys(
    TRACKING,
    `run_name project trackio_space_id ray_scope use_swanlab swanlab_project swanlab_workspace
     swanlab_run_name swanlab_mode swanlab_api_key swanlab_logdir swanlab_lark_webhook_url swanlab_lark_secret`,
  ),
  ...keys(
    HUB_PUSH,
    `push_to_hub hub_model_id hub_strategy hub_token hub_private_repo hub_always_push hub_revision
     push_to_hub_model_id push_to_hub_organization push_to_hub_token ms_hub_token om_hub_token`,
  ),
  ...keys(VLLM, 'vllm_maxlen vllm_gpu_util vllm_enforce_eager vllm_max_lora_rank vllm_config'),
  ...keys(SGLANG, 'sglang_maxlen sglang_mem_fraction sglang_tp_size sglang_config sglang_lora_backend'),
  ...keys(
    KTRANSFORMERS,
    `use_kt kt_cpu_activation kt_weight_path kt_non_expert_weight_path kt_expert_checkpoint_path kt_use_lora_experts
     kt_lora_expert_num kt_lora_expert_intermediate_size kt_config`,
  ),
  ...keys(RAY, 'ray_num_workers ray_init_kwargs master_addr master_port ray_run_name ray_storage_path ray_storage_filesystem resources_per_worker placement_strategy'),
  ...keys(
    MEGATRON,
    `tensor_model_parallel_size pipeline_model_parallel_size expert_model_parallel_size context_parallel_size
     virtual_pipeline_model_parallel_size sequence_parallel recompute_granularity recompute_method recompute_num_layers
     account_for_embedding_in_pipeline_split account_for_loss_in_pipeline_split bias_activation_fusion
     apply_rope_fusion masked_softmax_fusion cross_entropy_loss_fusion moe_grouped_gemm moe_token_dispatcher_type
     calculate_per_token_loss use_distributed_optimizer overlap_param_gather overlap_grad_reduce use_packed_sequences
     mixed_precision megatron_pretrained_checkpoint export_hf_on_finish extra_config`,
  ),
};

/** report_to values HF's Trainer knows (integration_utils.py); Crucible writes tensorboard files only. */
export const REPORT_TO = [
  'none', 'all', 'tensorboard', 'wandb', 'swanlab', 'mlflow', 'trackio', 'comet_ml', 'clearml', 'dvclive', 'neptune',
  'azure_ml', 'codecarbon', 'dagshub', 'flyte', 'ray',
] as const;

/** Old names that LLaMA-Factory / HF still accept: value moves to the new key, with a notice. */
export const RENAMED_KEYS: Readonly<Record<string, ConfigKey>> = {
  evaluation_strategy: 'eval_strategy',
};

// ---- LLaMA-Factory features Crucible does not implement ------------------------------------------

export interface UnsupportedKey {
  /** LLaMA-Factory's default: the only value accepted. */
  default: unknown;
  /** What the key asks for, in a few words. */
  feature: string;
}

function unsupported(feature: string, defaults: Record<string, unknown>): Record<string, UnsupportedKey> {
  return Object.fromEntries(Object.entries(defaults).map(([k, d]) => [k, { default: d, feature }]));
}

export const UNSUPPORTED_KEYS: Readonly<Record<string, UnsupportedKey>> = {
  ...unsupported('adapters on or quantization of a PPO reward model', {
    reward_model_adapters: null,
    reward_model_quantization_bit: null,
  }),
  ...unsupported('BCO / LD-DPO preference losses', { pref_bco_weight: 0.0, ld_alpha: null }),
  ...unsupported('alternative optimizers and losses', {
    optim_args: null,
    optim_target_modules: null,
  }),
  ...unsupported('vision-language models', {
    freeze_vision_tower: true,
    freeze_multi_modal_projector: true,
    freeze_language_model: false,
    image_do_pan_and_scan: false,
    crop_to_patches: false,
  }),
  ...unsupported('video and audio inputs', {
    video_max_pixels: 256 * 256,
    video_min_pixels: 16 * 16,
    video_fps: 2.0,
    video_maxlen: 128,
    use_audio_in_video: false,
    audio_sampling_rate: 16000,
  }),
  // LLaMA-Factory's MoD package wraps every odd decoder layer in a router that sends the top 12.5%
  // of each sequence's tokens through it, weighted by the router, at their own positions: a token
  // gather / scatter and a sub-sequence attention in every forward, backward and cached generation
  // kernel path, plus its own checkpoint class (MoDFor...); not a small addition
  ...unsupported('Mixture-of-Depths (the MoD package\'s per-token router on every other layer: a token-routing path through the forward, backward and generation kernels, and its own checkpoint format)', {
    mixture_of_depths: null,
  }),
  ...unsupported('model surgery (vocabulary, RoPE scaling, attention variants)', {
    resize_vocab: false,
    split_special_tokens: false,
    add_tokens: null,
    add_special_tokens: null,
    new_special_tokens_config: null,
    init_special_tokens: 'noise_init',
    rope_scaling: null,
    shift_attn: false,
    train_from_scratch: false,
    moe_aux_loss_coef: null,
    adapter_folder: null,
  }),
  ...unsupported('dataset streaming, mixing and caching', {
    streaming: false,
    buffer_size: 16384,
    mix_strategy: 'concat',
    interleave_probs: null,
    tokenized_path: null,
    ignore_pad_token_for_loss: true,
    eval_on_each_dataset: false,
    dataloader_drop_last: false,
    group_by_length: false,
    train_sampling_strategy: 'random',
    length_column_name: 'length',
  }),
  ...unsupported('generation and evaluation settings', {
    generation_max_length: null,
    generation_config: null,
    sortish_sampler: false,
    compute_accuracy: false,
    auto_find_batch_size: false,
  }),
  ...unsupported('quantized export and Hub push on export', {
    export_quantization_bit: null,
    export_quantization_dataset: null,
    export_quantization_nsamples: 128,
    export_quantization_maxlen: 1024,
    export_hub_model_id: null,
  }),
};

/** Every key a config may hold, for "did you mean" suggestions. */
export function knownKeys(): string[] {
  return [...CONFIG_KEYS, ...Object.keys(IGNORED_KEYS), ...Object.keys(RENAMED_KEYS), ...Object.keys(UNSUPPORTED_KEYS)];
}
