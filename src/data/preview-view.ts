// A previewed example as the dataset panel shows it: sft / pt text with the learned tokens marked;
// a preference pair as its prompt, chosen and rejected answers; a KTO example as its prompt,
// answer and tag. Built from previewExamples (preview.ts) for the app's dataset panel.

import type { PreviewExample, PreviewItem, PreviewSegment } from './preview';

export type ExampleView =
  | { kind: 'lm'; segments: PreviewSegment[]; tokens: number; learned: number }
  | { kind: 'pairwise'; prompt: string; chosen: PreviewSegment[]; rejected: PreviewSegment[]; chosenTokens: number; rejectedTokens: number }
  | { kind: 'kto'; prompt: string; response: PreviewSegment[]; desirable: boolean; tokens: number };

/** The rendered prompt (the leading tokens that are not learned) and the rest, the answer. */
export function splitPrompt(segments: readonly PreviewSegment[]): { prompt: string; answer: PreviewSegment[] } {
  const first = segments[0];
  if (!first || first.learned) return { prompt: '', answer: [...segments] };
  return { prompt: first.text, answer: segments.slice(1) };
}

const learnedCount = (item: PreviewItem) => item.labels.filter((l) => l !== -100).length;

export function exampleView(e: PreviewExample): ExampleView {
  if ('chosen' in e) {
    const chosen = splitPrompt(e.chosen.segments);
    return {
      kind: 'pairwise',
      prompt: chosen.prompt,
      chosen: chosen.answer,
      rejected: splitPrompt(e.rejected.segments).answer,
      chosenTokens: e.chosen.input_ids.length,
      rejectedTokens: e.rejected.input_ids.length,
    };
  }
  if ('kto_tag' in e) {
    const { prompt, answer } = splitPrompt(e.segments);
    return { kind: 'kto', prompt, response: answer, desirable: e.kto_tag, tokens: e.input_ids.length };
  }
  return { kind: 'lm', segments: e.segments, tokens: e.input_ids.length, learned: learnedCount(e) };
}
