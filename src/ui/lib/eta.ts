// Time left in a run, from the measured pace of its steps. The first step of a (re)started run
// compiles the GPU pipelines and takes many times longer than the rest, so the pace is measured
// between steps that arrived after it, never from the start of the run.

/** When a step's log arrived (ms, any monotonic clock). */
export interface StepMark {
  step: number;
  at: number;
}

/** Seconds left to `total` steps, or undefined until two steps after the first have been timed. */
export function etaSeconds(marks: readonly StepMark[], total: number): number | undefined {
  if (marks.length < 2 || total <= 0) return undefined;
  const first = marks[0]!;
  const last = marks.at(-1)!;
  const steps = last.step - first.step;
  if (steps <= 0) return undefined;
  const perStep = (last.at - first.at) / 1000 / steps;
  return Math.max(0, total - last.step) * perStep;
}
