// The curves the run panel draws: a stage's metric keys (chartKeys, as LLaMA-Factory's workflows
// plot them) grouped into panels, a key with its eval_ twin and rewards/chosen with
// rewards/rejected, and the points of one key in a run's log.

import { chartKeys } from '../../train/preference/metrics';
import type { PrefLoss } from '../../train/preference/options';
import type { LogRecord } from '../../train/trainer';

export interface ChartPanel {
  title: string;
  /** Log keys drawn in the panel, train before eval. */
  series: string[];
}

const panelOf = (key: string) => {
  const base = key.replace(/^eval_/, '');
  return base === 'rewards/chosen' || base === 'rewards/rejected' ? 'rewards' : base;
};

export function chartPanels(keys: readonly string[]): ChartPanel[] {
  const panels: ChartPanel[] = [];
  for (const k of keys) {
    const title = panelOf(k);
    let p = panels.find((x) => x.title === title);
    if (!p) panels.push((p = { title, series: [] }));
    if (!p.series.includes(k)) p.series.push(k);
  }
  return panels;
}

/** The panels of a run with these settings (stage, pref_loss), then the learning rate's (as LLaMA Board plots it). */
export function stagePanels(settings: Record<string, unknown>): ChartPanel[] {
  // stage ppo: LLaMA-Factory plots loss and reward; the KL to the reference beside them
  if (settings.stage === 'ppo') return [...chartPanels(['loss', 'reward', 'objective/kl']), { title: 'lr', series: ['lr'] }];
  const stage = settings.stage === 'dpo' || settings.stage === 'kto' || settings.stage === 'rm' || settings.stage === 'pt' ? settings.stage : 'sft';
  return [...chartPanels(chartKeys(stage, (settings.pref_loss as PrefLoss | undefined) ?? 'sigmoid')), { title: 'lr', series: ['lr'] }];
}

/** [step, value] of every log record that has `key`. */
export function points(log: readonly LogRecord[], key: string): [number, number][] {
  const out: [number, number][] = [];
  for (const l of log) {
    const v = (l as unknown as Record<string, unknown>)[key];
    if (typeof v === 'number' && Number.isFinite(v)) out.push([l.current_steps, v]);
  }
  return out;
}
