// Learning-rate schedules as HF transformers' get_scheduler defines them (multiplier of the peak
// rate at optimizer step `step`, 0-based, i.e. the rate used for the (step+1)-th update).

export type SchedulerType = 'constant' | 'constant_with_warmup' | 'linear' | 'cosine' | 'cosine_with_min_lr';

export interface Schedule {
  type: SchedulerType;
  warmupSteps: number;
  totalSteps: number;
  /** cosine_with_min_lr: floor as a fraction of the peak. */
  minLrRate?: number;
}

export function lrMultiplier(s: Schedule, step: number): number {
  const { warmupSteps: w, totalSteps: n } = s;
  if (s.type === 'constant') return 1;
  if (step < w) return step / Math.max(1, w);
  if (s.type === 'constant_with_warmup') return 1;
  const progress = (step - w) / Math.max(1, n - w);
  if (s.type === 'linear') return Math.max(0, (n - step) / Math.max(1, n - w));
  const cos = 0.5 * (1 + Math.cos(Math.PI * progress));
  if (s.type === 'cosine') return Math.max(0, cos);
  const floor = s.minLrRate ?? 0;
  return floor + (1 - floor) * Math.max(0, cos);
}

/** HF: warmup_steps wins when > 0, else ceil(warmup_ratio * total). */
export function warmupSteps(totalSteps: number, warmupStepsOpt: number, warmupRatio: number): number {
  return warmupStepsOpt > 0 ? warmupStepsOpt : Math.ceil(warmupRatio * totalSteps);
}
