/**
 * From aligned records to training examples, per stage, with LLaMA-Factory's rules
 * (processor/supervised.py, pairwise.py, feedback.py, pretrain.py, unsupervised.py):
 *  - labels are unshifted (HF convention: the model shifts), -100 where no loss is taken;
 *  - sft: every response turn is learned, prompts masked unless train_on_prompt; mask_history
 *    learns the last turn only; cutoff_len truncation per turn with infer_seqlen (the response
 *    keeps its room when it can, mask_history keeps the last turns);
 *  - packing: LLaMA-Factory's greedy knapsack per preprocessing batch, padded to cutoff_len;
 *    neat_packing adds per-token segment ids (1, 2, ... per packed sample, 0 on padding);
 *  - preference (rm/dpo/orpo/simpo): prompt + chosen / prompt + rejected, both cut to one length;
 *  - kto: desirable/undesirable examples plus a KL example pairing this prompt with the previous
 *    record's completion (within each preprocessing batch, the first with the last);
 *  - pt: text + eos, truncated (or, with packing, concatenated and cut into cutoff_len blocks).
 */
import type { Aligned, TokenizedRecord } from './converter.ts';
import type { ChatTemplate, Conversation, Message } from './templates/types.ts';
import type { Tokenizer } from './tokenizer.ts';
import type { ExampleImages } from './vision-data.ts';

export const IGNORE_INDEX = -100;

export interface LmExample {
  input_ids: number[];
  /** Unshifted labels: labels[i] is the target for position i (the model shifts, as in HF). */
  labels: number[];
  /** neat_packing: 1..n for each packed sample, 0 on padding. */
  segment_ids?: number[];
  /** packing: positions restart at 0 for each packed sample (0 on padding). */
  position_ids?: number[];
  /** Vision-language records: the images whose embeddings fill the <|image_pad|> tokens. */
  images?: ExampleImages;
}

export interface PairwiseExample {
  chosen: { input_ids: number[]; labels: number[] };
  rejected: { input_ids: number[]; labels: number[] };
}

export interface KtoExample {
  input_ids: number[];
  labels: number[];
  kl_input_ids: number[];
  kl_labels: number[];
  kto_tag: boolean;
}

export type Example = LmExample | PairwiseExample | KtoExample;

export interface ProcessOptions {
  cutoffLen: number;
  trainOnPrompt: boolean;
  maskHistory: boolean;
}

/** LLaMA-Factory's infer_seqlen: lengths of (source, target) after truncation to cutoffLen. */
export function inferSeqlen(sourceLen: number, targetLen: number, cutoffLen: number): [number, number] {
  let maxTarget: number;
  if (targetLen * 2 < cutoffLen) maxTarget = cutoffLen;
  else if (sourceLen * 2 < cutoffLen) maxTarget = cutoffLen - sourceLen;
  else maxTarget = Math.trunc(cutoffLen * (targetLen / (sourceLen + targetLen)));
  const newTarget = Math.min(maxTarget, targetLen);
  const maxSource = Math.max(cutoffLen - newTarget, 0);
  const newSource = Math.min(maxSource, sourceLen);
  return [newSource, newTarget];
}

function conversation(prompt: Message[], response: Message[], a: Aligned): Conversation {
  return { system: a.system, tools: a.tools, messages: [...prompt, ...response] };
}

export interface EncodedLm {
  input_ids: number[];
  labels: number[];
  truncated: boolean;
}

