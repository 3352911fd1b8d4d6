// The form's settings checked by the same reader the worker and the CLI use (configFromObject):
// what blocks Start, which field each problem belongs to, and the notes worth showing.

import { ConfigError, configFromObject } from '../../config/load';
import type { Settings } from './settings';

export interface Problem {
  /** The settings key the problem is about (null: not one field). */
  key: string | null;
  message: string;
}

export interface SettingsCheck {
  problems: Problem[];
  /** Notes of the reader (max_steps 0 trains by epochs, keys without effect, ...). */
  notices: string[];
}

const SOURCE = 'settings';

/** The settings as the worker reads them (the dataset is chosen apart from them, so one is named). */
export function checkSettings(s: Settings): SettingsCheck {
  try {
    const { notices } = configFromObject({ dataset: 'app_dataset', ...s }, { source: SOURCE });
    return { problems: ppoProblems(s), notices: notices.map((n) => n.replace(/^note: /, '')) };
  } catch (e) {
    if (!(e instanceof ConfigError)) return { problems: [{ key: null, message: String((e as Error).message ?? e) }], notices: [] };
    return { problems: e.problems.map(problemOf), notices: [] };
  }
}

/** What the engine refuses only when a PPO run starts (src/engine/train.ts ppoReward), shown before it. */
function ppoProblems(s: Settings): Problem[] {
  if (s.stage !== 'ppo') return [];
  const out: Problem[] = [];
  if (s.finetuning_type !== 'lora') out.push({ key: 'finetuning_type', message: `stage ppo trains a LoRA adapter (its reference is the base with the adapter off): choose LoRA, QLoRA or DoRA, not ${String(s.finetuning_type)}` });
  if (Number(s.val_size) > 0) out.push({ key: 'val_size', message: "stage ppo does not evaluate (LLaMA-Factory's PPO trainer has none): set Eval split to 0" });
  if (!s.reward_model) out.push({ key: 'reward_model', message: 'stage ppo needs a reward model: choose an rm run of this model (train one with stage rm)' });
  return out;
}

function problemOf(line: string): Problem {
  const message = line.startsWith(`${SOURCE}: `) ? line.slice(SOURCE.length + 2) : line;
  const key = /^([a-z_][a-z0-9_]*)(?::| )/.exec(message)?.[1] ?? null;
  return { key, message };
}

/** The first problem of one field, for the message under it. */
export const problemFor = (check: SettingsCheck, key: string): string | undefined => check.problems.find((p) => p.key === key)?.message;

/** An error that asks for `template` (a model's chat template that cannot do what the data needs). */
export const asksForTemplate = (message: string): boolean => /set `template`|`template`|template: /.test(message);
