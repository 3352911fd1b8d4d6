// Per-stage processing of aligned (or pre-tokenized) records into training examples: template,
// masking, cutoff, packing, KTO's KL pairing, with split statistics and drops.
import { DataError, type DataErrorLocation } from './errors.ts';
import type { ExampleKind, ExampleWindow, Stage } from './dataset-config.ts';
import { addDrop, type DropCount } from './drops.ts';
import type { Aligned, TokenizedRecord } from './converter.ts';
import {
  encodeKto,
  encodePairwise,
  encodePretrainBatch,
  encodeSupervised,
  encodeUnsupervised,
  IGNORE_INDEX,
  packBatch,
  tokenizedToLm,
  type Example,
  type KtoExample,
  type LmExample,
  type PairwiseExample,
} from './processor.ts';
import type { LoadedDataset } from './sources.ts';
import type { ChatTemplate } from './templates.ts';
import type { Tokenizer } from './tokenizer.ts';
import { checkImageTokens } from './vision-data.ts';

export interface SplitStats {
  /** Examples of the split (with a window: all of them, tokenized or not). */
  examples: number;
  /** Examples before packing. */
  sequences: number;
  tokens: number;
  learnedTokens: number;
  truncated: number;
  maxLength: number;
}

function emptySplit(): SplitStats {
  return { examples: 0, sequences: 0, tokens: 0, learnedTokens: 0, truncated: 0, maxLength: 0 };
}

function countLm(s: SplitStats, e: { input_ids: number[]; labels: number[] }) {
  s.tokens += e.input_ids.length;
  for (const l of e.labels) if (l !== IGNORE_INDEX) s.learnedTokens++;
  s.maxLength = Math.max(s.maxLength, e.input_ids.length);
}

export interface ProcessContext {
  stage: Stage;
  kind: ExampleKind;
  template: ChatTemplate;
  tok: Tokenizer;
  cutoffLen: number;
  packing: boolean;
  neat: boolean;
  packedLen: number;
  batchSize: number;
  trainOnPrompt: boolean;
  maskHistory: boolean;
  eosText: string;
  /** Encode for generation (LLaMA-Factory's unsupervised processor): prompt as input, response as labels. */
  generate?: boolean;
  /** Records with images: the processor's merge size (their image tokens are checked and kept with the example). */
  imageMergeSize?: number;
}

export type Item = { kind: 'aligned'; a: Aligned } | { kind: 'tok'; t: TokenizedRecord };

function itemLocation(it: Item): DataErrorLocation {
  const s = it.kind === 'aligned' ? it.a.source : it.t.source;
  return { dataset: it.kind === 'aligned' ? it.a.dataset : it.t.dataset, file: s.file, line: s.line, index: s.index };
}

