// The one Hub download the app runs at a time, shared by the Hub search (a picked model) and the
// stored-models list (resuming a partial one): progress, retries after cut connections, the outcome.

import type { DownloadEvent } from '../../../workers/api';
import { app, chooseModel, refreshStored } from './app.svelte';
import { cb, getEngine } from './engine';
import { bytes, errorText } from './format';

export type DownloadOrigin = 'search' | 'stored';

export const download = $state({
  /** The model being (or last) downloaded. */
  id: '',
  /** Where it was started: the Hub search, or the stored-models list (shown there only). */
  from: 'search' as DownloadOrigin,
  running: false,
  progress: null as DownloadEvent | null,
  error: '',
  /** What the last download went through (cut connections it resumed after). */
  notice: '',
});

/** Download (or resume) `id` into the browser's store, then make it the chosen model. */
export async function downloadModel(id: string, from: DownloadOrigin): Promise<void> {
  Object.assign(download, { id, from, running: true, progress: null, error: '', notice: '' });
  let interruptions = 0;
  try {
    await getEngine().download(id, cb((p: DownloadEvent) => {
      if (p.retry && p.retry.attempt > (download.progress?.retry?.attempt ?? 0)) interruptions++;
      download.progress = p;
    }));
    if (interruptions) download.notice = `Downloaded ${id}: the connection was lost ${interruptions === 1 ? 'once' : `${interruptions} times`}, and the download resumed where it stopped.`;
    await refreshStored();
    chooseModel({ kind: 'hub', id });
  } catch (err) {
    const cancelled = (err as { name?: string })?.name === 'AbortError';
    await refreshStored();
    const stored = partialBytes(id);
    download.error = cancelled ? `Download of ${id} cancelled.` : `Download of ${id} failed: ${errorText(err)}`;
    if (stored) download.error += ` ${bytes(stored)} are kept: resume to continue from there.`;
  } finally {
    download.running = false;
  }
}

export const cancelDownload = () => getEngine().cancelDownload();

/** Bytes of `id` already stored by an interrupted download (0: none). */
export function partialBytes(id: string | undefined): number {
  return app.stored.find((m) => m.id === id && !m.complete && m.partialBytes > 0)?.partialBytes ?? 0;
}