/** supervised.py _encode_data_example */
export function encodeSupervised(template: ChatTemplate, a: Aligned, opts: ProcessOptions): EncodedLm {
  let pairs = template.encodeConversation(conversation(a.prompt, a.response, a), { maskHistory: opts.maskHistory }).turns;
  const eos = template.eosId;
  let inputIds: number[] = [];
  let labels: number[] = [];
  let total = template.efficientEos ? 1 : 0;
  let truncated = false;
  if (opts.maskHistory) pairs = pairs.slice().reverse();
  for (let t = 0; t < pairs.length; t++) {
    if (total >= opts.cutoffLen) {
      truncated = true;
      break;
    }
    let { prompt: src, response: tgt } = pairs[t];
    const [sl, tl] = inferSeqlen(src.length, tgt.length, opts.cutoffLen - total);
    if (sl < src.length || tl < tgt.length) truncated = true;
    src = src.slice(0, sl);
    tgt = tgt.slice(0, tl);
    total += sl + tl;
    let srcLabel: number[];
    if (opts.trainOnPrompt) srcLabel = src;
    else if (template.efficientEos && t !== 0 && sl > 0) srcLabel = [eos, ...new Array<number>(sl - 1).fill(IGNORE_INDEX)];
    else srcLabel = new Array<number>(sl).fill(IGNORE_INDEX);
    const tgtLabel = opts.maskHistory && t !== 0 ? new Array<number>(tl).fill(IGNORE_INDEX) : tgt;
    if (opts.maskHistory) {
      inputIds = [...src, ...tgt, ...inputIds];
      labels = [...srcLabel, ...tgtLabel, ...labels];
    } else {
      inputIds.push(...src, ...tgt);
      labels.push(...srcLabel, ...tgtLabel);
    }
  }
  if (template.efficientEos) {
    inputIds.push(eos);
    labels.push(eos);
  }
  return { input_ids: inputIds, labels, truncated };
}

/** pairwise.py _encode_data_example */
export function encodePairwise(template: ChatTemplate, a: Aligned, cutoffLen: number): PairwiseExample & { truncated: boolean } {
  const c = template.encodeOneTurn(conversation(a.prompt, [a.response[0]], a));
  const r = template.encodeOneTurn(conversation(a.prompt, [a.response[1]], a));
  let promptIds = c.prompt;
  let chosen = c.response;
  let rejected = r.response;
  if (template.efficientEos) {
    chosen = [...chosen, template.eosId];
    rejected = [...rejected, template.eosId];
  }
  const [sl, tl] = inferSeqlen(promptIds.length, Math.max(chosen.length, rejected.length), cutoffLen);
  const truncated = sl < promptIds.length || tl < Math.max(chosen.length, rejected.length);
  promptIds = promptIds.slice(0, sl);
  chosen = chosen.slice(0, tl);
  rejected = rejected.slice(0, tl);
  const mask = new Array<number>(sl).fill(IGNORE_INDEX);
  return {
    chosen: { input_ids: [...promptIds, ...chosen], labels: [...mask, ...chosen] },
    rejected: { input_ids: [...promptIds, ...rejected], labels: [...mask, ...rejected] },
    truncated,
  };
}

function oneTurnLm(template: ChatTemplate, conv: Conversation, cutoffLen: number): { input_ids: number[]; labels: number[]; truncated: boolean } {
  let { prompt, response } = template.encodeOneTurn(conv);
  if (template.efficientEos) response = [...response, template.eosId];
  const [sl, tl] = inferSeqlen(prompt.length, response.length, cutoffLen);
  const truncated = sl < prompt.length || tl < response.length;
  prompt = prompt.slice(0, sl);
  response = response.slice(0, tl);
  return { input_ids: [...prompt, ...response], labels: [...new Array<number>(sl).fill(IGNORE_INDEX), ...response], truncated };
}

/** feedback.py _encode_data_example; klResponse is the (rotated) response of another record. */
export function encodeKto(template: ChatTemplate, a: Aligned, klResponse: Message[], cutoffLen: number): KtoExample & { truncated: boolean } {
  const tag = a.response[0].content !== '';
  const msg = tag ? a.response[0] : a.response[1];
  const klMsg = klResponse[0].content ? klResponse[0] : klResponse[1];
  const main = oneTurnLm(template, conversation(a.prompt, [msg], a), cutoffLen);
  const kl = oneTurnLm(template, conversation(a.prompt, [klMsg], a), cutoffLen);
  return { input_ids: main.input_ids, labels: main.labels, kl_input_ids: kl.input_ids, kl_labels: kl.labels, kto_tag: tag, truncated: main.truncated };
}

/** unsupervised.py (ppo / prediction): prompt as input, response as labels. */
export function encodeUnsupervised(template: ChatTemplate, a: Aligned, cutoffLen: number): EncodedLm {
  const resp = a.response.length === 1 ? a.response : [{ role: 'assistant' as const, content: '' }];
  let { prompt, response } = template.encodeOneTurn(conversation(a.prompt, resp, a));
  if (template.efficientEos) response = [...response, template.eosId];
  const [sl, tl] = inferSeqlen(prompt.length, response.length, cutoffLen);
  return { input_ids: prompt.slice(0, sl), labels: response.slice(0, tl), truncated: sl < prompt.length || tl < response.length };
}

