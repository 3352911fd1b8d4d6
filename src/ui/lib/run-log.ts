// The run panel's live log: one line per engine message and per log record, as LLaMA Board's
// output box shows a run (the newest lines kept).

import type { LogRecord } from '../../train/trainer';

export const LOG_LINES = 500;

const num = (x: number) => (Math.abs(x) >= 1e-3 || x === 0 ? String(Number(x.toPrecision(4))) : x.toExponential(2));

/** "step 3/30 · loss 1.234 · lr 0.01 · grad_norm 0.5 · 812 tokens/s", eval records as "eval_loss ...". */
export function logLine(r: LogRecord): string {
  const skip = new Set(['current_steps', 'total_steps', 'epoch', 'percentage', 'elapsed_time', 'remaining_time', 'tokens_per_second']);
  const parts = [`step ${r.current_steps}/${r.total_steps}`];
  for (const [k, v] of Object.entries(r)) if (!skip.has(k) && typeof v === 'number') parts.push(`${k} ${num(v)}`);
  if (r.tokens_per_second > 0) parts.push(`${r.tokens_per_second} tokens/s`);
  parts.push(`epoch ${num(r.epoch)}`);
  return parts.join(' · ');
}

/** `lines` with `line` added, the oldest dropped past LOG_LINES. */
export const withLine = (lines: readonly string[], line: string): string[] => [...lines, line].slice(-LOG_LINES);
