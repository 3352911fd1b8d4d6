/**
 * Converting dataset records (alpaca, sharegpt, openai) into one aligned shape, with LLaMA-Factory's
 * rules (converter.py):
 *   prompt:   messages before the response, user/observation at odd positions (1-based),
 *             assistant/function_call at even ones — an odd number of them
 *   response: [answer] (sft), [chosen, rejected] (preference), [answer, ""] / ["", answer] (KTO
 *             desirable / undesirable), or [] (unsupervised / pretraining text)
 * Records whose shape is wrong (a field of the wrong type) are errors naming file, record and field;
 * records LLaMA-Factory would skip (roles out of order, odd message counts) are dropped and counted.
 */
import { DataError, describeType, type DataErrorLocation } from './errors.ts';
import type { DatasetAttr } from './dataset-info.ts';
import { checkPlaceholders, recordImages } from './media.ts';
import type { Row, RecordSource } from './formats.ts';
import type { Message } from './templates/types.ts';
import type { ExampleImages } from './vision-data.ts';

export interface Aligned {
  prompt: Message[];
  response: Message[];
  system: string;
  tools: string;
  /** Present for KTO records. */
  ktoTag?: boolean;
  /** Image paths, one per <image> placeholder in order (after loading: the files that were read). */
  images?: string[];
  /** The images processed for the model (vision-data.ts), once the placeholders are expanded. */
  imageInputs?: ExampleImages;
  source: RecordSource;
  dataset: string;
}

export type ConvertResult = { ok: Aligned } | { drop: string };

function loc(attr: DatasetAttr, src: RecordSource, field?: string): DataErrorLocation {
  return { dataset: attr.name, file: src.file, line: src.line, index: src.index, field };
}

/** A value that may come as JSON text (csv cells) where a list/object is expected. */
function maybeJson(v: unknown): unknown {
  if (typeof v === 'string') {
    const t = v.trim();
    if ((t.startsWith('[') && t.endsWith(']')) || (t.startsWith('{') && t.endsWith('}'))) {
      try {
        return JSON.parse(t);
      } catch {
        return v;
      }
    }
  }
  return v;
}

function optString(row: Row, col: string | undefined, attr: DatasetAttr, src: RecordSource): string | undefined {
  if (!col) return undefined;
  const v = row[col];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new DataError(`must be a string, got ${describeType(v)}`, loc(attr, src, col));
}

function toolsString(row: Row, attr: DatasetAttr, src: RecordSource): string {
  const col = attr.columns.tools;
  if (!col) return '';
  const v = row[col];
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'object') return JSON.stringify(v);
  throw new DataError(`must be a JSON string or a list of tools, got ${describeType(v)}`, loc(attr, src, col));
}

function ktoTag(row: Row, attr: DatasetAttr): boolean | undefined {
  const col = attr.columns.kto_tag;
  if (!col) return undefined;
  const v = row[col];
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === 'True') return true;
  if (v === 'false' || v === 'False') return false;
  if (v === 1 || v === 0) return v === 1;
  return undefined;
}

function convertAlpaca(row: Row, attr: DatasetAttr, src: RecordSource): ConvertResult {
  const c = attr.columns;
  const prompt: Message[] = [];
  if (c.history) {
    const h = maybeJson(row[c.history]);
    if (Array.isArray(h)) {
      h.forEach((pair, i) => {
        if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
          throw new DataError('each history item must be [prompt, response] strings', loc(attr, src, `${c.history}[${i}]`));
        }
        prompt.push({ role: 'user', content: pair[0] }, { role: 'assistant', content: pair[1] });
      });
    } else if (h !== undefined && h !== null && h !== '') {
      throw new DataError(`must be a list of [prompt, response] pairs, got ${describeType(h)}`, loc(attr, src, c.history));
    }
  }
  const query: string[] = [];
  const p = optString(row, c.prompt, attr, src);
  if (p) query.push(p);
  const q = optString(row, c.query, attr, src);
  if (q) query.push(q);
  prompt.push({ role: 'user', content: query.join('\n') });

  let response: Message[];
  const tag = ktoTag(row, attr);
  const resp = optString(row, c.response, attr, src);
  if (tag !== undefined) {
    if (resp === undefined) return { drop: `KTO record without a response ("${c.response}")` };
    const r = { role: 'assistant' as const, content: resp };
    const empty = { role: 'assistant' as const, content: '' };
    response = tag ? [r, empty] : [empty, r];
  } else if (attr.ranking) {
    const ch = optString(row, c.chosen, attr, src);
    const rj = optString(row, c.rejected, attr, src);
    if (ch === undefined || rj === undefined) return { drop: `preference record without "${c.chosen}"/"${c.rejected}" strings` };
    response = [
      { role: 'assistant', content: ch },
      { role: 'assistant', content: rj },
    ];
  } else if (resp !== undefined) response = [{ role: 'assistant', content: resp }];
  else response = [];
  return {
    ok: {
      prompt,
      response,
      system: optString(row, c.system, attr, src) ?? '',
      tools: toolsString(row, attr, src),
      ktoTag: tag,
      source: src,
      dataset: attr.name,
    },
  };
}

