// Beam search bookkeeping as Hugging Face transformers defines it (GenerationMixin._beam_search,
// one prompt, num_return_sequences 1), kept apart from the model: it takes each running beam's
// next-token logits and says which beam each new running beam continues and with which token.
//   - A step scores every (beam, token) as the beam's summed log-probability plus the token's
//     log-softmax (after the repetition penalty, which HF applies to log-probabilities), and keeps
//     the best max(2, 1 + stop ids) * num_beams candidates, best first.
//   - Candidates that end with a stop id, or reach max_new_tokens, finish: only those among the
//     first num_beams are stored, scored sum / generated_length ** length_penalty (the stop token
//     counted), and the stored list keeps the num_beams best. Finished candidates drop out of the
//     running set (HF gives them -1e9, so they run on only when too few others remain).
//   - Search ends when every candidate finished, when early_stopping is true and num_beams are
//     stored, or when the best running beam, normalised by its current length (max_new_tokens for
//     early_stopping 'never' with a positive length_penalty), cannot beat the worst stored one.
// The answer is the best stored sequence (its stop token removed) and its score.

export type EarlyStopping = boolean | 'never';

export interface BeamOptions {
  numBeams: number;
  maxNewTokens: number;
  /** Exponent of the length normalisation (HF default 1; above 0 favours longer answers). */
  lengthPenalty?: number;
  /** HF's early_stopping (default false: the heuristic above). */
  earlyStopping?: EarlyStopping;
  repetitionPenalty?: number;
  stopIds: readonly number[];
}

export interface BeamResult {
  /** The answer's tokens, without the stop token. */
  tokens: number[];
  /** HF's sequences_scores: summed log-probability over generated_length ** length_penalty. */
  score: number;
  /** True when the answer ended with a stop id (false: it reached max_new_tokens). */
  stopped: boolean;
}

/** What a step asks of the model: each new running beam continues beam parents[i] with tokens[i]. */
export interface BeamStep {
  parents: number[];
  tokens: number[];
}

interface Candidate {
  beam: number;
  token: number;
  score: number;
}

interface Hypothesis {
  tokens: number[];
  score: number;
}

/** HF marks finished or impossible entries with this (a score no real sequence reaches). */
const DROPPED = -1e9;

export class BeamSearch {
  private running: Hypothesis[];
  /** Stored finished hypotheses, best first, at most numBeams. */
  private finished: (Hypothesis & { stopped: boolean })[] = [];
  private improvable = true;
  private ended = false;
  private readonly stop: Set<number>;
  private readonly keep: number;
  private readonly lengthPenalty: number;
  private readonly earlyStopping: EarlyStopping;

  constructor(private readonly prompt: readonly number[], private readonly opts: BeamOptions) {
    if (!Number.isInteger(opts.numBeams) || opts.numBeams < 1) throw new Error(`num_beams must be a whole number of at least 1, got ${opts.numBeams}`);
    if (!(opts.maxNewTokens >= 1)) throw new Error(`beam search needs max_new_tokens of at least 1, got ${opts.maxNewTokens}`);
    this.stop = new Set(opts.stopIds);
    this.keep = Math.max(2, 1 + this.stop.size) * opts.numBeams;
    this.lengthPenalty = opts.lengthPenalty ?? 1;
    this.earlyStopping = opts.earlyStopping ?? false;
    // every beam starts as the prompt; only the first one counts until the first step spreads them
    this.running = Array.from({ length: opts.numBeams }, (_, b) => ({ tokens: [], score: b === 0 ? 0 : DROPPED }));
  }

  get done(): boolean {
    return this.ended;
  }

  /** Tokens generated so far by each running beam (all the same length). */
  get length(): number {
    return this.running[0]!.tokens.length;
  }

