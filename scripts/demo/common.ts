// Shared paths and settings of the demo model build (scripts/demo/*.ts).

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
export const CORPUS = join(ROOT, 'scripts/demo/c4_demo.jsonl');
export const MODEL_DIR = join(ROOT, 'public/demo/model');
export const DATA_DIR = join(ROOT, 'public/demo/data');
/** Working files of a build (initial weights, checkpoints, logs); not committed. */
export const WORK_DIR = join(ROOT, 'scripts/demo/.work');

/** Byte-level BPE: 256 bytes + merges + these specials (ids at the end, as GPT-2 / Qwen). */
export const VOCAB_SIZE = 1024;
export const SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] as const;
export const NUM_MERGES = VOCAB_SIZE - 256 - SPECIALS.length;

/** Documents of the corpus, in file order. */
export function corpusTexts(): string[] {
  return readFileSync(CORPUS, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => (JSON.parse(l) as { text: string }).text);
}

export function arg(name: string, fallback: string): string;
export function arg(name: string): string | undefined;
export function arg(name: string, fallback?: string): string | undefined {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : fallback;
}
