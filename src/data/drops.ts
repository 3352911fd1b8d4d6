// Records left out of a dataset, counted by reason (numbers in a reason are folded together) with
// where the first one is: every drop is reported, never silent.

import { formatLocation, type DataErrorLocation } from './errors.ts';

export interface DropCount {
  reason: string;
  count: number;
  /** Where the first such record is. */
  first: string;
}

function dropKey(reason: string): string {
  return reason.replace(/\d+/g, 'N');
}

export function addDrop(drops: Map<string, DropCount>, reason: string, where: DataErrorLocation): void {
  const k = dropKey(reason);
  const d = drops.get(k);
  if (d) d.count++;
  else drops.set(k, { reason, count: 1, first: formatLocation(where).replace(/: $/, '') });
}