  /** logits: [numBeams, vocab] for the running beams in order. Returns the next running set. */
  step(logits: ArrayLike<number>): BeamStep {
    if (this.ended) throw new Error('beam search: step after the search ended');
    const { numBeams } = this.opts;
    const V = logits.length / numBeams;
    if (!Number.isInteger(V) || V < 1) throw new Error(`beam search: ${logits.length} logits do not split into ${numBeams} beams`);
    const candidates = this.topCandidates(logits, V);
    const generated = this.length + 1;
    const atLimit = generated >= this.opts.maxNewTokens;
    const ends = candidates.map((c) => atLimit || this.stop.has(c.token));

    // the next running beams: the best candidates that did not finish
    const order = candidates.map((_, i) => i).sort((a, b) => this.runningScore(candidates, ends, b) - this.runningScore(candidates, ends, a) || a - b);
    const next = order.slice(0, numBeams);

    if (this.improvable && !(this.earlyStopping === true && this.finished.length === numBeams)) {
      const norm = generated ** this.lengthPenalty;
      for (let i = 0; i < numBeams; i++) {
        if (!ends[i]) continue;
        const c = candidates[i]!;
        this.finished.push({ tokens: [...this.running[c.beam]!.tokens, c.token], score: c.score / norm, stopped: this.stop.has(c.token) });
      }
      // stable: earlier stored hypotheses win ties, as HF's merge puts them first
      this.finished.sort((a, b) => b.score - a.score);
      this.finished.length = Math.min(this.finished.length, numBeams);
    }

    const step: BeamStep = { parents: next.map((i) => candidates[i]!.beam), tokens: next.map((i) => candidates[i]!.token) };
    this.running = next.map((i) => ({ tokens: [...this.running[candidates[i]!.beam]!.tokens, candidates[i]!.token], score: this.runningScore(candidates, ends, i) }));

    const best = this.running[0]!.score;
    const hypothetical = this.earlyStopping === 'never' && this.lengthPenalty > 0 ? this.opts.maxNewTokens : generated;
    const full = this.finished.length === numBeams;
    this.improvable &&= !full || best / hypothetical ** this.lengthPenalty > this.finished[numBeams - 1]!.score;
    this.ended = !this.improvable || (full && this.earlyStopping === true) || ends.every(Boolean);
    return step;
  }

  result(): BeamResult {
    if (!this.ended) throw new Error('beam search: result before the search ended');
    const best = this.finished[0];
    if (!best) throw new Error('beam search ended with no finished sequence');
    const tokens = best.stopped ? best.tokens.slice(0, -1) : best.tokens;
    return { tokens, score: best.score, stopped: best.stopped };
  }

  private runningScore(candidates: readonly Candidate[], ends: readonly boolean[], i: number): number {
    return candidates[i]!.score + (ends[i] ? DROPPED : 0);
  }

  /** The `keep` best (beam, token) continuations, best first (ties: lower beam, then lower token). */
  private topCandidates(logits: ArrayLike<number>, V: number): Candidate[] {
    const top: Candidate[] = [];
    const penalty = this.opts.repetitionPenalty ?? 1;
    for (let b = 0; b < this.opts.numBeams; b++) {
      const lp = logSoftmax(logits, b * V, V);
      if (penalty !== 1) {
        for (const id of new Set([...this.prompt, ...this.running[b]!.tokens])) {
          if (id >= 0 && id < V) lp[id] = lp[id]! < 0 ? lp[id]! * penalty : lp[id]! / penalty;
        }
      }
      const base = this.running[b]!.score;
      for (let t = 0; t < V; t++) {
        const score = base + lp[t]!;
        if (top.length === this.keep && !(score > top[this.keep - 1]!.score)) continue;
        // after the equal scores already kept: candidates come in flat order, which breaks ties
        let lo = 0, hi = top.length;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (top[mid]!.score >= score) lo = mid + 1;
          else hi = mid;
        }
        top.splice(lo, 0, { beam: b, token: t, score });
        if (top.length > this.keep) top.pop();
      }
    }
    return top;
  }
}

/** log_softmax of logits[offset .. offset + n) in f64. */
function logSoftmax(logits: ArrayLike<number>, offset: number, n: number): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[offset + i]!);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[offset + i]! - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = logits[offset + i]! - lse;
  return out;
}
