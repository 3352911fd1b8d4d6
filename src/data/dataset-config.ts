// What buildDataset is given: LLaMA-Factory's data keys and the injected file / Hub access.

import type { ChatTemplate } from './templates.ts';
import type { Tokenizer } from './tokenizer.ts';
import type { Qwen2VLImageConfig } from './image/qwen2vl.ts';

export type Stage = 'pt' | 'sft' | 'rm' | 'dpo' | 'orpo' | 'simpo' | 'kto' | 'ppo';

/** LLaMA-Factory data keys (other keys of a training YAML are accepted and ignored). */
export interface DataConfig {
  stage?: Stage;
  dataset?: string | string[] | null;
  eval_dataset?: string | string[] | null;
  dataset_dir?: string;
  template?: string | null;
  cutoff_len?: number;
  train_on_prompt?: boolean;
  mask_history?: boolean;
  /** Default: true for pt, false otherwise (LLaMA-Factory). */
  packing?: boolean | null;
  neat_packing?: boolean;
  val_size?: number;
  max_samples?: number | null;
  seed?: number;
  streaming?: boolean;
  mix_strategy?: 'concat' | 'interleave_under' | 'interleave_over' | 'interleave_once' | string;
  interleave_probs?: string | number | null;
  tool_format?: string | null;
  default_system?: string | null;
  enable_thinking?: boolean | null;
  preserve_thinking?: boolean;
  /** Records per preprocessing batch: packing and KTO's KL pairing work per batch (default 1000). */
  preprocessing_batch_size?: number;
  /**
   * sft: encode the eval split for generation (prompt as input_ids, response as labels), as
   * LLaMA-Factory does for do_predict / predict_with_generate; `dataset` may then be absent.
   */
  predict_with_generate?: boolean;
  /** Folder the image paths of records are relative to (default: dataset_dir). */
  media_dir?: string | null;
  /** LLaMA-Factory's image_max_pixels / image_min_pixels: images are resized into this area first. */
  image_max_pixels?: number;
  image_min_pixels?: number;
  /** Crucible: shuffle the train examples with `seed` (default true). */
  shuffle?: boolean;
  /**
   * Crucible (preview): tokenize only train examples [offset, offset + count) in file order; the
   * others are checked (so drops are counted) but not tokenized. stats.train.examples counts all.
   */
  window?: ExampleWindow;
  [key: string]: unknown;
}

export interface DataDeps {
  tokenizer: Tokenizer;
  /** Read a local (or dropped-in) file. Paths are dataset_dir-joined with '/'. */
  readFile(path: string): Promise<Uint8Array>;
  /** Entries of a directory, or null if `path` is not a directory (file_name may name a folder). */
  listFiles?(path: string): Promise<string[] | null>;
  /** Hub access for hf_hub_url datasets (src/hub provides it). */
  fetchFile?(repo: string, path: string): Promise<Uint8Array>;
  /** Files of a Hub dataset repo; without it, conventional file names are tried. */
  listRepoFiles?(repo: string): Promise<string[]>;
  /** Use this template instead of resolving `config.template`. */
  template?: ChatTemplate;
  /** Progress/warning sink. */
  log?(message: string): void;
  /** The model's image processor (preprocessor_config.json); records with images need it. */
  imageProcessor?: Qwen2VLImageConfig | null;
}

export interface ExampleWindow {
  offset: number;
  count: number;
}

export type ExampleKind = 'lm' | 'pairwise' | 'kto';

export const STAGES: Stage[] = ['pt', 'sft', 'rm', 'dpo', 'orpo', 'simpo', 'kto', 'ppo'];

export function exampleKind(stage: Stage): ExampleKind {
  if (stage === 'rm' || stage === 'dpo' || stage === 'orpo' || stage === 'simpo') return 'pairwise';
  if (stage === 'kto') return 'kto';
  return 'lm';
}
