/** The named templates: LLaMA-Factory's definitions (template.py) under the same names. */
import { BOS, defineTemplate, EOS, type TemplateDef, type TemplateSpec } from './slots.ts';

const CHATML: TemplateSpec = {
  user: ['<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n'],
  assistant: ['{{content}}<|im_end|>\n'],
  system: ['<|im_start|>system\n{{content}}<|im_end|>\n'],
};

const GEMMA: TemplateSpec = {
  user: ['<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n'],
  assistant: ['{{content}}<end_of_turn>\n'],
  system: ['{{content}}\n\n'],
  observation: ['<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n'],
  prefix: [BOS],
  fuseSystem: true,
};

const QWEN: TemplateSpec = {
  ...CHATML,
  function: ['{{content}}<|im_end|>\n'],
  observation: ['<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'],
  toolFormat: 'qwen',
  stopWords: ['<|im_end|>'],
  replaceEos: true,
};

const SPECS: Record<string, TemplateSpec> = {
  alpaca: {
    user: ['### Instruction:\n{{content}}\n\n### Response:\n'],
    assistant: ['{{content}}', EOS, '\n\n'],
    defaultSystem: 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n',
  },
  chatml: {
    ...CHATML,
    observation: ['<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n'],
    stopWords: ['<|im_end|>', '<|im_start|>'],
    replaceEos: true,
  },
  default: {
    user: ['Human: {{content}}', EOS, '\nAssistant:'],
    assistant: ['{{content}}', EOS, '\n'],
    system: ['System: {{content}}', EOS, '\n'],
  },
  empty: { assistant: ['{{content}}'] },
  gemma: { ...GEMMA, stopWords: ['<end_of_turn>'], replaceEos: true },
  gemma2: { ...GEMMA, stopWords: ['<eos>', '<end_of_turn>'], efficientEos: true },
  gemma3: { ...GEMMA, stopWords: ['<end_of_turn>'], replaceEos: true },
  llama2: {
    user: [BOS, '[INST] {{content}} [/INST]'],
    system: ['<<SYS>>\n{{content}}\n<</SYS>>\n\n'],
    fuseSystem: true,
  },
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
  phi: {
    user: ['<|user|>\n{{content}}<|end|>\n<|assistant|>\n'],
    assistant: ['{{content}}<|end|>\n'],
    system: ['<|system|>\n{{content}}<|end|>\n'],
    stopWords: ['<|end|>'],
    replaceEos: true,
  },
  phi4: {
    user: ['<|im_start|>user<|im_sep|>{{content}}<|im_end|><|im_start|>assistant<|im_sep|>'],
    assistant: ['{{content}}<|im_end|>'],
    system: ['<|im_start|>system<|im_sep|>{{content}}<|im_end|>'],
    stopWords: ['<|im_end|>'],
    replaceEos: true,
  },
  qwen: { ...QWEN, defaultSystem: 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' },
  qwen3: { ...QWEN, reasoning: true },
  qwen3_nothink: { ...QWEN },
  vicuna: {
    user: ['USER: {{content}} ASSISTANT:'],
    defaultSystem:
      'A chat between a curious user and an artificial intelligence assistant. ' +
      "The assistant gives helpful, detailed, and polite answers to the user's questions.",
  },
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

export class UnknownTemplateError extends Error {
  constructor(name: string) {
    super(`unknown template "${name}". Valid templates: ${TEMPLATE_NAMES.join(', ')} (or leave \`template\` unset to use the model's own chat template)`);
    this.name = 'UnknownTemplateError';
  }
}
