// What a training run leaves for people watching it, beside trainer_log.jsonl: running_log.txt
// (LLaMA-Factory's LoggerHandler: one "[LEVEL|time] source >> message" line per status message
// and per log record, started afresh each run) and, with report_to: tensorboard (or all), a
// TensorBoard event file under output_dir/runs/<date>_<host>/ with the scalars under the names
// HF's TensorBoardCallback gives them (train/loss, train/learning_rate, eval/loss ...).

import { hostname } from 'node:os';
import { join } from 'node:path';
import type { CrucibleConfig } from '../config';
import { appendQueue, writeFileAtomic } from '../files/atomic-node';
import { eventFileName, fileVersionEvent, scalarEvent, tfRecord } from './tfevents';
import type { LogRecord } from './trainer';

export interface TrackingHooks {
  onLog(record: LogRecord): void;
  onStatus(message: string): void;
  /** Waits for every write; throws the first failure (disk full ...). */
  close(): Promise<void>;
  /** The event file, when report_to asks for TensorBoard. */
  eventFile: string | null;
}

export interface TrackingOptions {
  /** Seconds since the epoch (default: the clock); tests fix it. */
  now?: () => number;
  host?: string;
}

export const RUNNING_LOG = 'running_log.txt';

/** Record fields that are progress bookkeeping, not metrics (HF logs none of them). */
const NOT_SCALARS = new Set(['current_steps', 'total_steps', 'percentage', 'elapsed_time', 'remaining_time', 'tokens_per_second']);

/**
 * A log record's metrics under HF Trainer's names (Crucible's `lr` is learning_rate); an
 * evaluation record carries its eval_* values and the epoch, as HF's evaluation logs do.
 */
export function hfLogs(record: LogRecord): Array<[string, number]> {
  const evalOnly = record.eval_loss !== undefined && record.loss === undefined;
  const out: Array<[string, number]> = [];
  const entries = Object.entries(record).sort(([a], [b]) => rank(a) - rank(b));
  for (const [key, value] of entries) {
    if (typeof value !== 'number' || !Number.isFinite(value) || NOT_SCALARS.has(key)) continue;
    if (evalOnly && !key.startsWith('eval_') && key !== 'epoch') continue;
    out.push([key === 'lr' ? 'learning_rate' : key, value]);
  }
  return out;
}

/** HF's order of the common metrics; the others follow in the record's order. */
const FIRST = ['loss', 'eval_loss', 'grad_norm', 'lr', 'epoch'];
const rank = (key: string) => (FIRST.includes(key) ? FIRST.indexOf(key) : FIRST.length);

/** HF's TensorBoardCallback names (rewrite_logs): eval_x -> eval/x, anything else train/x. */
export function tensorboardScalars(record: LogRecord): Array<[string, number]> {
  return hfLogs(record).map(([key, value]) => [key.startsWith('eval_') ? `eval/${key.slice(5)}` : `train/${key}`, value]);
}

/** Set up the run's tracking files in `outputDir` (running_log.txt is emptied, as LLaMA-Factory does). */
export async function trackingHooks(config: CrucibleConfig, outputDir: string, options: TrackingOptions = {}): Promise<TrackingHooks> {
  const now = options.now ?? (() => Date.now() / 1000);
  const host = options.host ?? hostname();
  const logPath = join(outputDir, RUNNING_LOG);
  await writeFileAtomic(logPath, '');
  const log = appendQueue(logPath);
  const line = (level: 'INFO' | 'WARNING', message: string) => log.append(`[${level}|${localTime(now())}] crucible >> ${message}\n`);

  const tensorboard = config.report_to.some((r) => r === 'tensorboard' || r === 'all');
  let events: ReturnType<typeof appendQueue> | null = null;
  let eventFile: string | null = null;
  if (tensorboard) {
    const start = now();
    eventFile = join(outputDir, 'runs', `${runName(start)}_${host}`, eventFileName(start, host));
    await writeFileAtomic(eventFile, tfRecord(fileVersionEvent(start)));
    events = appendQueue(eventFile);
    line('INFO', `TensorBoard event file: ${eventFile}`);
  }

  return {
    eventFile,
    onStatus(message) {
      const warning = /^warning:\s*/i;
      line(warning.test(message) ? 'WARNING' : 'INFO', message.replace(warning, ''));
    },
    onLog(record) {
      line('INFO', `{${hfLogs(record).map(([key, v]) => `'${key}': ${v}`).join(', ')}}`);
      if (!events) return;
      const t = now();
      for (const [tag, value] of tensorboardScalars(record)) events.append(tfRecord(scalarEvent(t, record.current_steps, tag, value)));
    },
    async close() {
      const results = await Promise.allSettled([log.flush(), events?.flush()]);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
  };
}

/** "YYYY-MM-DD HH:MM:SS" in local time, LLaMA-Factory's running_log datefmt. */
function localTime(seconds: number): string {
  const d = new Date(seconds * 1000);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** HF's default logging_dir name: runs/<Mon><DD>_<HH>-<MM>-<SS>_<host>. */
function runName(seconds: number): string {
  const d = new Date(seconds * 1000);
  const p = (n: number) => String(n).padStart(2, '0');
  const month = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][d.getMonth()];
  return `${month}${p(d.getDate())}_${p(d.getHours())}-${p(d.getMinutes())}-${p(d.getSeconds())}`;
}
