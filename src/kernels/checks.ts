// Argument checks shared by the elementwise launchers (act.ts, elementwise.ts).

import type { Tensor } from '../gpu/tensor';

export function requireF32(fn: string, ...named: [string, Tensor][]): void {
  for (const [name, t] of named) {
    if (t.dtype !== 'f32') throw new Error(`${fn}: ${name} must be f32, not ${t.dtype}`);
  }
}

/** WebGPU forbids a buffer bound both read-only and writable in one dispatch. */
export function distinctBuffers(fn: string, written: [string, Tensor][], read: [string, Tensor][]): void {
  for (const [wn, w] of written)
    for (const [rn, r] of read) {
      if (w.buffer === r.buffer) throw new Error(`${fn}: ${wn} must not share a buffer with ${rn}`);
    }
}
