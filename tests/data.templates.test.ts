import { describe, expect, it } from 'vitest';
import { getTemplate, JinjaChatTemplate, NamedTemplate, TEMPLATE_NAMES, UnknownTemplateError, type Conversation } from '../src/data/templates.ts';
import { setLlama3ToolDate } from '../src/data/tools.ts';
import { tokenizerFor, type ModelName } from './fixtures/data/helpers.ts';

const conv: Conversation = {
  system: 'You are terse.',
  messages: [
    { role: 'user', content: 'Name a color.' },
    { role: 'assistant', content: 'Blue.' },
    { role: 'user', content: 'Another? Say it in 中文 too.' },
    { role: 'assistant', content: 'Red, 红色 — maybe.' },
    { role: 'user', content: 'Last one' },
    { role: 'assistant', content: 'Green 🤗 done.' },
  ],
};

const flat = (turns: Array<{ prompt: number[]; response: number[] }>) => turns.flatMap((t) => [...t.prompt, ...t.response]);

describe("the model's own chat template vs the named template", () => {
  it.each([
    ['qwen3', 'qwen3'],
    ['llama3', 'llama3'],
    ['gemma3', 'gemma3'],
  ] as Array<[ModelName, string]>)('%s: identical turns (prompt and response ids) on a multi-turn conversation', (m, name) => {
    const tok = tokenizerFor(m);
    const jinja = getTemplate(undefined, tok);
    const named = getTemplate(name, tok);
    expect(jinja).toBeInstanceOf(JinjaChatTemplate);
    expect(named).toBeInstanceOf(NamedTemplate);
    for (const opts of [{}, { maskHistory: true }]) {
      const a = jinja.encodeConversation(conv, opts).turns;
      const b = named.encodeConversation(conv, opts).turns;
      expect(a.length).toBe(3);
      expect(a).toEqual(b);
    }
    // one-turn (preference/KTO) and generation prompts agree as well
    expect(jinja.encodeOneTurn(conv)).toEqual(named.encodeOneTurn(conv));
    expect(jinja.renderForGeneration(conv.messages.slice(0, 5), { system: conv.system })).toEqual(named.renderForGeneration(conv.messages.slice(0, 5), { system: conv.system }));
    expect(jinja.eosId).toBe(named.eosId);
  });

  it('qwen3: with enable_thinking false both put the empty think block in the prompt', () => {
    const tok = tokenizerFor('qwen3');
    const a = getTemplate(undefined, tok, { enableThinking: false }).encodeConversation(conv).turns;
    const b = getTemplate('qwen3', tok, { enableThinking: false }).encodeConversation(conv).turns;
    expect(a).toEqual(b);
    expect(tok.decode(a[1].prompt)).toBe('<|im_start|>user\nAnother? Say it in 中文 too.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n');
    expect(tok.decode(a[1].response)).toBe('Red, 红色 — maybe.<|im_end|>\n');
  });

  it('qwen3: every response is learned as the model produces it (empty think block first); mask_history renders the history as the template does', () => {
    const tok = tokenizerFor('qwen3');
    const t = getTemplate(undefined, tok);
    const turns = t.encodeConversation(conv).turns;
    expect(tok.decode(turns[0].prompt)).toBe('<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n');
    expect(tok.decode(turns[0].response)).toBe('<think>\n\n</think>\n\nBlue.<|im_end|>\n');
    const mh = t.encodeConversation(conv, { maskHistory: true }).turns;
    expect(tok.decode(mh[0].response)).toBe('Blue.<|im_end|>\n');
    expect(tok.decode(mh[2].response)).toBe('<think>\n\n</think>\n\nGreen 🤗 done.<|im_end|>\n');
    // with mask_history the whole sequence is exactly the template's rendering of the conversation
    expect(tok.decode(flat(mh))).toBe((t as JinjaChatTemplate).render(conv));
  });

  it('qwen3_nothink: no think block at all', () => {
    const tok = tokenizerFor('qwen3');
    const turns = getTemplate('qwen3_nothink', tok).encodeConversation(conv).turns;
    expect(tok.decode(turns[0].response)).toBe('Blue.<|im_end|>\n');
  });
});