type Tagged = { role: string; content: string };

function readMessages(row: Row, attr: DatasetAttr, src: RecordSource): { list: unknown[]; col: string } {
  const col = attr.columns.messages ?? 'conversations';
  const v = maybeJson(row[col]);
  if (v === undefined || v === null) throw new DataError('missing messages list', loc(attr, src, col));
  if (!Array.isArray(v)) throw new DataError(`must be a list of messages, got ${describeType(v)}`, loc(attr, src, col));
  return { list: v, col };
}

function readMessage(m: unknown, attr: DatasetAttr, src: RecordSource, field: string, allowToolCalls = false): Tagged {
  const t = attr.tags;
  if (!m || typeof m !== 'object' || Array.isArray(m)) throw new DataError(`each message must be an object with "${t.role_tag}" and "${t.content_tag}", got ${describeType(m)}`, loc(attr, src, field));
  const o = m as Row;
  const role = o[t.role_tag];
  if (typeof role !== 'string') throw new DataError(`must be a string role, got ${describeType(role)}`, loc(attr, src, `${field}.${t.role_tag}`));
  let content = o[t.content_tag];
  if ((content === undefined || content === null) && allowToolCalls && o.tool_calls) content = '';
  if (typeof content !== 'string') {
    if (Array.isArray(content) && content.every((p) => p && typeof p === 'object' && (p as Row).type === 'text' && typeof (p as Row).text === 'string')) {
      content = content.map((p) => (p as Row).text as string).join('');
    } else throw new DataError(`must be a string, got ${describeType(content)}`, loc(attr, src, `${field}.${t.content_tag}`));
  }
  return { role, content: content as string };
}

function tagMap(attr: DatasetAttr): Record<string, Message['role']> {
  const t = attr.tags;
  return {
    [t.user_tag]: 'user',
    [t.assistant_tag]: 'assistant',
    [t.observation_tag]: 'observation',
    [t.function_tag]: 'function_call',
    [t.system_tag]: 'system',
  };
}

function tagOf(attr: DatasetAttr, role: Message['role']): string {
  const t = attr.tags;
  return { user: t.user_tag, assistant: t.assistant_tag, observation: t.observation_tag, function_call: t.function_tag, system: t.system_tag }[role];
}