// ---------------------------------------------------------------------------------------------
// Packing (processor_utils.greedy_knapsack)

function bisectRight(a: number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x < a[mid]) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

export function greedyKnapsack(numbers: number[], capacity: number): number[][] {
  const nums = numbers.slice().sort((x, y) => x - y);
  const out: number[][] = [];
  while (nums.length) {
    const cur: number[] = [];
    let remaining = capacity;
    for (;;) {
      const idx = bisectRight(nums, remaining) - 1;
      if (idx < 0) break;
      remaining -= nums[idx];
      cur.push(nums.splice(idx, 1)[0]);
    }
    if (!cur.length) break; // nothing fits (cannot happen: lengths are <= capacity)
    out.push(cur);
  }
  return out;
}

/**
 * Pack one preprocessing batch of examples (each at most cutoffLen - 1 long, LLaMA-Factory's
 * packing cutoff) into sequences of exactly packedLen tokens.
 */
export function packBatch(examples: Array<{ input_ids: number[]; labels: number[] }>, packedLen: number, padId: number, neat: boolean): LmExample[] {
  const capacity = packedLen - 1;
  const lengths: number[] = [];
  const byLength = new Map<number, number[]>();
  examples.forEach((e, i) => {
    if (e.input_ids.length > capacity) return;
    lengths.push(e.input_ids.length);
    const l = byLength.get(e.input_ids.length);
    if (l) l.push(i);
    else byLength.set(e.input_ids.length, [i]);
  });
  const out: LmExample[] = [];
  for (const knapsack of greedyKnapsack(lengths, capacity)) {
    const ids: number[] = [];
    const labels: number[] = [];
    const seg: number[] = [];
    const pos: number[] = [];
    knapsack.forEach((len, k) => {
      const e = examples[byLength.get(len)!.pop()!];
      ids.push(...e.input_ids);
      labels.push(...e.labels);
      for (let j = 0; j < len; j++) {
        pos.push(j);
        seg.push(k + 1);
      }
    });
    const pad = packedLen - ids.length;
    for (let j = 0; j < pad; j++) {
      ids.push(padId);
      labels.push(IGNORE_INDEX);
      pos.push(0);
      seg.push(0);
    }
    const ex: LmExample = { input_ids: ids, labels, position_ids: pos };
    if (neat) ex.segment_ids = seg;
    out.push(ex);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Pretraining text (pretrain.py)

export interface PretrainOptions {
  cutoffLen: number;
  packing: boolean;
  /** eos text appended to every document. */
  eosText: string;
}

export function encodePretrainBatch(tok: Tokenizer, texts: string[], opts: PretrainOptions): { examples: LmExample[]; truncated: number } {
  const docs = texts.map((t) => t + opts.eosText);
  const addBos = tok.addBosToken && tok.bosToken !== undefined && tok.bosId !== undefined;
  const out: LmExample[] = [];
  let truncated = 0;
  if (!opts.packing) {
    for (const d of docs) {
      let ids = tok.encode(addBos ? tok.bosToken + d : d);
      if (ids.length > opts.cutoffLen) {
        ids = ids.slice(0, opts.cutoffLen);
        truncated++;
      }
      out.push({ input_ids: ids, labels: ids.slice() });
    }
    return { examples: out, truncated };
  }
  const all: number[] = [];
  for (const d of docs) {
    const ids = tok.encode(d);
    for (const x of ids) all.push(x);
  }
  const block = opts.cutoffLen;
  const total = Math.floor(all.length / block) * block;
  for (let i = 0; i < total; i += block) {
    const ids = all.slice(i, i + block);
    if (addBos) ids[0] = tok.bosId!;
    out.push({ input_ids: ids, labels: ids.slice() });
  }
  return { examples: out, truncated: all.length - total > 0 ? 1 : 0 };
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenized records

export function tokenizedToLm(r: TokenizedRecord, cutoffLen: number): EncodedLm {
  const labels = r.labels ?? r.input_ids.slice();
  const truncated = r.input_ids.length > cutoffLen;
  return { input_ids: r.input_ids.slice(0, cutoffLen), labels: labels.slice(0, cutoffLen), truncated };
}
