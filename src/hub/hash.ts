// Incremental hashes for verification while streaming. WebCrypto has no incremental digest, so
// the browser uses @noble/hashes (audited, dependency-free); the Node store uses node:crypto.
//
// - LFS files are checked against their LFS oid: sha256 of the content.
// - Other (small, git-stored) files are checked against their git blob oid, which is also the
//   ETag the Hub serves for them: sha1("blob <size>\0" + content).

import { sha256 } from '@noble/hashes/sha2.js';
import { sha1 } from '@noble/hashes/legacy.js';
import { bytesToHex } from '@noble/hashes/utils.js';

export type HashKind = 'sha256' | 'git-sha1';

export interface IncrementalHash {
  update(bytes: Uint8Array): void;
  hex(): string;
}

export type HashFactory = (kind: 'sha256' | 'sha1') => IncrementalHash;

export const nobleHash: HashFactory = (kind) => {
  const h = kind === 'sha256' ? sha256.create() : sha1.create();
  return {
    update: (b) => void h.update(b),
    hex: () => bytesToHex(h.digest()),
  };
};

/** A hasher for a file of `size` bytes, by verification kind. */
export function fileHasher(factory: HashFactory, kind: HashKind, size: number): IncrementalHash {
  if (kind === 'sha256') return factory('sha256');
  const h = factory('sha1');
  h.update(new TextEncoder().encode(`blob ${size}\0`));
  return h;
}

/** The git blob oid of some bytes (the ETag of a non-LFS file on the Hub). */
export function gitBlobOid(bytes: Uint8Array): string {
  const h = fileHasher(nobleHash, 'git-sha1', bytes.length);
  h.update(bytes);
  return h.hex();
}

export function sha256Hex(bytes: Uint8Array): string {
  return bytesToHex(sha256(bytes));
}

export const isSha256 = (s: string | undefined): s is string => !!s && /^[0-9a-f]{64}$/.test(s);
export const isGitOid = (s: string | undefined): s is string => !!s && /^[0-9a-f]{40}$/.test(s);