function finishChat(
  aligned: Message[],
  row: Row,
  attr: DatasetAttr,
  src: RecordSource,
  system: string,
  tools: string,
  messagesCol: string,
): ConvertResult {
  const t = attr.tags;
  const odd = ['user', 'observation'];
  const even = ['assistant', 'function_call'];
  for (let i = 0; i < aligned.length; i++) {
    const ok = (i % 2 === 0 ? odd : even).includes(aligned[i].role);
    if (!ok) {
      return {
        drop: `roles out of order: message ${i} of "${messagesCol}" is "${tagOf(attr, aligned[i].role)}", expected ${i % 2 === 0 ? `${t.user_tag}/${t.observation_tag}` : `${t.assistant_tag}/${t.function_tag}`} (turns must alternate, starting with the user)`,
      };
    }
  }
  const tag = ktoTag(row, attr);
  const chosenCol = attr.columns.chosen;
  const rejectedCol = attr.columns.rejected;
  if (attr.ranking) {
    if (aligned.length % 2 === 0) return { drop: `preference record needs an odd number of messages (the prompt, ending with a user turn) in "${messagesCol}", found ${aligned.length}` };
    const ch = chosenCol ? maybeJson(row[chosenCol]) : undefined;
    const rj = rejectedCol ? maybeJson(row[rejectedCol]) : undefined;
    if (!ch || typeof ch !== 'object' || Array.isArray(ch) || !rj || typeof rj !== 'object' || Array.isArray(rj)) {
      return { drop: `preference record needs "${chosenCol}" and "${rejectedCol}" messages ({"${t.role_tag}": ..., "${t.content_tag}": ...})` };
    }
    const cm = readMessage(ch, attr, src, chosenCol!);
    const rm = readMessage(rj, attr, src, rejectedCol!);
    const map = tagMap(attr);
    const roles = [map[cm.role], map[rm.role]];
    if (!roles.every((r) => r === 'assistant' || r === 'function_call')) {
      return { drop: `chosen/rejected must be ${t.assistant_tag} or ${t.function_tag} messages, got ${cm.role}/${rm.role}` };
    }
    return {
      ok: {
        prompt: aligned,
        response: [
          { role: roles[0], content: cm.content },
          { role: roles[1], content: rm.content },
        ],
        system,
        tools,
        source: src,
        dataset: attr.name,
      },
    };
  }
  if (aligned.length % 2 !== 0) return { drop: `needs complete (user, assistant) turns: "${messagesCol}" has ${aligned.length} messages (odd), so the last one has no response` };
  if (aligned.length === 0) return { drop: `"${messagesCol}" is empty` };
  let response = aligned.slice(-1);
  if (tag !== undefined) {
    const empty = { role: 'assistant' as const, content: '' };
    response = tag ? [response[0], empty] : [empty, response[0]];
  }
  return { ok: { prompt: aligned.slice(0, -1), response, system, tools, ktoTag: tag, source: src, dataset: attr.name } };
}

function convertSharegpt(row: Row, attr: DatasetAttr, src: RecordSource): ConvertResult {
  const t = attr.tags;
  const map = tagMap(attr);
  let { list, col } = readMessages(row, attr, src);
  let offset = 0;
  let system = '';
  if (t.system_tag && list.length) {
    const first = readMessage(list[0], attr, src, `${col}[0]`);
    if (first.role === t.system_tag) {
      system = first.content;
      list = list.slice(1);
      offset = 1;
    } else system = optString(row, attr.columns.system, attr, src) ?? '';
  } else system = optString(row, attr.columns.system, attr, src) ?? '';
  const aligned: Message[] = [];
  for (let i = 0; i < list.length; i++) {
    const m = readMessage(list[i], attr, src, `${col}[${i + offset}]`);
    const role = map[m.role];
    if (!role || role === 'system') {
      const known = [t.user_tag, t.assistant_tag, t.observation_tag, t.function_tag].join(', ');
      return { drop: `unknown role "${m.role}" in ${col}[${i + offset}].${t.role_tag} (expected one of ${known})` };
    }
    aligned.push({ role, content: m.content });
  }
  return finishChat(aligned, row, attr, src, system, toolsString(row, attr, src), col);
}

/**
 * LLaMA-Factory's openai converter ends the system prompt with "detailed thinking off" (the switch
 * of Nemotron-style reasoning models) unless it already says on or off; with tools it only adds a
 * line break, and an empty system with tools stays empty.
 */
export function thinkingOffSystem(system: string, tools: string): string {
  const off = 'detailed thinking off';
  if (!system) return tools ? system : off;
  if (tools) return `${system}\n`;
  return system.includes('detailed thinking on') || system.includes(off) ? system : `${system}\n${off}`;
}

function convertOpenai(row: Row, attr: DatasetAttr, src: RecordSource): ConvertResult {
  const r = openaiMessages(row, attr, src);
  return 'ok' in r ? { ok: { ...r.ok, system: thinkingOffSystem(r.ok.system, r.ok.tools) } } : r;
}

