// Small helpers for tests that use the mock Hub.
import { createHash } from 'node:crypto';

/** Deterministic pseudo-random bytes (xorshift32). */
export function pseudoRandomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export const sha256Hex = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

/** The git blob oid (the Hub's ETag of a non-LFS file). */
export const gitOidHex = (b: Uint8Array | string) => {
  const buf = typeof b === 'string' ? Buffer.from(b) : b;
  return createHash('sha1').update(`blob ${buf.length}\0`).update(buf).digest('hex');
};

/** Byte equality (Vitest's toEqual on a large Uint8Array is very slow). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}
