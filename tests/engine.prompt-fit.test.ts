// What fits in the context, on a real tokenizer with a large vocabulary (Qwen3): the bounds that
// refuse a prompt before it is tokenised whole, and the answer's token budget.
import { describe, expect, it } from 'vitest';
import { answerBudget, checkPromptChars, checkPromptTokens, ContextOverflowError } from '../src/engine/prompt-fit';
import { tokenizerFor } from './fixtures/data/helpers.ts';

const qwen = tokenizerFor('qwen3');
const words = (chars: number) => 'the quick brown fox jumps over a lazy dog '.repeat(Math.ceil(chars / 42)).slice(0, chars);

describe('prompt bounds', () => {
  it('refuses by length alone what no tokenisation could fit', () => {
    const limit = 4096 * qwen.maxTokenChars;
    expect(() => checkPromptChars(limit, 4096, qwen)).not.toThrow();
    expect(() => checkPromptChars(limit + 1, 4096, qwen)).toThrow(ContextOverflowError);
    expect(() => checkPromptChars(limit + 1, 4096, qwen)).toThrow(`the messages are ${limit + 1} characters long; the model's context of 4096 tokens holds at most ${limit} characters`);
  });

  it('counts a long text in pieces, letting the event loop run, and stops soon after twice the context', async () => {
    // just under the length bound of a 4096-token context: one whole encode of it takes a while
    const text = words(4096 * qwen.maxTokenChars - 1);
    // a tokenizer that records each piece it counts, and how many event-loop turns had passed
    let turns = 0;
    let immediate = setImmediate(function turn() {
      turns++;
      immediate = setImmediate(turn);
    });
    const pieces: { chars: number; tokens: number; turns: number }[] = [];
    const spy = Object.assign(Object.create(qwen) as typeof qwen, {
      countTokens(piece: string) {
        const tokens = qwen.countTokens(piece);
        pieces.push({ chars: piece.length, tokens, turns });
        return tokens;
      },
    });
    try {
      await expect(checkPromptTokens(text, 4096, spy)).rejects.toThrow("the messages are more than 8192 tokens long; the model's context is 4096 tokens");
    } finally {
      clearImmediate(immediate);
    }
    expect(pieces.length).toBeGreaterThan(2);
    expect(Math.max(...pieces.map((p) => p.chars))).toBeLessThanOrEqual(4096);
    for (let i = 1; i < pieces.length; i++) expect(pieces[i]!.turns, `the event loop ran before piece ${i}`).toBeGreaterThan(pieces[i - 1]!.turns);
    // it stopped at the first piece that took the count past twice the context
    const counted = pieces.reduce((n, p) => n + p.tokens, 0);
    expect(counted).toBeGreaterThan(8192);
    expect(counted - pieces.at(-1)!.tokens).toBeLessThanOrEqual(8192);
    expect(pieces.reduce((n, p) => n + p.chars, 0)).toBeLessThan(text.length / 4);
  });

  it('passes a text that fits, and counts close to the whole encode', async () => {
    const text = words(20_000);
    const tokens = qwen.countTokens(text);
    await expect(checkPromptTokens(text, tokens, qwen)).resolves.toBeUndefined();
    await expect(checkPromptTokens(text, Math.floor(tokens / 2) - 10, qwen)).rejects.toThrow(ContextOverflowError);
  });

  it('gives the answer what the context leaves, and refuses a prompt that fills it', () => {
    expect(answerBudget(100, 1024, 256)).toBe(156);
    expect(answerBudget(100, 50, 256)).toBe(50);
    expect(answerBudget(255, 1024, 256)).toBe(1);
    expect(() => answerBudget(256, 5, 256)).toThrow("the prompt is 256 tokens long and the model's context is 256 tokens, which leaves no room for an answer");
  });
});