/**
 * LLaMA-Factory v1's pair records: `chosen` and `rejected` are whole OpenAI-style conversations
 * that repeat the prompt and end with the two answers.
 */
export function convertPair(row: Row, attr: DatasetAttr, src: RecordSource): ConvertResult {
  const c = attr.columns;
  const chosen = maybeJson(row[c.chosen!]);
  const rejected = maybeJson(row[c.rejected!]);
  if (!Array.isArray(chosen) || !Array.isArray(rejected) || chosen.length === 0 || rejected.length === 0) {
    return { drop: `pair record needs "${c.chosen}" and "${c.rejected}" as non-empty lists of messages` };
  }
  const prompt = chosen.slice(0, -1);
  if (JSON.stringify(prompt) !== JSON.stringify(rejected.slice(0, -1))) {
    return { drop: `pair record: "${c.chosen}" and "${c.rejected}" must share the conversation before their last message` };
  }
  const messages = c.messages ?? 'conversations';
  return openaiMessages({ ...row, [messages]: prompt, [c.chosen!]: chosen.at(-1), [c.rejected!]: rejected.at(-1) }, attr, src);
}

/** True for a ranking record whose chosen side is a message list rather than one message. */
function isPairRecord(row: Row, attr: DatasetAttr): boolean {
  return attr.ranking && !attr.columns.messages && !!attr.columns.chosen && Array.isArray(maybeJson(row[attr.columns.chosen]));
}

function openaiMessages(row: Row, attr: DatasetAttr, src: RecordSource): ConvertResult {
  const t = attr.tags;
  const map = tagMap(attr);
  let { list, col } = readMessages(row, attr, src);
  let offset = 0;
  let system = optString(row, attr.columns.system, attr, src) ?? '';
  if (t.system_tag && list.length) {
    const first = readMessage(list[0], attr, src, `${col}[0]`, true);
    if (first.role === t.system_tag) {
      system = first.content;
      list = list.slice(1);
      offset = 1;
    }
  }
  const aligned: Message[] = [];
  let toolResponses: string[] = [];
  for (let i = 0; i < list.length; i++) {
    const field = `${col}[${i + offset}]`;
    const m = readMessage(list[i], attr, src, field, true);
    let role = m.role;
    let content = m.content;
    if (role === t.assistant_tag || role === t.function_tag) {
      const tc = (list[i] as Row).tool_calls;
      if (Array.isArray(tc) && tc.length) {
        const fns = tc.map((x, j) => {
          const f = x && typeof x === 'object' ? (x as Row).function : undefined;
          if (!f || typeof f !== 'object') throw new DataError('tool_calls items need a "function" object', loc(attr, src, `${field}.tool_calls[${j}]`));
          const fo = { ...(f as Row) };
          if (typeof fo.arguments === 'string') {
            try {
              fo.arguments = JSON.parse(fo.arguments);
            } catch {
              throw new DataError('function arguments are not valid JSON', loc(attr, src, `${field}.tool_calls[${j}].function.arguments`));
            }
          }
          return fo;
        });
        content = JSON.stringify(fns);
        role = t.function_tag;
      }
    }
    if (role === t.observation_tag) {
      toolResponses.push(content);
      continue;
    } else if (toolResponses.length) {
      aligned.push({ role: 'observation', content: toolResponses.join('\n</tool_response>\n<tool_response>\n') });
      toolResponses = [];
    }
    const r = map[role];
    if (!r || r === 'system') return { drop: `unknown role "${role}" in ${field}.${t.role_tag}` };
    aligned.push({ role: r, content });
  }
  if (toolResponses.length) aligned.push({ role: 'observation', content: toolResponses.join('\n</tool_response>\n<tool_response>\n') });
  return finishChat(aligned, row, attr, src, system, toolsString(row, attr, src), col);
}

function convertText(row: Row, attr: DatasetAttr, src: RecordSource): ConvertResult {
  switch (attr.formatting) {
    case 'alpaca':
      return convertAlpaca(row, attr, src);
    case 'sharegpt':
      return convertSharegpt(row, attr, src);
    case 'openai':
      return isPairRecord(row, attr) ? convertPair(row, attr, src) : convertOpenai(row, attr, src);
  }
}

