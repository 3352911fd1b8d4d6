// How runs and adapters are called on screen: by dataset, stage and method, model and start time
// instead of their ids.

import type { RunRecord } from '../../train/store-browser';
import { METHODS, methodOf, trainsAdapter, type Settings } from './settings';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "Dec 5 07:21" in local time. */
export function shortTime(ms: number): string {
  const d = new Date(ms);
  return `${MONTHS[d.getMonth()]} ${d.getDate()} ${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

/** "identity · LoRA · Demo model · Dec 5 07:21"; a preference stage before the method ("dpo (orpo) LoRA"). */
export function runName(o: { dataset: string; model: string; settings: Settings; at: number }): string {
  const s = o.settings;
  const method = METHODS.find((m) => m.value === methodOf(s))!.label;
  const stage = s.stage && s.stage !== 'sft' ? `${String(s.stage)}${s.stage === 'dpo' && s.pref_loss && s.pref_loss !== 'sigmoid' ? ` (${String(s.pref_loss)})` : ''} ` : '';
  return `${o.dataset} · ${stage}${method} · ${o.model} · ${shortTime(o.at)}`;
}

/** A model as a run name shows it: the demo by name, a Hub id without its owner. */
export const modelShortName = (m: { kind: 'demo' } | { kind: 'hub'; id: string }) => (m.kind === 'demo' ? 'Demo model' : m.id.split('/').at(-1)!);

/** A run name as the user typed it: one line, trimmed, at most 120 characters (empty: no name). */
export const cleanRunName = (name: string) => name.replace(/\s+/g, ' ').trim().slice(0, 120);

/**
 * The engine's adapter origin ("run <id>" after training, "run <id> (checkpoint-30)" from the
 * history, an imported file name) with the run's name in place of its id.
 */
export function adapterLabel(origin: string | null, runs: readonly Pick<RunRecord, 'id' | 'name'>[]): string {
  if (!origin) return 'trained in this session';
  const m = /^run (\S+)( \(checkpoint-\d+\))?$/.exec(origin);
  const run = m && runs.find((r) => r.id === m[1]);
  return run ? `${run.name}${m[2] ?? ''}` : origin;
}

/** The run whose adapter a fresh page offers: the one chosen last if it is still there, else the newest LoRA run with a checkpoint. */
export function adapterRunFor(runs: readonly RunRecord[], chosen: string | null, model: { kind: string; id: string }): RunRecord | undefined {
  const fits = (r: RunRecord) => trainsAdapter(r.settings) && r.checkpoints.length > 0 && r.model.kind === model.kind && r.model.id === model.id;
  return runs.find((r) => r.id === chosen && fits(r)) ?? runs.find(fits);
}

/** The runs stage ppo can take as its reward model: LoRA rm runs of this model with a checkpoint (the adapter and its value head), newest first as listed. */
export const rewardRunsFor = (runs: readonly RunRecord[], model: { kind: string; id: string }): RunRecord[] =>
  runs.filter((r) => r.settings.stage === 'rm' && r.settings.finetuning_type === 'lora' && r.checkpoints.length > 0 && r.model.kind === model.kind && r.model.id === model.id);
