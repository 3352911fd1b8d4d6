/**
 * Tool (function-calling) text formats, following LLaMA-Factory's tool formats of the same names:
 * how the tool list is described in the system prompt, and how an assistant's function call is
 * written. Only the formats used by the supported named templates are implemented.
 */
import { pyJsonDumps } from './pyjson.ts';

export interface FunctionCall {
  name: string;
  /** Arguments as a JSON text (python json.dumps). */
  arguments: string;
}

export interface ToolFormat {
  formatTools(tools: Array<Record<string, unknown>>): string;
  formatCalls(calls: FunctionCall[]): string;
}

type Obj = Record<string, unknown>;

const DEFAULT_TOOL_PROMPT = (toolText: string, toolNames: string) =>
  'You have access to the following tools:\n' +
  toolText +
  'Use the following format if using a tool:\n' +
  '```\n' +
  `Action: tool name (one of [${toolNames}])\n` +
  'Action Input: the input to the tool, in a JSON format representing the kwargs ' +
  '(e.g. ```{"input": "hello world", "num_beams": 5}```)\n' +
  '```\n';

const QWEN_TOOL_PROMPT = (toolText: string) =>
  '\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' +
  'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' +
  toolText +
  '\n</tools>\n\nFor each function call, return a json object with function name and arguments within ' +
  '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, ' +
  '"arguments": <args-json-object>}\n</tool_call>';

const QWEN35_TOOL_PROMPT = (toolText: string) =>
  '\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>' +
  toolText +
  '\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n' +
  '<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n' +
  '<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n' +
  '</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n' +
  '- Function calls MUST follow the specified format: ' +
  'an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n' +
  '- Required parameters MUST be specified\n' +
  '- You may provide optional reasoning for your function call in natural language ' +
  'BEFORE the function call, but NOT after\n' +
  '- If there is no function call available, answer the question like normal with your current knowledge ' +
  'and do not tell the user about function calls\n</IMPORTANT>';

const LLAMA3_TOOL_PROMPT = (date: string, toolText: string) =>
  `Cutting Knowledge Date: December 2023\nToday Date: ${date}\n\n` +
  'You have access to the following functions. To call a function, please respond with JSON for a function call. ' +
  'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}. ' +
  'Do not use variables.\n\n' +
  toolText;

function unwrap(tool: Obj): Obj {
  return tool.type === 'function' ? ((tool.function as Obj) ?? {}) : tool;
}
/** An OpenAI-style tool's function, or the tool itself where it has none. */
function functionOrSelf(tool: Obj): Obj {
  return tool.type === 'function' ? ((tool.function as Obj | undefined) ?? tool) : tool;
}
function wrap(tool: Obj): Obj {
  return tool.type === 'function' ? tool : { type: 'function', function: tool };
}

/** Arguments of a call as an object; the formats that write one entry per argument need one. */
function callArguments(call: FunctionCall, format: string): Obj {
  const args = JSON.parse(call.arguments) as unknown;
  if (!args || typeof args !== 'object' || Array.isArray(args)) throw new Error(`function_call arguments must be an object for the ${format} tool format, got ${call.arguments.slice(0, 200)}`);
  return args as Obj;
}

const defaultFormat: ToolFormat = {
  formatTools(tools) {
    let toolText = '';
    const names: string[] = [];
    for (const t of tools) {
      const tool = unwrap(t);
      const params = (tool.parameters as Obj | undefined) ?? {};
      const props = (params.properties as Record<string, Obj> | undefined) ?? {};
      const required = (params.required as string[] | undefined) ?? [];
      let paramText = '';
      for (const [name, p] of Object.entries(props)) {
        const req = required.includes(name) ? ', required' : '';
        const en = Array.isArray(p.enum) && p.enum.length ? `, should be one of [${(p.enum as unknown[]).join(', ')}]` : '';
        const items = p.items ? `, where each item should be ${String((p.items as Obj).type ?? '')}` : '';
        paramText += `  - ${name} (${String(p.type ?? '')}${req}): ${String(p.description ?? '')}${en}${items}\n`;
      }
      toolText += `> Tool Name: ${String(tool.name)}\nTool Description: ${String(tool.description ?? '')}\nTool Args:\n${paramText}\n`;
      names.push(String(tool.name));
    }
    return DEFAULT_TOOL_PROMPT(toolText, names.join(', '));
  },
  formatCalls(calls) {
    return calls.map((c) => `Action: ${c.name}\nAction Input: ${c.arguments}`).join('\n');
  },
};

const qwenFormat: ToolFormat = {
  formatTools(tools) {
    return QWEN_TOOL_PROMPT(tools.map((t) => '\n' + pyJsonDumps(wrap(t))).join(''));
  },
  formatCalls(calls) {
    return calls
      .map((c) => `<tool_call>\n${pyJsonDumps({ name: c.name, arguments: JSON.parse(c.arguments) })}\n</tool_call>`)
      .join('\n');
  },
};

/** Qwen 3.5: tools listed unwrapped; each call as XML with one <parameter=...> block per argument. */
const qwen35Format: ToolFormat = {
  formatTools(tools) {
    return QWEN35_TOOL_PROMPT(tools.map((t) => '\n' + pyJsonDumps(functionOrSelf(t))).join(''));
  },
  formatCalls(calls) {
    return calls
      .map((c) => {
        const params = Object.entries(callArguments(c, 'qwen3_5')).map(([k, v]) => `\n<parameter=${k}>\n${typeof v === 'string' ? v : pyJsonDumps(v)}\n</parameter>`);
        return `<tool_call>\n<function=${c.name}>${params.join('')}\n</function>\n</tool_call>`;
      })
      .join('\n');
  },
};