/** A record in its aligned form, with its image paths (as written) when the dataset maps an images column. */
export function convertRecord(row: Row, attr: DatasetAttr, src: RecordSource): ConvertResult {
  const images = recordImages(row, attr, src);
  const res = convertText(row, attr, src);
  if ('drop' in res || !attr.columns.images) return res;
  checkPlaceholders(res.ok.prompt, res.ok.response, images.length, attr, src);
  return images.length ? { ok: { ...res.ok, images } } : res;
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenized records

export interface TokenizedRecord {
  input_ids: number[];
  labels?: number[];
  chosen?: { input_ids: number[]; labels?: number[] };
  rejected?: { input_ids: number[]; labels?: number[] };
  kl_input_ids?: number[];
  kl_labels?: number[];
  kto_tag?: boolean;
  source: RecordSource;
  dataset: string;
}

export function isTokenizedRow(row: Row): boolean {
  return 'input_ids' in row || 'chosen_input_ids' in row;
}

function intList(row: Row, key: string, attr: DatasetAttr, src: RecordSource, required: boolean): number[] | undefined {
  const v = maybeJson(row[key]);
  if (v === undefined || v === null) {
    if (required) throw new DataError('missing (pre-tokenized rows need input_ids)', loc(attr, src, key));
    return undefined;
  }
  if (!Array.isArray(v)) throw new DataError(`must be a list of integers, got ${describeType(v)}`, loc(attr, src, key));
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (typeof x !== 'number' || !Number.isInteger(x)) throw new DataError(`must be a list of integers; item ${i} is ${JSON.stringify(x)}`, loc(attr, src, key));
  }
  return v as number[];
}

/** Apply attention_mask (keep positions where it is 1), as padding in stored rows. */
function unpad(ids: number[], labels: number[] | undefined, mask: number[] | undefined, attr: DatasetAttr, src: RecordSource, prefix: string) {
  if (labels && labels.length !== ids.length) throw new DataError(`has ${labels.length} items but ${prefix}input_ids has ${ids.length}`, loc(attr, src, `${prefix}labels`));
  if (!mask) return { ids, labels };
  if (mask.length !== ids.length) throw new DataError(`has ${mask.length} items but ${prefix}input_ids has ${ids.length}`, loc(attr, src, `${prefix}attention_mask`));
  const keep = mask.map((m) => m !== 0);
  return { ids: ids.filter((_, i) => keep[i]), labels: labels?.filter((_, i) => keep[i]) };
}

export function convertTokenized(row: Row, attr: DatasetAttr, src: RecordSource): TokenizedRecord {
  if ('chosen_input_ids' in row) {
    const side = (p: string) => {
      const ids = intList(row, `${p}input_ids`, attr, src, true)!;
      const u = unpad(ids, intList(row, `${p}labels`, attr, src, false), intList(row, `${p}attention_mask`, attr, src, false), attr, src, p);
      return { input_ids: u.ids, labels: u.labels };
    };
    const chosen = side('chosen_');
    const rejected = side('rejected_');
    return { input_ids: chosen.input_ids, chosen, rejected, source: src, dataset: attr.name };
  }
  const ids = intList(row, 'input_ids', attr, src, true)!;
  const u = unpad(ids, intList(row, 'labels', attr, src, false), intList(row, 'attention_mask', attr, src, false), attr, src, '');
  const rec: TokenizedRecord = { input_ids: u.ids, labels: u.labels, source: src, dataset: attr.name };
  if ('kl_input_ids' in row) {
    const kl = unpad(intList(row, 'kl_input_ids', attr, src, true)!, intList(row, 'kl_labels', attr, src, false), intList(row, 'kl_attention_mask', attr, src, false), attr, src, 'kl_');
    rec.kl_input_ids = kl.ids;
    rec.kl_labels = kl.labels;
  }
  const tag = row.kto_tag ?? row.kto_tags;
  if (tag !== undefined) {
    if (typeof tag !== 'boolean') throw new DataError(`must be true or false, got ${JSON.stringify(tag)}`, loc(attr, src, 'kto_tag'));
    rec.kto_tag = tag;
  }
  return rec;
}
