// What fits in the model's context: a prompt is refused before any heavy work when it cannot fit
// (first by its length in characters, then by tokens counted in pieces that let the event loop
// run in between), and the answer gets the tokens the context has left after the prompt.

import type { Tokenizer } from '../data';

/** The messages do not fit the model's context; the message names both lengths. */
export class ContextOverflowError extends Error {
  override name = 'ContextOverflowError';
}

/** Text tokenised at once before the event loop gets a turn (a few milliseconds of work). */
const PIECE_CHARS = 4096;

/**
 * Refuses text that cannot fit in `context` tokens, without tokenising it: no token covers more
 * characters than the tokenizer's longest token string, so a text longer than context times that
 * cannot fit.
 */
export function checkPromptChars(chars: number, context: number, tokenizer: Tokenizer): void {
  const limit = context * tokenizer.maxTokenChars;
  if (chars > limit) {
    throw new ContextOverflowError(
      `the messages are ${chars} characters long; the model's context of ${context} tokens holds at most ${limit} characters`,
    );
  }
}

/**
 * Refuses text that comes to far more tokens than the context, counting in pieces and letting
 * the event loop run between them, so that the exact tokenising that follows is bounded. Pieces
 * are cut at whitespace and counted apart, which is close to the whole count, not equal to it:
 * hence the margin of twice the context.
 */
export async function checkPromptTokens(text: string, context: number, tokenizer: Tokenizer, signal?: AbortSignal): Promise<void> {
  const stopAbove = 2 * context;
  let tokens = 0;
  for (let at = 0; at < text.length; ) {
    const end = pieceEnd(text, at);
    tokens += tokenizer.countTokens(text.slice(at, end));
    if (tokens > stopAbove) {
      throw new ContextOverflowError(`the messages are more than ${stopAbove} tokens long; the model's context is ${context} tokens`);
    }
    at = end;
    if (at < text.length) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      signal?.throwIfAborted();
    }
  }
}

/** End of the piece starting at `at`: at most PIECE_CHARS on, at a space in its last quarter if there is one. */
function pieceEnd(text: string, at: number): number {
  let end = Math.min(text.length, at + PIECE_CHARS);
  if (end === text.length) return end;
  const space = text.lastIndexOf(' ', end);
  if (space > at + (3 * PIECE_CHARS) / 4) return space;
  // never between the two halves of a surrogate pair
  if (/[\uD800-\uDBFF]/.test(text[end - 1]!)) end--;
  return end;
}

/** Tokens the answer may have: what was asked, at most what the context leaves after the prompt. */
export function answerBudget(promptTokens: number, requested: number, context: number): number {
  if (promptTokens >= context) {
    throw new ContextOverflowError(
      `the prompt is ${promptTokens} tokens long and the model's context is ${context} tokens, which leaves no room for an answer`,
    );
  }
  return Math.min(requested, context - promptTokens);
}
