/** The named templates: LLaMA-Factory's definitions (template.py) under the same names. */
import { BOS, defineTemplate, EOS, type TemplateDef, type TemplateSpec } from './slots.ts';

const CHATML: TemplateSpec = {
  user: ['<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n'],
  assistant: ['{{content}}<|im_end|>\n'],
  system: ['<|im_start|>system\n{{content}}<|im_end|>\n'],
};
const CHATML_TOOL = ['<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n'];

const DEEPSEEK3: TemplateSpec = { user: ['<｜User｜>{{content}}<｜Assistant｜>'], prefix: [BOS] };

const GEMMA: TemplateSpec = {
  user: ['<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n'],
  assistant: ['{{content}}<end_of_turn>\n'],
  system: ['{{content}}\n\n'],
  observation: ['<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n'],
  prefix: [BOS],
  fuseSystem: true,
};

const GRANITE: TemplateSpec = {
  user: ['<|start_of_role|>user<|end_of_role|>{{content}}<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>'],
  assistant: ['{{content}}<|end_of_text|>\n'],
  system: ['<|start_of_role|>system<|end_of_role|>{{content}}<|end_of_text|>\n'],
};

const LLAMA2: TemplateSpec = {
  user: [BOS, '[INST] {{content}} [/INST]'],
  system: ['<<SYS>>\n{{content}}\n<</SYS>>\n\n'],
  fuseSystem: true,
};

/** Tekken-tokenizer Mistral models (Ministral, Mistral Nemo, Mistral Small): no space after [INST]. */
const MISTRAL_TEKKEN: TemplateSpec = {
  user: ['[INST]{{content}}[/INST]'],
  function: ['[TOOL_CALLS]{{content}}', EOS],
  observation: ['[TOOL_RESULTS]{"content": {{content}}}[/TOOL_RESULTS]'],
  toolFormat: 'mistral',
  prefix: [BOS],
};

const PHI: TemplateSpec = {
  user: ['<|user|>\n{{content}}<|end|>\n<|assistant|>\n'],
  assistant: ['{{content}}<|end|>\n'],
  system: ['<|system|>\n{{content}}<|end|>\n'],
  stopWords: ['<|end|>'],
  replaceEos: true,
};

const QWEN: TemplateSpec = {
  ...CHATML,
  function: ['{{content}}<|im_end|>\n'],
  observation: ['<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'],
  toolFormat: 'qwen',
  stopWords: ['<|im_end|>'],
  replaceEos: true,
};

const VICUNA_SYSTEM =
  'A chat between a curious user and an artificial intelligence assistant. ' +
  "The assistant gives helpful, detailed, and polite answers to the user's questions.";