describe('Llama 3 trailing-header rule', () => {
  const tok = tokenizerFor('llama3');
  const t = getTemplate(undefined, tok) as JinjaChatTemplate;

  it("the template always appends an assistant header; it is not part of a training example", () => {
    expect(t.trailing).toBe('<|start_header_id|>assistant<|end_header_id|>\n\n');
    const rendered = t.render(conv);
    expect(rendered.endsWith('Green 🤗 done.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n')).toBe(true);
    const turns = t.encodeConversation(conv).turns;
    const last = turns[turns.length - 1];
    expect(tok.decode(last.response)).toBe('Green 🤗 done.<|eot_id|>');
    expect(last.response[last.response.length - 1]).toBe(tok.tokenToId('<|eot_id|>'));
    expect(tok.decode(flat(turns))).toBe(rendered.slice(0, rendered.length - t.trailing.length));
    const one = t.encodeOneTurn(conv);
    expect(tok.decode(one.response)).toBe('Green 🤗 done.<|eot_id|>');
  });

  it('eos is the end-of-turn token: <|eot_id|> for the named template, and a stop id for the Jinja one', () => {
    const named = getTemplate('llama3', tok);
    expect(named.eosId).toBe(tok.tokenToId('<|eot_id|>'));
    expect(t.eosId).toBe(tok.tokenToId('<|eot_id|>'));
    expect(t.stopIds).toContain(tok.tokenToId('<|eot_id|>'));
    expect(t.stopIds).toContain(tok.eosId);
  });

  it('a template that ignores tool calls is an error, not an empty training turn', () => {
    const c: Conversation = {
      messages: [
        { role: 'user', content: 'Paris?' },
        { role: 'function_call', content: '{"name": "get_weather", "arguments": {"city": "Paris"}}' },
        { role: 'observation', content: '{"temp": 21}' },
        { role: 'assistant', content: '21 degrees.' },
      ],
    };
    expect(() => t.encodeConversation(c)).toThrow(/does not render tool calls.*get_weather.*named template/);
  });

  it('the generation prompt ends with the assistant header', () => {
    const ids = t.renderForGeneration([{ role: 'user', content: 'Hi' }]);
    expect(tok.decode(ids)).toBe('<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n');
  });
});

