// Crucible's own cache folder in Node (tuned kernel choices): $CRUCIBLE_CACHE_DIR, else
// $XDG_CACHE_HOME/crucible, else ~/.cache/crucible: beside the Hugging Face cache's default.

import { homedir } from 'node:os';
import { join } from 'node:path';

export function crucibleCacheDir(env: Record<string, string | undefined> = process.env): string {
  const set = (v: string | undefined) => v !== undefined && v.trim() !== '';
  if (set(env.CRUCIBLE_CACHE_DIR)) return env.CRUCIBLE_CACHE_DIR!;
  return join(set(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME! : join(env.HOME || homedir(), '.cache'), 'crucible');
}
