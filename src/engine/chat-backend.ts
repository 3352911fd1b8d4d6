// The engine interface behind the OpenAI-compatible API and `crucible chat`.

export type ChatRole = 'system' | 'user' | 'assistant' | 'tool';

export interface ChatMessage {
  role: ChatRole;
  /** Text; each image of `images` sits where an IMAGE_MARK (src/data/content-text.ts) is. */
  content: string;
  /** Encoded image files (PNG, JPEG) of a user message, in the order of its marks. */
  images?: Uint8Array[];
}

export interface ChatRequest {
  /** One of ChatBackend.models(). */
  model: string;
  messages: ChatMessage[];
  /** Upper bound on generated tokens; the answer also ends where the model's context does. */
  maxTokens: number;
  /** 0 means greedy decoding. */
  temperature: number;
  topP: number;
  /** 0: no top-k limit. */
  topK: number;
  /** 1.0: none. */
  repetitionPenalty: number;
  /** Beam search with this many beams (absent or 1: sampling or greedy; more needs temperature 0). */
  numBeams?: number;
  /** Beam search's length normalisation exponent (default 1). */
  lengthPenalty?: number;
  /** OpenAI's penalties, -2..2 (0: none); a backend that cannot apply them should reject non-zero values. */
  presencePenalty: number;
  frequencyPenalty: number;
  /** null: a fresh random seed. */
  seed: number | null;
  /** Stop strings. The server enforces them itself (see TokenSink); a backend may also use them. */
  stop: string[];
}

export interface ChatResult {
  /** The whole generated text (the server prefers what was streamed through onToken). */
  text: string;
  finishReason: 'stop' | 'length';
  promptTokens: number;
  completionTokens: number;
}

/**
 * Receives each decoded piece of text in order. Returning `false` asks the backend to stop now
 * (a stop string was reached): it should end generation and resolve with finishReason 'stop'.
 */
export type TokenSink = (text: string) => boolean | void;

/**
 * A request the backend cannot serve as asked (its messages do not fit the model's context, say).
 * The server answers 400 with this message; `crucible chat` prints it.
 */
export class ChatRequestError extends Error {
  override name = 'ChatRequestError';
  constructor(
    message: string,
    readonly param: string | null = 'messages',
    readonly code: string | null = 'context_length_exceeded',
  ) {
    super(message);
  }
}

/**
 * A text generator. Contract:
 *  - chat() streams text through onToken and resolves with the totals;
 *  - when `signal` aborts (the client went away, the server closes) it stops promptly and either
 *    resolves with what it has or rejects (an AbortError); both are fine;
 *  - the server calls chat() at most `maxConcurrent` times at once (default 1: one generation
 *    at a time on one GPU), so a backend needs no locking of its own unless it raises that.
 */
export interface ChatBackend {
  /** Model ids served, as listed by GET /v1/models; the first is the default. Names, not paths. */
  models(): string[];
  /** Tokens of prompt plus answer the model holds; an explicit max_tokens above it is refused. */
  contextLength?(): number;
  /**
   * Cheap checks (no tokenising) before a request waits for its turn: throws ChatRequestError
   * for messages that cannot fit, so that they cost neither a place in line nor the work.
   */
  precheck?(request: ChatRequest): void;
  /**
   * Streams the answer; rejects with ChatRequestError (before streaming anything) when the
   * messages do not fit the context. The answer ends at maxTokens or where the context does.
   */
  chat(request: ChatRequest, onToken: TokenSink, signal: AbortSignal): Promise<ChatResult>;
  /** Free GPU resources (called once when the server or chat session ends). */
  close?(): Promise<void> | void;
}