describe('named templates', () => {
  const tok = tokenizerFor('qwen3');
  const one: Conversation = { messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }] };

  it.each([
    ['default', 'Human: Hi<|im_end|>\nAssistant:', 'Hello.<|im_end|>\n'],
    ['empty', 'Hi', 'Hello.'],
    ['alpaca', 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nHi\n\n### Response:\n', 'Hello.<|im_end|>\n\n'],
    ['chatml', '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n', 'Hello.<|im_end|>\n'],
    ['qwen', '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n', 'Hello.<|im_end|>\n'],
    ['qwen3', '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n', '<think>\n\n</think>\n\nHello.<|im_end|>\n'],
    ['qwen3_nothink', '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n', 'Hello.<|im_end|>\n'],
  ])('%s renders LLaMA-Factory slots', (name, prompt, response) => {
    const t = getTemplate(name, tok).encodeConversation(one).turns[0];
    expect(tok.decode(t.prompt)).toBe(prompt);
    expect(tok.decode(t.response)).toBe(response);
  });

  it('gemma fuses the system prompt into the first user turn; mistral too, with bos', () => {
    const g = tokenizerFor('gemma3');
    const c: Conversation = { system: 'Sys.', messages: one.messages };
    const t = getTemplate('gemma', g).encodeConversation(c).turns[0];
    expect(g.decode(t.prompt)).toBe('<bos><start_of_turn>user\nSys.\n\nHi<end_of_turn>\n<start_of_turn>model\n');
    expect(g.decode(t.response)).toBe('Hello.<end_of_turn>\n');
    const l = tokenizerFor('llama3');
    const m = getTemplate('mistral', l).encodeConversation(c).turns[0];
    expect(l.decode(m.prompt)).toBe('<|begin_of_text|>[INST] Sys.\n\nHi[/INST]');
    expect(l.decode(m.response)).toBe(' Hello.<|end_of_text|>');
  });

  it('phi replaces eos with <|end|> and needs the token', () => {
    expect(() => getTemplate('phi', tok)).toThrow(/<\|end\|>/);
  });

  it('tools and function calls (qwen format)', () => {
    const c: Conversation = {
      tools: JSON.stringify([{ name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }]),
      messages: [
        { role: 'user', content: 'Paris?' },
        { role: 'function_call', content: '{"name": "get_weather", "arguments": {"city": "Paris"}}' },
        { role: 'observation', content: '{"temp": 21}' },
        { role: 'assistant', content: '21 degrees.' },
      ],
    };
    const turns = getTemplate('qwen3_nothink', tok).encodeConversation(c).turns;
    expect(tok.decode(turns[0].prompt)).toContain('<tools>\n{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}\n</tools>');
    expect(tok.decode(turns[0].response)).toBe('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n');
    expect(tok.decode(turns[1].prompt)).toBe('<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>\n<|im_start|>assistant\n');
    // the model's own Qwen3 template renders the same tool call and tool response
    const j = getTemplate(undefined, tok, { enableThinking: false }).encodeConversation(c).turns;
    expect(tok.decode(j[0].response)).toBe('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n');
    expect(tok.decode(j[1].prompt)).toBe(tok.decode(turns[1].prompt) + '<think>\n\n</think>\n\n');
  });

  it('default tool format and llama3 tool format', () => {
    setLlama3ToolDate(() => '01 Jan 2025');
    const tools = [{ name: 'f', description: 'Does f', parameters: { type: 'object', properties: { x: { type: 'integer', description: 'an x', enum: [1, 2] } }, required: ['x'] } }];
    const c: Conversation = { tools, messages: [{ role: 'user', content: 'go' }, { role: 'function_call', content: '[{"name": "f", "arguments": {"x": 1}}]' }] };
    const d = getTemplate('default', tok).encodeConversation(c).turns[0];
    expect(tok.decode(d.prompt)).toBe(
      'System: You have access to the following tools:\n> Tool Name: f\nTool Description: Does f\nTool Args:\n  - x (integer, required): an x, should be one of [1, 2]\n\n' +
        'Use the following format if using a tool:\n```\nAction: tool name (one of [f])\nAction Input: the input to the tool, in a JSON format representing the kwargs (e.g. ```{"input": "hello world", "num_beams": 5}```)\n```\n<|im_end|>\nHuman: go<|im_end|>\nAssistant:',
    );
    expect(tok.decode(d.response)).toBe('Action: f\nAction Input: {"x": 1}<|im_end|>\n');
    const l = tokenizerFor('llama3');
    const t = getTemplate('llama3', l).encodeConversation(c).turns[0];
    expect(l.decode(t.prompt)).toContain('Today Date: 01 Jan 2025\n\n');
    expect(l.decode(t.prompt)).toContain('{\n    "type": "function",\n    "function": {\n        "name": "f",');
    expect(l.decode(t.response)).toBe('{"name": "f", "parameters": {"x": 1}}<|eot_id|>');
  });

  it('an unknown template name lists the valid ones', () => {
    const err = (() => {
      try {
        getTemplate('qwen4', tok);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(UnknownTemplateError);
    for (const n of ['default', 'empty', 'alpaca', 'chatml', 'qwen', 'qwen3', 'qwen3_nothink', 'llama3', 'mistral', 'gemma', 'gemma3', 'phi']) {
      expect(TEMPLATE_NAMES).toContain(n);
      expect(err!.message).toContain(n);
    }
    expect(err!.message).toContain('qwen4');
  });

  it('a conversation must end with a response', () => {
    expect(() => getTemplate('qwen3', tok).encodeConversation({ messages: [{ role: 'user', content: 'x' }] })).toThrow(/even number/);
  });
});
