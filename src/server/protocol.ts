// OpenAI chat-completions wire format: request validation into a ChatRequest, response and
// chunk objects, and OpenAI-style errors ({error: {message, type, param, code}}).

import { IMAGE_MARK } from '../data/content-text';
import type { ChatMessage, ChatRequest, ChatResult } from '../engine/chat-backend';
import { DEFAULT_IMAGE_LIMITS, imageFromPart, type ImageLimits } from './images';

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    message: string,
    readonly type: string = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const bad = (message: string, param: string | null, code: string | null = null) => new ApiError(400, message, 'invalid_request_error', param, code);

export interface RequestDefaults {
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  /** The config's num_beams and length_penalty (absent: 1 beam). */
  numBeams?: number;
  lengthPenalty?: number;
}

export const FALLBACK_DEFAULTS: RequestDefaults = { maxTokens: 1024, temperature: 0.95, topP: 0.7, topK: 50, repetitionPenalty: 1 };

export interface ParsedChatRequest {
  request: ChatRequest;
  stream: boolean;
  includeUsage: boolean;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 37)}...` : v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

function optNumber(body: Json, key: string, opts: { int?: boolean; min?: number; max?: number; gt?: number }): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  const what = opts.int ? 'an integer' : 'a number';
  if (typeof v !== 'number' || !Number.isFinite(v) || (opts.int && !Number.isInteger(v))) {
    throw bad(`Invalid type for '${key}': expected ${what}, but got ${describe(v)}.`, key, 'invalid_type');
  }
  if (opts.min !== undefined && v < opts.min) throw bad(`Invalid '${key}': ${v} is less than the minimum of ${opts.min}.`, key, 'invalid_value');
  if (opts.max !== undefined && v > opts.max) throw bad(`Invalid '${key}': ${v} is greater than the maximum of ${opts.max}.`, key, 'invalid_value');
  if (opts.gt !== undefined && v <= opts.gt) throw bad(`Invalid '${key}': ${v} must be greater than ${opts.gt}.`, key, 'invalid_value');
  return v;
}

function optBool(body: Json, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw bad(`Invalid type for '${key}': expected a boolean, but got ${describe(v)}.`, key, 'invalid_type');
  return v;
}

/** Text with reserved characters refused (IMAGE_MARK stands for an image part; typed, it would misplace images). */
function text(s: string, param: string): string {
  if (s.includes(IMAGE_MARK)) throw bad(`Invalid '${param}': the text contains U+E002, a character this server reserves for image parts.`, param, 'invalid_value');
  return s;
}

/** A message's content: text parts joined, each image_url part an IMAGE_MARK with its file appended to `images` (the request's so far; user messages only). */
function parseContent(v: unknown, param: string, role: string, images: Uint8Array[], limits: ImageLimits): string {
  if (typeof v === 'string') return text(v, param);
  if (v === null || v === undefined) {
    if (role === 'assistant') return '';
    throw bad(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
  }
  if (Array.isArray(v)) {
    return v
      .map((part, j) => {
        const p = `${param}.[${j}]`;
        if (!isObject(part)) throw bad(`Invalid type for '${p}': expected an object, but got ${describe(part)}.`, p, 'invalid_type');
        if (part.type === 'image_url') {
          if (role !== 'user') throw bad(`Invalid '${p}': image parts are only allowed in user messages, not ${role} messages.`, `${p}.type`, 'invalid_image');
          if (images.length >= limits.maxImages) throw bad(`Invalid '${p}': at most ${limits.maxImages} images are allowed in one request.`, p, 'too_many_images');
          images.push(imageFromPart(part.image_url, `${p}.image_url`, limits));
          return IMAGE_MARK;
        }
        if (part.type !== 'text') {
          throw bad(`Invalid '${p}.type': expected 'text' or 'image_url', got ${describe(part.type)}.`, `${p}.type`, 'invalid_value');
        }
        if (typeof part.text !== 'string') {
          throw bad(`Invalid type for '${p}.text': expected a string, but got ${describe(part.text)}.`, `${p}.text`, 'invalid_type');
        }
        return text(part.text, `${p}.text`);
      })
      .join('');
  }
  throw bad(`Invalid type for '${param}': expected a string or an array of content parts, but got ${describe(v)}.`, param, 'invalid_type');
}

const ROLES: Record<string, ChatMessage['role']> = {
  system: 'system',
  developer: 'system',
  user: 'user',
  assistant: 'assistant',
  tool: 'tool',
};

function parseMessages(v: unknown, limits: ImageLimits): ChatMessage[] {
  if (v === undefined || v === null) throw bad("Missing required parameter: 'messages'.", 'messages', 'missing_required_parameter');
  if (!Array.isArray(v)) throw bad(`Invalid type for 'messages': expected an array, but got ${describe(v)}.`, 'messages', 'invalid_type');
  if (v.length === 0) throw bad("Invalid 'messages': empty array. Expected an array with minimum length 1.", 'messages', 'empty_array');
  const all: Uint8Array[] = [];
  return v.map((m, i) => {
    const param = `messages.[${i}]`;
    if (!isObject(m)) throw bad(`Invalid type for '${param}': expected an object, but got ${describe(m)}.`, param, 'invalid_type');
    if (typeof m.role !== 'string' || !Object.hasOwn(ROLES, m.role)) {
      throw bad(
        `Invalid value for '${param}.role': expected one of system, developer, user, assistant, tool, but got ${describe(m.role)}.`,
        `${param}.role`,
        'invalid_value',
      );
    }
    if (Array.isArray(m.tool_calls) && m.tool_calls.length > 0) {
      throw bad(`'${param}.tool_calls': tool calls are not supported by this server.`, `${param}.tool_calls`, 'unsupported_parameter');
    }
    const role = ROLES[m.role]!;
    const before = all.length;
    const content = parseContent(m.content, `${param}.content`, role, all, limits);
    const images = all.slice(before);
    return { role, content, ...(images.length ? { images } : {}) };
  });
}

function parseStop(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.length <= 4 && v.every((s) => typeof s === 'string')) return v as string[];
  throw bad(`Invalid 'stop': expected a string or an array of at most 4 strings, but got ${describe(v)}.`, 'stop', 'invalid_type');
}

function unsupported(body: Json, key: string, ok: (v: unknown) => boolean, what: string): void {
  const v = body[key];
  if (v === undefined || v === null || ok(v)) return;
  throw bad(`'${key}' is not supported by this server (${what}).`, key, 'unsupported_parameter');
}

/**
 * Validates a /v1/chat/completions body. Unknown extra fields are ignored. An explicit
 * max_tokens above the model's context can never be served and is refused; one that fits the
 * context (and the default) is an upper bound, and the answer also ends where the context does.
 */
export function parseChatRequest(body: unknown, defaults: RequestDefaults, contextLength?: number, imageLimits: ImageLimits = DEFAULT_IMAGE_LIMITS): ParsedChatRequest {
  if (!isObject(body)) throw bad(`The request body must be a JSON object, but got ${describe(body)}.`, null);
  const model = body.model;
  if (model === undefined || model === null) throw bad('you must provide a model parameter', 'model', 'missing_required_parameter');
  if (typeof model !== 'string' || model === '') throw bad(`Invalid type for 'model': expected a string, but got ${describe(model)}.`, 'model', 'invalid_type');
  const messages = parseMessages(body.messages, imageLimits);

  const n = optNumber(body, 'n', { int: true, min: 1 });
  if (n !== undefined && n !== 1) throw bad("'n' > 1 is not supported by this server.", 'n', 'unsupported_parameter');
  unsupported(body, 'logprobs', (v) => v === false, 'no log-probabilities');
  unsupported(body, 'top_logprobs', () => false, 'no log-probabilities');
  unsupported(body, 'tools', (v) => Array.isArray(v) && v.length === 0, 'no tool calls');
  unsupported(body, 'functions', (v) => Array.isArray(v) && v.length === 0, 'no tool calls');
  unsupported(body, 'tool_choice', (v) => v === 'none' || v === 'auto', 'no tool calls');
  unsupported(body, 'logit_bias', (v) => isObject(v) && Object.keys(v).length === 0, 'no logit bias');
  unsupported(body, 'response_format', (v) => isObject(v) && v.type === 'text', 'text responses only');

  const maxTokensKey = body.max_completion_tokens !== undefined && body.max_completion_tokens !== null ? 'max_completion_tokens' : 'max_tokens';
  const maxTokens = optNumber(body, maxTokensKey, { int: true, min: 1 });
  if (maxTokens !== undefined && contextLength !== undefined && maxTokens > contextLength) {
    throw bad(`Invalid '${maxTokensKey}': ${maxTokens} is more than the model's context of ${contextLength} tokens (prompt and answer together).`, maxTokensKey, 'invalid_value');
  }
  const temperature = optNumber(body, 'temperature', { min: 0, max: 2 });
  const topP = optNumber(body, 'top_p', { min: 0, max: 1 });
  const topK = optNumber(body, 'top_k', { int: true, min: -1 });
  const repetitionPenalty = optNumber(body, 'repetition_penalty', { gt: 0 });
  // extensions as vLLM and Hugging Face name them; the served config's values are the default
  const numBeams = optNumber(body, 'num_beams', { int: true, min: 1 }) ?? defaults.numBeams;
  const lengthPenalty = optNumber(body, 'length_penalty', {}) ?? defaults.lengthPenalty;
  if ((numBeams ?? 1) > 1 && (temperature ?? defaults.temperature) > 0) {
    throw bad(`'num_beams' ${numBeams} asks for beam search, which does not sample: set 'temperature' to 0 (beam search with sampling is not supported).`, 'num_beams', 'unsupported_parameter');
  }
  const presencePenalty = optNumber(body, 'presence_penalty', { min: -2, max: 2 }) ?? 0;
  const frequencyPenalty = optNumber(body, 'frequency_penalty', { min: -2, max: 2 }) ?? 0;
  const seed = optNumber(body, 'seed', { int: true }) ?? null;
  const stop = parseStop(body.stop);
  const stream = optBool(body, 'stream') ?? false;
  const so = body.stream_options;
  if (so !== undefined && so !== null && !isObject(so)) {
    throw bad(`Invalid type for 'stream_options': expected an object, but got ${describe(so)}.`, 'stream_options', 'invalid_type');
  }
  const includeUsage = isObject(so) ? (optBool(so, 'include_usage') ?? false) : false;

  return {
    request: {
      model,
      messages,
      maxTokens: maxTokens ?? defaults.maxTokens,
      temperature: temperature ?? defaults.temperature,
      topP: topP ?? defaults.topP,
      topK: topK === undefined ? defaults.topK : Math.max(0, topK),
      repetitionPenalty: repetitionPenalty ?? defaults.repetitionPenalty,
      ...(numBeams !== undefined ? { numBeams } : {}),
      ...(lengthPenalty !== undefined ? { lengthPenalty } : {}),
      presencePenalty,
      frequencyPenalty,
      seed,
      stop,
    },
    stream,
    includeUsage,
  };
}

// ---- responses ------------------------------------------------------------------------------

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usageOf(r: Pick<ChatResult, 'promptTokens' | 'completionTokens'>): Usage {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens };
}

export function completionObject(id: string, created: number, model: string, text: string, finishReason: 'stop' | 'length', usage: Usage) {
  return {
    id,
    object: 'chat.completion' as const,
    created,
    model,
    system_fingerprint: null,
    choices: [{ index: 0, message: { role: 'assistant' as const, content: text, refusal: null }, logprobs: null, finish_reason: finishReason }],
    usage,
  };
}

export function chunkObject(
  id: string,
  created: number,
  model: string,
  delta: { role?: 'assistant'; content?: string },
  finishReason: 'stop' | 'length' | null,
  usage?: Usage | null,
) {
  return {
    id,
    object: 'chat.completion.chunk' as const,
    created,
    model,
    system_fingerprint: null,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...(usage !== undefined ? { usage } : {}),
  };
}

export function usageChunk(id: string, created: number, model: string, usage: Usage) {
  return { id, object: 'chat.completion.chunk' as const, created, model, system_fingerprint: null, choices: [], usage };
}
