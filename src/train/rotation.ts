// save_total_limit with a best model, as HF's Trainer rotates checkpoints (_sorted_checkpoints,
// _rotate_checkpoints): checkpoints by step, the best one moved to the second-to-last place so
// it is never deleted, and a limit of 1 read as 2 while the newest is not the best (the newest is
// kept for resuming). One difference: HF sorts checkpoint folders by modification time when
// asked (use_mtime); Crucible always sorts by step.

/** The steps of the checkpoints to delete so that at most `limit` remain (null or 0: keep all). */
export function checkpointsToDelete(steps: readonly number[], limit: number | null | undefined, bestStep: number | null = null): number[] {
  if (!limit || limit <= 0) return [];
  const sorted = [...steps].sort((a, b) => a - b);
  if (sorted.length <= limit) return [];
  const best = bestStep !== null ? sorted.indexOf(bestStep) : -1;
  if (best >= 0 && best < sorted.length - 2) {
    sorted.splice(best, 1);
    sorted.splice(sorted.length - 1, 0, bestStep!);
  }
  const keep = best >= 0 && limit === 1 && sorted[sorted.length - 1] !== bestStep ? 2 : limit;
  return sorted.slice(0, Math.max(0, sorted.length - keep));
}