export function processItems(items: Item[], ctx: ProcessContext, drops: Map<string, Map<string, DropCount>>, window?: ExampleWindow): { examples: Example[]; stats: SplitStats } {
  const stats = emptySplit();
  const out: Example[] = [];
  // Counts the examples that survive; true for one outside the window (not tokenized).
  let survived = 0;
  const skip = (): boolean => {
    const i = survived++;
    return window !== undefined && (i < window.offset || i >= window.offset + window.count);
  };
  const drop = (it: Item, reason: string) => {
    const ds = it.kind === 'aligned' ? it.a.dataset : it.t.dataset;
    if (!drops.has(ds)) drops.set(ds, new Map());
    addDrop(drops.get(ds)!, reason, itemLocation(it));
  };
  const wrap = <T>(it: Item, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      if (e instanceof DataError) throw e;
      const loc = itemLocation(it);
      throw new DataError((e as Error).message, loc);
    }
  };
  for (let b = 0; b < items.length; b += ctx.batchSize) {
    const batch = items.slice(b, b + ctx.batchSize);
    if (ctx.stage === 'pt') {
      const texts: string[] = [];
      for (const it of batch) {
        if (skip()) continue;
        if (it.kind === 'tok') {
          const e = tokenizedToLm(it.t, ctx.cutoffLen);
          if (e.truncated) stats.truncated++;
          out.push({ input_ids: e.input_ids, labels: e.labels });
          countLm(stats, e);
          stats.sequences++;
          continue;
        }
        texts.push(it.a.prompt[0]?.content ?? '');
      }
      if (texts.length) {
        const r = encodePretrainBatch(ctx.tok, texts, { cutoffLen: ctx.cutoffLen, packing: ctx.packing, eosText: ctx.eosText });
        stats.truncated += r.truncated;
        stats.sequences += texts.length;
        for (const e of r.examples) {
          out.push(e);
          countLm(stats, e);
        }
      }
      continue;
    }
    if (ctx.kind === 'lm') {
      const seqs: LmExample[] = [];
      for (const it of batch) {
        let e: { input_ids: number[]; labels: number[]; truncated: boolean };
        if (it.kind === 'tok') {
          if (skip()) continue;
          e = tokenizedToLm(it.t, ctx.cutoffLen);
        } else if (ctx.generate) {
          if (it.a.prompt.length % 2 !== 1) {
            drop(it, 'the prompt does not end with a user turn');
            continue;
          }
          if (skip()) continue;
          e = wrap(it, () => encodeUnsupervised(ctx.template, it.a, ctx.cutoffLen));
        } else {
          if (it.a.prompt.length % 2 !== 1 || it.a.response.length !== 1) {
            drop(it, it.a.response.length === 0 ? 'no response to learn (stage sft needs a response/output column or complete turns; for raw text use stage pt)' : `expected one response for sft, found ${it.a.response.length}`);
            continue;
          }
          if (skip()) continue;
          e = wrap(it, () => encodeSupervised(ctx.template, it.a, { cutoffLen: ctx.cutoffLen, trainOnPrompt: ctx.trainOnPrompt, maskHistory: ctx.maskHistory }));
        }
        if (e.truncated) stats.truncated++;
        const a = it.kind === 'aligned' ? it.a : null;
        const images = a?.imageInputs ? checkImageTokens(e.input_ids, a, ctx.tok, ctx.imageMergeSize!, ctx.cutoffLen) : null;
        seqs.push({ input_ids: e.input_ids, labels: e.labels, ...(images ? { images } : {}) });
      }
      stats.sequences += seqs.length;
      const examples: LmExample[] = ctx.packing ? packBatch(seqs, ctx.packedLen, padIdOf(ctx), ctx.neat) : seqs;
      for (const e of examples) {
        out.push(e);
        countLm(stats, e);
      }
      continue;
    }
    if (ctx.kind === 'pairwise') {
      for (const it of batch) {
        let ex: PairwiseExample & { truncated?: boolean };
        if (it.kind === 'tok') {
          if (!it.t.chosen || !it.t.rejected) {
            drop(it, 'pre-tokenized preference rows need chosen_input_ids and rejected_input_ids');
            continue;
          }
          if (skip()) continue;
          const side = (s: { input_ids: number[]; labels?: number[] }) => ({ input_ids: s.input_ids.slice(0, ctx.cutoffLen), labels: (s.labels ?? s.input_ids).slice(0, ctx.cutoffLen) });
          ex = { chosen: side(it.t.chosen), rejected: side(it.t.rejected), truncated: Math.max(it.t.chosen.input_ids.length, it.t.rejected.input_ids.length) > ctx.cutoffLen };
        } else {
          if (it.a.prompt.length % 2 !== 1 || it.a.response.length < 2) {
            drop(it, 'a preference record needs a prompt ending with a user turn and two responses (chosen, rejected)');
            continue;
          }
          if (skip()) continue;
          ex = wrap(it, () => encodePairwise(ctx.template, it.a, ctx.cutoffLen));
        }
        if (ex.truncated) stats.truncated++;
        const clean: PairwiseExample = { chosen: ex.chosen, rejected: ex.rejected };
        out.push(clean);
        stats.sequences++;
        countLm(stats, clean.chosen);
        countLm(stats, clean.rejected);
      }
      continue;
    }
    // kto: the KL completion of record i is the response of record i-1 in this batch (first ← last).
    const responses = batch.map((it) => (it.kind === 'aligned' ? it.a.response : []));
    const kl = [responses[responses.length - 1], ...responses.slice(0, -1)];
    batch.forEach((it, i) => {
      let ex: KtoExample & { truncated?: boolean };
      if (it.kind === 'tok') {
        if (it.t.kto_tag === undefined || !it.t.kl_input_ids) {
          drop(it, 'pre-tokenized KTO rows need kl_input_ids and kto_tag');
          return;
        }
        if (skip()) return;
        ex = {
          input_ids: it.t.input_ids.slice(0, ctx.cutoffLen),
          labels: (it.t.labels ?? it.t.input_ids).slice(0, ctx.cutoffLen),
          kl_input_ids: it.t.kl_input_ids.slice(0, ctx.cutoffLen),
          kl_labels: (it.t.kl_labels ?? it.t.kl_input_ids).slice(0, ctx.cutoffLen),
          kto_tag: it.t.kto_tag,
        };
      } else {
        if (it.a.prompt.length % 2 !== 1 || it.a.response.length < 2) {
          drop(it, it.a.ktoTag === undefined ? 'KTO record without a boolean kto_tag' : 'a KTO record needs a prompt ending with a user turn and a response');
          return;
        }
        if (kl[i].length < 2) {
          drop(it, 'its KL partner (the previous record) is not a valid KTO record');
          return;
        }
        if (skip()) return;
        ex = wrap(it, () => encodeKto(ctx.template, it.a, kl[i], ctx.cutoffLen));
      }
      if (ex.truncated) stats.truncated++;
      out.push({ input_ids: ex.input_ids, labels: ex.labels, kl_input_ids: ex.kl_input_ids, kl_labels: ex.kl_labels, kto_tag: ex.kto_tag });
      stats.sequences++;
      countLm(stats, ex);
    });
  }
  stats.examples = window ? survived : out.length;
  return { examples: out, stats };
}

/** pad_token, else the template's eos (LLaMA-Factory sets pad = eos after replacing eos). */
export function padIdFor(tok: Tokenizer, template: ChatTemplate): number {
  const pad = tok.padToken !== undefined ? tok.tokenToId(tok.padToken) : undefined;
  return pad ?? template.eosId;
}

function padIdOf(ctx: ProcessContext): number {
  return padIdFor(ctx.tok, ctx.template);
}

export function explainEmpty(loaded: LoadedDataset[], procDrops: Map<string, Map<string, DropCount>>, ctx: ProcessContext, hint: string): string {
  const lines: string[] = [];
  for (const d of loaded) {
    const all = new Map(d.drops);
    for (const [k, v] of procDrops.get(d.attr.name) ?? []) {
      const cur = all.get(k);
      if (cur) cur.count += v.count;
      else all.set(k, { ...v });
    }
    const used = d.aligned.length + d.tokenized.length;
    lines.push(`  dataset "${d.attr.name}" (${d.files.join(', ') || d.attr.source}): ${d.records} records, ${used} converted`);
    for (const v of all.values()) lines.push(`    - ${v.count} dropped: ${v.reason} (first: ${v.first})`);
    if (d.records === 0) lines.push('    - the file has no records');
  }
  return `no training examples survive for stage "${ctx.stage}":\n${lines.join('\n')}${hint ? '\n' + hint : ''}`;
}
