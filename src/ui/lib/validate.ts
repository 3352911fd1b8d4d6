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
    return { problems: [], notices: notices.map((n) => n.replace(/^note: /, '')) };
  } catch (e) {
    if (!(e instanceof ConfigError)) return { problems: [{ key: null, message: String((e as Error).message ?? e) }], notices: [] };
    return { problems: e.problems.map(problemOf), notices: [] };
  }
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
