// LLaMA-Factory's do_predict with predict_with_generate: generate an answer to every eval
// example's prompt, score the answers against the labels (BLEU-4, ROUGE-1/2/L as
// ComputeSimilarity does) and write what LLaMA-Factory writes to output_dir:
//  - generated_predictions.jsonl: {"prompt", "predict", "label"} per example (prompt decoded with
//    its special tokens, predict and label without them);
//  - predict_results.json and all_results.json: the metrics under "predict_" names with HF's
//    speed metrics (predict_runtime, predict_samples_per_second, predict_steps_per_second).
// Examples are generated one after another (the generator decodes one sequence); the batch size
// only counts the steps of steps_per_second, as HF counts them. An example with images (Qwen2-VL)
// passes its pixels to the generator, which fills the prompt's <|image_pad|> runs with them.

import type { Tokenizer } from '../data';
import type { ExampleImages } from '../data/vision-data';
import { pyJsonDumps } from '../data/pyjson';
import { contextLength, Generator, type SamplingOptions } from '../model/generate';
import type { Model } from '../model/model';
import type { PromptImage } from '../model/prompt-images';
import { flatJsonEntries, metricsJson, pyRound } from './python-float';
import { computeSimilarity, SIMILARITY_METRICS } from './similarity';

/** An example encoded for generation: the prompt's ids and the reference answer's ids. */
export interface PredictExample {
  input_ids: readonly number[];
  labels: readonly number[];
  /** The prompt's images, in the order of its <|image_pad|> runs. */
  images?: ExampleImages;
}

export interface PredictOptions extends Omit<SamplingOptions, 'signal' | 'stopIds'> {
  /** Ids that end an answer (the template's stop ids). */
  stopIds: readonly number[];
  /** per_device_eval_batch_size: HF counts predict steps in batches of it. */
  batchSize: number;
  /** skip_special_tokens for the written predict and label (LLaMA-Factory's default: true; the metrics always skip them). */
  skipSpecialTokens?: boolean;
}

export interface PredictHooks {
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** Seconds, for the speed metrics (default: performance.now). */
  clock?: () => number;
}

/** Where the result files go: a folder of the host (Node: atomic writes into output_dir). */
export interface OutputFolder {
  write(name: string, text: string): Promise<void>;
  /** The file's text, or null when it does not exist. */
  read(name: string): Promise<string | null>;
}

export interface Prediction {
  prompt: string;
  predict: string;
  label: string;
}

export interface PredictResult {
  predictions: Prediction[];
  /** predict_bleu-4, predict_rouge-1, predict_rouge-2, predict_rouge-l, predict_runtime, ... */
  metrics: Record<string, number>;
}

export const PREDICTIONS_FILE = 'generated_predictions.jsonl';
export const PREDICT_RESULTS_FILE = 'predict_results.json';
export const ALL_RESULTS_FILE = 'all_results.json';

/** Generates, scores and (with `out`) writes the files; an abort stops between examples with an AbortError. */
export async function runPredict(model: Model, tokenizer: Tokenizer, examples: readonly PredictExample[], options: PredictOptions, hooks: PredictHooks = {}, out?: OutputFolder): Promise<PredictResult> {
  if (examples.length === 0) throw new Error('predict: the eval dataset has no examples (set eval_dataset, or val_size to split one off)');
  if (!(options.batchSize >= 1)) throw new Error(`predict: the batch size must be at least 1, got ${options.batchSize}`);
  const clock = hooks.clock ?? (() => performance.now() / 1000);
  const start = clock();
  const context = contextLength(model);
  const skip = options.skipSpecialTokens ?? true;
  const generator = new Generator(model);
  const predictions: Prediction[] = [];
  // LLaMA-Factory scores texts decoded without special tokens whatever skip_special_tokens says
  const scored: { predict: string; label: string }[] = [];
  try {
    for (const [i, ex] of examples.entries()) {
      hooks.signal?.throwIfAborted();
      const room = context - ex.input_ids.length;
      if (room < 1) throw new Error(`predict: example ${i} has a prompt of ${ex.input_ids.length} tokens, which leaves no room for an answer in the model's context of ${context}; lower cutoff_len`);
      const ids: number[] = [];
      // each example draws its own random stream (seed + index) when sampling
      const sampling: SamplingOptions = { ...options, seed: (options.seed ?? 0) + i, maxNewTokens: Math.min(options.maxNewTokens, room), stopIds: [...options.stopIds], ...(hooks.signal ? { signal: hooks.signal } : {}) };
      const images = ex.images ? await promptImages(ex.images) : [];
      for await (const id of generator.generate(ex.input_ids, sampling, images)) ids.push(id);
      hooks.signal?.throwIfAborted();
      predictions.push({
        prompt: tokenizer.decode(ex.input_ids, { skipSpecialTokens: false }),
        predict: tokenizer.decode(ids, { skipSpecialTokens: skip }),
        label: tokenizer.decode(ex.labels, { skipSpecialTokens: skip }),
      });
      scored.push(skip ? predictions[i]! : { predict: tokenizer.decode(ids, { skipSpecialTokens: true }), label: tokenizer.decode(ex.labels, { skipSpecialTokens: true }) });
      hooks.onProgress?.(i + 1, examples.length);
    }
  } finally {
    generator.release();
  }
  const scores = computeSimilarity(scored);
  const metrics: Record<string, number> = Object.fromEntries(SIMILARITY_METRICS.map((m) => [`predict_${m}`, scores[m]]));
  Object.assign(metrics, speedMetrics('predict', clock() - start, examples.length, Math.ceil(examples.length / options.batchSize)));
  const result = { predictions, metrics };
  if (out) await writePredictFiles(out, result);
  return result;
}

/** An example's images as the generator takes them: its pixel rows ([patches, features], all images in order) split per grid. */
export async function promptImages(images: ExampleImages): Promise<PromptImage[]> {
  const pixels = await images.load();
  const patches = images.grids.map(([t, h, w]) => t * h * w);
  const features = pixels.length / patches.reduce((a, b) => a + b, 0);
  let at = 0;
  return images.grids.map((grid, k) => {
    const n = patches[k]! * features;
    const image = { pixels: pixels.subarray(at, at + n), grid };
    at += n;
    return image;
  });
}

/** HF's speed_metrics: runtime to 4 decimals, rates (from the unrounded runtime) to 3. */
export function speedMetrics(split: string, runtime: number, samples: number, steps: number): Record<string, number> {
  const m: Record<string, number> = { [`${split}_runtime`]: pyRound(runtime, 4) };
  if (runtime === 0) return m;
  m[`${split}_samples_per_second`] = pyRound(samples / runtime, 3);
  m[`${split}_steps_per_second`] = pyRound(steps / runtime, 3);
  return m;
}

/** generated_predictions.jsonl (json.dumps, ensure_ascii=False), predict_results.json, and the merged all_results.json. */
export async function writePredictFiles(out: OutputFolder, result: PredictResult): Promise<void> {
  await out.write(PREDICTIONS_FILE, result.predictions.map((p) => `${pyJsonDumps({ prompt: p.prompt, predict: p.predict, label: p.label })}\n`).join(''));
  await out.write(PREDICT_RESULTS_FILE, metricsJson(result.metrics));
  const previous = await out.read(ALL_RESULTS_FILE);
  const kept = previous === null ? new Map<string, string>() : flatJsonEntries(previous);
  if (!kept) throw new Error(`${ALL_RESULTS_FILE} in the output folder is not a flat JSON object of results; remove it to start a fresh one`);
  await out.write(ALL_RESULTS_FILE, metricsJson(result.metrics, kept));
}
