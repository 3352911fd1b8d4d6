// A plain f64 beam search written from transformers' GenerationMixin._beam_search (one prompt,
// num_return_sequences 1): no cache, each step asks `nextLogits` for the full sequences of the
// running beams. Independent of src/model/beam-search.ts: every candidate of every beam is scored
// and sorted, hypotheses carry their own flags, and the stop rules are checked as HF states them.

export interface RefBeamOptions {
  numBeams: number;
  maxNewTokens: number;
  lengthPenalty: number;
  earlyStopping: boolean | 'never';
  repetitionPenalty: number;
  stopIds: number[];
}

export interface RefBeamResult {
  tokens: number[];
  score: number;
}

/** nextLogits(sequences) gives each full sequence's last-position logits (vocab each). */
export function refBeamSearch(prompt: number[], nextLogits: (sequences: number[][]) => Float64Array[], o: RefBeamOptions): RefBeamResult {
  const NEG = -1e9;
  let running = Array.from({ length: o.numBeams }, (_, b) => ({ seq: [...prompt], score: b === 0 ? 0 : NEG }));
  let finished: { seq: number[]; score: number }[] = [];
  let improvable = true;
  const keep = Math.max(2, 1 + new Set(o.stopIds).size) * o.numBeams;
  for (let len = 0; ; len++) {
    const logits = nextLogits(running.map((r) => r.seq));
    const cands: { beam: number; token: number; score: number; flat: number }[] = [];
    running.forEach((r, b) => {
      const row = logits[b]!;
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
      const lp = Array.from(row, (x) => x - lse);
      for (const id of new Set(r.seq)) lp[id] = lp[id]! < 0 ? lp[id]! * o.repetitionPenalty : lp[id]! / o.repetitionPenalty;
      lp.forEach((l, t) => cands.push({ beam: b, token: t, score: r.score + l, flat: b * row.length + t }));
    });
    cands.sort((a, b) => b.score - a.score || a.flat - b.flat);
    const top = cands.slice(0, keep);
    const generated = len + 1;
    const hits = top.map((c) => o.stopIds.includes(c.token) || generated >= o.maxNewTokens);

    const wasFull = finished.length === o.numBeams;
    if (improvable && !(wasFull && o.earlyStopping === true)) {
      const added = top.slice(0, o.numBeams).filter((_, i) => hits[i]).map((c) => ({ seq: [...running[c.beam]!.seq, c.token], score: c.score / generated ** o.lengthPenalty }));
      finished = [...finished, ...added].sort((a, b) => b.score - a.score).slice(0, o.numBeams);
    }
    const ranked = top.map((c, i) => ({ c, s: c.score + (hits[i] ? NEG : 0), i })).sort((a, b) => b.s - a.s || a.i - b.i).slice(0, o.numBeams);
    running = ranked.map(({ c, s }) => ({ seq: [...running[c.beam]!.seq, c.token], score: s }));

    const length = o.earlyStopping === 'never' && o.lengthPenalty > 0 ? o.maxNewTokens : generated;
    const full = finished.length === o.numBeams;
    if (full && !(running[0]!.score / length ** o.lengthPenalty > finished[finished.length - 1]!.score)) improvable = false;
    if (!improvable || (full && o.earlyStopping === true) || hits.every(Boolean)) break;
  }
  const best = finished[0]!;
  const answer = best.seq.slice(prompt.length);
  if (o.stopIds.includes(answer[answer.length - 1]!)) answer.pop();
  return { tokens: answer, score: best.score };
}