/** LFM2: tools as one JSON list; calls in Python call syntax, string arguments quoted as they are (not escaped). */
const lfm2Format: ToolFormat = {
  formatTools(tools) {
    return `List of tools: <|tool_list_start|>${pyJsonDumps(tools.map(functionOrSelf))}<|tool_list_end|>`;
  },
  formatCalls(calls) {
    const text = calls.map((c) => {
      const args = Object.entries(callArguments(c, 'lfm2')).map(([k, v]) => (typeof v === 'string' ? `${k}="${v}"` : `${k}=${pyJsonDumps(v)}`));
      return `${c.name}(${args.join(', ')})`;
    });
    return `<|tool_call_start|>[${text.join(', ')}]<|tool_call_end|>`;
  },
};

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Date used by the llama3 tool prompt; LLaMA-Factory writes today's date ("%d %b %Y"). */
export let llama3ToolDate = (): string => {
  const d = new Date();
  return `${String(d.getDate()).padStart(2, '0')} ${MONTHS[d.getMonth()]} ${d.getFullYear()}`;
};
/** Pin the llama3 tool-prompt date (reproducible datasets, tests). */
export function setLlama3ToolDate(fn: () => string): void {
  llama3ToolDate = fn;
}

const llama3Format: ToolFormat = {
  formatTools(tools) {
    const text = tools.map((t) => pyJsonDumps(wrap(t), 4) + '\n\n').join('');
    return LLAMA3_TOOL_PROMPT(llama3ToolDate(), text);
  },
  formatCalls(calls) {
    const objs = calls.map((c) => ({ name: c.name, parameters: JSON.parse(c.arguments) }));
    return pyJsonDumps(objs.length === 1 ? objs[0] : objs);
  },
};

const mistralFormat: ToolFormat = {
  formatTools(tools) {
    return '[AVAILABLE_TOOLS] ' + pyJsonDumps(tools.map(wrap)) + '[/AVAILABLE_TOOLS]';
  },
  formatCalls(calls) {
    return pyJsonDumps(calls.map((c) => ({ name: c.name, arguments: JSON.parse(c.arguments) })));
  },
};

export const TOOL_FORMATS: Record<string, ToolFormat> = {
  default: defaultFormat,
  qwen: qwenFormat,
  qwen3_5: qwen35Format,
  llama3: llama3Format,
  mistral: mistralFormat,
  lfm2: lfm2Format,
};

/** LLaMA-Factory's tool formats for templates Crucible does not offer, by the family they are for. */
const OTHER_FAMILY_FORMATS: Record<string, string> = {
  gemma4: 'Gemma 4',
  glm4: 'GLM-4',
  glm4_moe: 'GLM-4.5',
  ling: 'Ling',
  minimax1: 'MiniMax-M1',
  minimax2: 'MiniMax-M2',
  seed_oss: 'Seed-OSS',
};

export function getToolFormat(name: string): ToolFormat {
  if (Object.hasOwn(TOOL_FORMATS, name)) return TOOL_FORMATS[name];
  const valid = `valid: ${Object.keys(TOOL_FORMATS).join(', ')}`;
  if (Object.hasOwn(OTHER_FAMILY_FORMATS, name)) {
    throw new Error(`tool_format "${name}" is LLaMA-Factory's tool format for ${OTHER_FAMILY_FORMATS[name]} models, not implemented in Crucible (it runs no ${OTHER_FAMILY_FORMATS[name]} models); ${valid}`);
  }
  throw new Error(`unknown tool_format "${name}"; ${valid}`);
}

/**
 * Parse a function_call message's content as LLaMA-Factory does: a JSON object {name, arguments}
 * or a list of them. Throws with the offending text.
 */
export function parseFunctionCalls(content: string): FunctionCall[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(content);
  } catch {
    throw new Error(`function_call content is not valid JSON: ${JSON.stringify(content.slice(0, 200))}`);
  }
  const list = Array.isArray(parsed) ? parsed : [parsed];
  return list.map((tc) => {
    if (!tc || typeof tc !== 'object' || typeof (tc as Obj).name !== 'string' || !('arguments' in (tc as Obj))) {
      throw new Error(`function_call must be {"name": ..., "arguments": ...}, got ${JSON.stringify(tc).slice(0, 200)}`);
    }
    return { name: (tc as Obj).name as string, arguments: pyJsonDumps((tc as Obj).arguments) };
  });
}

/** Parse the tools column (JSON text or already-parsed list). Empty → []. */
export function parseTools(tools: unknown): Array<Record<string, unknown>> {
  if (tools === undefined || tools === null || tools === '') return [];
  let v = tools;
  if (typeof v === 'string') {
    try {
      v = JSON.parse(v);
    } catch {
      throw new Error(`tools is not valid JSON: ${JSON.stringify(String(tools).slice(0, 200))}`);
    }
  }
  if (!Array.isArray(v)) v = [v];
  return v as Array<Record<string, unknown>>;
}