const SPECS: Record<string, TemplateSpec> = {
  alpaca: {
    user: ['### Instruction:\n{{content}}\n\n### Response:\n'],
    assistant: ['{{content}}', EOS, '\n\n'],
    defaultSystem: 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n',
    replaceJinjaTemplate: true,
  },
  breeze: { user: ['[INST] {{content}} [/INST] '], prefix: [BOS], efficientEos: true },
  chatml: { ...CHATML, observation: CHATML_TOOL, stopWords: ['<|im_end|>', '<|im_start|>'], replaceEos: true, replaceJinjaTemplate: true },
  chatml_de: {
    ...CHATML,
    observation: CHATML_TOOL,
    defaultSystem: 'Du bist ein freundlicher und hilfsbereiter KI-Assistent.',
    stopWords: ['<|im_end|>', '<|im_start|>'],
    replaceEos: true,
    replaceJinjaTemplate: true,
  },
  cohere: {
    user: ['<|START_OF_TURN_TOKEN|><|USER_TOKEN|>{{content}}<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>'],
    system: ['<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>{{content}}<|END_OF_TURN_TOKEN|>'],
    prefix: [BOS],
  },
  deepseek: { user: ['User: {{content}}\n\nAssistant:'], system: ['{{content}}\n\n'], prefix: [BOS] },
  deepseek3: DEEPSEEK3,
  deepseekr1: { ...DEEPSEEK3, reasoning: true },
  deepseekcoder: {
    user: ['### Instruction:\n{{content}}\n### Response:'],
    assistant: ['\n{{content}}\n<|EOT|>\n'],
    prefix: [BOS],
    defaultSystem:
      'You are an AI programming assistant, utilizing the DeepSeek Coder model, ' +
      'developed by DeepSeek Company, and you only answer questions related to computer science. ' +
      'For politically sensitive questions, security and privacy issues, ' +
      'and other non-computer science questions, you will refuse to answer.\n',
  },
  default: {
    user: ['Human: {{content}}', EOS, '\nAssistant:'],
    assistant: ['{{content}}', EOS, '\n'],
    system: ['System: {{content}}', EOS, '\n'],
    replaceJinjaTemplate: true,
  },
  empty: { assistant: ['{{content}}'] },
  exaone: {
    user: ['[|user|]{{content}}\n[|assistant|]'],
    assistant: ['{{content}}', EOS, '\n'],
    system: ['[|system|]{{content}}[|endofturn|]\n'],
  },
  falcon: { user: ['User: {{content}}\nFalcon:'], assistant: ['{{content}}\n'], efficientEos: true },
  fewshot: { assistant: ['{{content}}\n\n'], efficientEos: true, replaceJinjaTemplate: true },
  gemma: { ...GEMMA, stopWords: ['<end_of_turn>'], replaceEos: true },
  gemma2: { ...GEMMA, stopWords: ['<eos>', '<end_of_turn>'], efficientEos: true },
  gemma3: { ...GEMMA, stopWords: ['<end_of_turn>'], replaceEos: true },
  gpt_oss: {
    user: ['<|start|>user<|message|>{{content}}<|end|><|start|>assistant'],
    assistant: ['{{content}}'],
    system: ['<|start|>system<|message|>{{content}}<|end|>'],
    defaultSystem: 'You are ChatGPT, a large language model trained by OpenAI.',
    thoughtWords: ['<|channel|>analysis<|message|>', '<|end|><|start|>assistant<|channel|>final<|message|>'],
    efficientEos: true,
    reasoning: true,
  },
  granite3: GRANITE,
  granite4: {
    ...GRANITE,
    function: ['{{content}}<|end_of_text|>\n'],
    observation: ['<|start_of_role|>tool<|end_of_role|>{{content}}<|end_of_text|>\n<|start_of_role|>assistant\n'],
    stopWords: ['<|end_of_text|>'],
    defaultSystem: 'You are Granite, developed by IBM. You are a helpful AI assistant.',
  },
  lfm2: {
    ...CHATML,
    function: ['{{content}}<|im_end|>\n'],
    observation: ['<|im_start|>tool\n<|tool_response_start|>{{content}}<|tool_response_end|><|im_end|>\n<|im_start|>assistant\n'],
    toolFormat: 'lfm2',
    defaultSystem: 'You are a helpful AI assistant.',
    stopWords: ['<|im_end|>'],
    toolCallWords: ['<|tool_call_start|>', '<|tool_call_end|>'],
    replaceEos: true,
  },
  llama2: LLAMA2,
  llama2_zh: { ...LLAMA2, defaultSystem: 'You are a helpful assistant. 你是一个乐于助人的助手。' },
  llama3: {
    user: ['<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'],
    assistant: ['{{content}}<|eot_id|>'],
    system: ['<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>'],
    function: ['{{content}}<|eot_id|>'],
    observation: ['<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'],
    toolFormat: 'llama3',
    prefix: [BOS],
    stopWords: ['<|eot_id|>', '<|eom_id|>'],
    replaceEos: true,
  },
  llama4: {
    user: ['<|header_start|>user<|header_end|>\n\n{{content}}<|eot|><|header_start|>assistant<|header_end|>\n\n'],
    assistant: ['{{content}}<|eot|>'],
    system: ['<|header_start|>system<|header_end|>\n\n{{content}}<|eot|>'],
    function: ['{{content}}<|eot|>'],
    observation: ['<|header_start|>ipython<|header_end|>\n\n{{content}}<|eot|><|header_start|>assistant<|header_end|>\n\n'],
    toolFormat: 'llama3',
    prefix: [BOS],
    stopWords: ['<|eot|>', '<|eom|>'],
    replaceEos: true,
  },
  mimo: { ...QWEN, defaultSystem: 'You are a helpful assistant.', reasoning: true },
  ministral: { ...MISTRAL_TEKKEN, system: ['{{content}}\n\n'], fuseSystem: true },
  mistral: {
    user: ['[INST] {{content}}[/INST]'],
    assistant: [' {{content}}', EOS],
    system: ['{{content}}\n\n'],
    function: ['[TOOL_CALLS] {{content}}', EOS],
    observation: ['[TOOL_RESULTS] {"content": {{content}}}[/TOOL_RESULTS]'],
    toolFormat: 'mistral',
    prefix: [BOS],
    fuseSystem: true,
  },
  mistral_small: { ...MISTRAL_TEKKEN, system: ['[SYSTEM_PROMPT]{{content}}[/SYSTEM_PROMPT]'] },
  olmo: { user: ['<|user|>\n{{content}}<|assistant|>\n'], prefix: [EOS] },
  openchat: { user: ['GPT4 Correct User: {{content}}', EOS, 'GPT4 Correct Assistant:'], prefix: [BOS] },
  'openchat-3.6': {
    user: ['<|start_header_id|>GPT4 Correct User<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>GPT4 Correct Assistant<|end_header_id|>\n\n'],
    prefix: [BOS],
    stopWords: ['<|eot_id|>'],
  },
  opencoder: { ...CHATML, observation: CHATML_TOOL, defaultSystem: 'You are OpenCoder, created by OpenCoder Team.', stopWords: ['<|im_end|>'] },
  phi: PHI,
  // LLaMA-Factory's prefix here is the set {"<|endoftext|>"}, which its encoder renders as nothing.
  phi_small: PHI,
  phi4: {
    user: ['<|im_start|>user<|im_sep|>{{content}}<|im_end|><|im_start|>assistant<|im_sep|>'],
    assistant: ['{{content}}<|im_end|>'],
    system: ['<|im_start|>system<|im_sep|>{{content}}<|im_end|>'],
    stopWords: ['<|im_end|>'],
    replaceEos: true,
  },
  phi4_mini: {
    user: ['<|user|>{{content}}<|end|><|assistant|>'],
    assistant: ['{{content}}<|end|>'],
    system: ['<|system|>{{content}}<|end|>'],
    tools: ['<|tool|>{{content}}<|/tool|>'],
    stopWords: ['<|end|>'],
    replaceEos: true,
  },
  qwen: { ...QWEN, defaultSystem: 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' },
  // LLaMA-Factory's qwen2_vl: Qwen's ChatML with its own default system; each <image> is expanded
  // to <|vision_start|><|image_pad|>*n<|vision_end|> before the template (src/data/vision-data.ts)
  qwen2_vl: { ...QWEN, defaultSystem: 'You are a helpful assistant.' },
  qwen3: { ...QWEN, reasoning: true },
  qwen3_nothink: QWEN,
  qwen3_5: { ...QWEN, toolFormat: 'qwen3_5', reasoning: true },
  qwen3_5_nothink: { ...QWEN, toolFormat: 'qwen3_5' },
  qwen3_6: { ...QWEN, toolFormat: 'qwen3_5', reasoning: true },
  sailor: {
    user: ['<|im_start|>question\n{{content}}<|im_end|>\n<|im_start|>answer\n'],
    assistant: ['{{content}}<|im_end|>\n'],
    system: ['<|im_start|>system\n{{content}}<|im_end|>\n'],
    defaultSystem:
      'You are an AI assistant named Sailor created by Sea AI Lab. ' +
      'Your answer should be friendly, unbiased, faithful, informative and detailed.',
    stopWords: ['<|im_end|>'],
  },
  seed_coder: {
    user: [BOS, 'user\n{{content}}', EOS, BOS, 'assistant\n'],
    system: [BOS, 'system\n{{content}}', EOS],
    defaultSystem:
      'You are an AI programming assistant, utilizing the Seed-Coder model, developed by ByteDance Seed, ' +
      'and you only answer questions related to computer science. For politically sensitive questions, ' +
      'security and privacy issues, and other non-computer science questions, you will refuse to answer.\n\n',
  },
  smollm: { ...CHATML, stopWords: ['<|im_end|>'] },
  smollm2: { ...CHATML, stopWords: ['<|im_end|>'], defaultSystem: 'You are a helpful AI assistant named SmolLM, trained by Hugging Face.' },
  solar: { user: ['### User:\n{{content}}\n\n### Assistant:\n'], system: ['### System:\n{{content}}\n\n'], efficientEos: true },
  vicuna: { user: ['USER: {{content}} ASSISTANT:'], defaultSystem: VICUNA_SYSTEM, replaceJinjaTemplate: true },
  xuanyuan: {
    user: ['Human: {{content}} Assistant:'],
    defaultSystem:
      '以下是用户和人工智能助手之间的对话。用户以Human开头，人工智能助手以Assistant开头，' +
      '会对人类提出的问题给出有帮助、高质量、详细和礼貌的回答，并且总是拒绝参与与不道德、' +
      '不安全、有争议、政治敏感等相关的话题、问题和指示。\n',
  },
  yi: { ...CHATML, stopWords: ['<|im_end|>'] },
  zephyr: {
    user: ['<|user|>\n{{content}}', EOS, '<|assistant|>\n'],
    system: ['<|system|>\n{{content}}', EOS],
    defaultSystem: 'You are Zephyr, a helpful assistant.',
  },
};

export const TEMPLATES: Readonly<Record<string, TemplateDef>> = Object.fromEntries(
  Object.entries(SPECS).map(([name, spec]) => [name, defineTemplate(spec)]),
);

/** Names accepted by `template:` (LLaMA-Factory's names for these families). */
export const TEMPLATE_NAMES: readonly string[] = Object.keys(TEMPLATES).sort();

const CHOICES = `Valid templates: ${TEMPLATE_NAMES.join(', ')} (or leave \`template\` unset to use the model's own chat template)`;

export class UnknownTemplateError extends Error {
  constructor(name: string) {
    super(`unknown template "${name}". ${CHOICES}`);
    this.name = 'UnknownTemplateError';
  }
}

/** A LLaMA-Factory template name Crucible refuses on purpose (multimodal, or a family it does not run). */
export class UnsupportedTemplateError extends Error {
  constructor(reason: string) {
    super(`${reason}. ${CHOICES}`);
    this.name = 'UnsupportedTemplateError';
  }
}
