// The eval jobs in Node, from a LLaMA-Factory config: do_predict with predict_with_generate
// (generated_predictions.jsonl and predict_results.json in output_dir) and `crucible eval`'s
// multiple-choice benchmarks (results.json and results.log in save_dir).

import { existsSync } from 'node:fs';
import type { CrucibleConfig } from '../config';
import { buildDataset, getTemplate, type LmExample } from '../data';
import { nodeFileAccess } from '../data/node';
import { evaluateChoices, type ChoiceResult, type EvalLang } from '../eval/choice';
import { loadChoiceTask, type Subject } from '../eval/choice-task';
import { diskFolder, diskTaskReader } from '../eval/folders-node';
import { runPredict, type PredictResult } from '../eval/predict';
import { nodeGpu } from '../gpu/node';
import { hubDatasetAccess } from '../hub/datasets';
import { resolveModelFiles } from './node-model';
import { Session } from './session';

export interface EvalJobHooks {
  onStatus?: (message: string) => void;
  signal?: AbortSignal;
}

/** The model (+ one adapter) a job runs, as chat loads it. */
async function openSession(config: Pick<CrucibleConfig, 'model_name_or_path' | 'adapter_name_or_path' | 'quantization_bit' | 'model_revision' | 'cache_dir'>, status: (m: string) => void): Promise<Session> {
  if (!config.model_name_or_path) throw new Error('model_name_or_path is required');
  const gpu = await nodeGpu({ warn: (m) => status(`warning: ${m}`) });
  const files = await resolveModelFiles(config.model_name_or_path, { onStatus: status, revision: config.model_revision, cacheDir: config.cache_dir });
  const session = await Session.open(gpu, files, { quantizationBit: (config.quantization_bit as 4 | 8 | null) ?? null });
  const adapters = config.adapter_name_or_path ?? [];
  if (adapters.length > 1) throw new Error(`adapter_name_or_path: evaluating ${adapters.length} adapters at once is not supported; merge them first`);
  if (adapters[0]) {
    const dir = await resolveModelFiles(adapters[0], { onStatus: status });
    await session.loadAdapter(await dir.readText('adapter_config.json'), await dir.open('adapter_model.safetensors'));
    status(`adapter: ${adapters[0]}`);
  }
  return session;
}

/** do_predict with predict_with_generate on eval_dataset (or the val_size split), written to output_dir. */
export async function runPredictJob(config: CrucibleConfig, hooks: EvalJobHooks = {}): Promise<PredictResult> {
  const status = hooks.onStatus ?? (() => {});
  const session = await openSession(config, status);
  try {
    const data = await buildDataset({ ...config, predict_with_generate: true }, { tokenizer: session.tokenizer, imageProcessor: session.imageConfig, ...nodeFileAccess(), ...hubDatasetAccess(), log: status });
    status(`predict: ${data.eval.length} examples`);
    return await runPredict(session.model, session.tokenizer, data.eval as LmExample[], {
      maxNewTokens: config.max_new_tokens,
      temperature: config.do_sample ? config.temperature : 0,
      topP: config.top_p,
      topK: config.top_k,
      repetitionPenalty: config.repetition_penalty,
      numBeams: config.num_beams,
      lengthPenalty: config.length_penalty,
      seed: config.seed,
      stopIds: data.template.stopIds,
      batchSize: config.per_device_eval_batch_size,
      skipSpecialTokens: config.skip_special_tokens,
    }, { onProgress: (done, total) => status(`predict: ${done}/${total}`), ...(hooks.signal ? { signal: hooks.signal } : {}) }, diskFolder(config.output_dir));
  } finally {
    session.release();
  }
}

/** LLaMA-Factory's EvaluationArguments (hparams/evaluation_args.py), with its defaults. */
export interface EvaluationArgs {
  task: string;
  task_dir: string;
  batch_size: number;
  seed: number;
  lang: EvalLang;
  n_shot: number;
  save_dir: string | null;
}

export const EVALUATION_DEFAULTS: Omit<EvaluationArgs, 'task'> = { task_dir: 'evaluation', batch_size: 4, seed: 42, lang: 'en', n_shot: 5, save_dir: null };

export type ChoiceEvalConfig = EvaluationArgs & Pick<CrucibleConfig, 'model_name_or_path' | 'adapter_name_or_path' | 'quantization_bit' | 'model_revision' | 'cache_dir' | 'template' | 'default_system' | 'enable_thinking'>;

/** `crucible eval`: the task's subjects scored by answer-letter logits; the files go to save_dir when set. */
export async function runChoiceEval(config: ChoiceEvalConfig, hooks: EvalJobHooks & { onSubject?: (s: Subject, i: number, n: number) => void } = {}): Promise<ChoiceResult> {
  const status = hooks.onStatus ?? (() => {});
  // LLaMA-Factory refuses an existing save_dir before loading anything
  if (config.save_dir !== null && existsSync(config.save_dir)) throw new Error(`save_dir ${config.save_dir} already exists; use another one`);
  const task = await loadChoiceTask(config.task, diskTaskReader(config.task_dir), config.n_shot > 0);
  status(`eval: ${config.task}, ${task.subjects.length} subjects, ${task.subjects.reduce((n, s) => n + s.questions.length, 0)} questions`);
  const session = await openSession(config, status);
  try {
    const template = getTemplate(config.template ?? undefined, session.tokenizer, {
      ...(config.enable_thinking != null ? { enableThinking: config.enable_thinking } : {}),
      ...(config.default_system ? { defaultSystem: config.default_system } : {}),
    });
    return await evaluateChoices(session.model, session.tokenizer, template, task, { lang: config.lang, nShot: config.n_shot, batchSize: config.batch_size, seed: config.seed }, {
      ...(hooks.onSubject ? { onSubject: hooks.onSubject } : {}),
      ...(hooks.signal ? { signal: hooks.signal } : {}),
    }, config.save_dir !== null ? diskFolder(config.save_dir) : undefined);
  } finally {
    session.release();
  }
}
