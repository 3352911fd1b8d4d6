// `crucible train`: a LLaMA-Factory config run end to end in Node, the train job (train.ts) over
// an output folder as LLaMA-Factory leaves it: the adapter (or full model), trainer_log.jsonl,
// checkpoint-N/ folders, training_loss.png with plot_loss, trainer_state.json,
// train_results.json, all_results.json, and with evaluation eval_results.json (the metrics of the
// model left in output_dir: the best checkpoint's with load_best_model_at_end). A rerun
// resumes from the last checkpoint unless overwrite_output_dir is set; an abort (Ctrl-C) saves a
// checkpoint first.

import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { checkOutputDir, MODEL_SIDE_FILES, type CrucibleConfig } from '../config';
import type { TrainRunHooks, TrainRunResult } from './jobs';
import { parseJsonFile, templateFromConfig, withChatTemplate } from '../data';
import { nodeFileAccess } from '../data/node';
import { hubDatasetAccess } from '../hub/datasets';
import { resolveModelFiles } from './node-model';
import { appendQueue, removeStaleTemps, writeFileAtomic } from '../files/atomic-node';
import { basePrecision } from './precision';
import { Session } from './session';
import { trainModel } from './train';
import { modelTensors } from '../export/model-tensors';
import { writeSharded } from '../export/shards';
import { nodeGpu } from '../gpu/node';
import { nodeGemmTuning } from './gemm-tuning-node';
import type { Gpu } from '../gpu/runtime';
import type { ModelFiles } from '../model/weights';
import { lossPlotPng } from '../train/plot';
import { checkpointsToDelete } from '../train/rotation';
import { ALL_RESULTS_FILE } from '../eval/predict';
import { flatJsonEntries, metricsJson } from '../eval/python-float';
import { trackingHooks, type TrackingHooks } from '../train/tracking';
import { folderStore } from '../train/store-node';
import type { LogRecord, Trainer } from '../train/trainer';

/** `gpu`: a device to reuse (tests, a long-lived host); by default this run opens its own. */
export async function runTraining(config: CrucibleConfig, hooks: TrainRunHooks, env: { gpu?: Gpu } = {}): Promise<TrainRunResult> {
  const status = hooks.onStatus ?? (() => {});
  if (!config.model_name_or_path) throw new Error('model_name_or_path is required');
  await checkOutputDir(config, 'train');
  const out = config.output_dir;
  const resumeFrom = await checkpointToResume(config, out);
  if (!resumeFrom && config.overwrite_output_dir) await clearRunFiles(out);

  const gpu = env.gpu ?? (await nodeGpu({ warn: (m) => status(`warning: ${m}`) }));
  status(`GPU: ${gpu.caps.adapter}`);
  await nodeGemmTuning(gpu, { notice: status });
  const files = await resolveModelFiles(config.model_name_or_path, { onStatus: status, ...(hooks.signal ? { signal: hooks.signal } : {}), revision: config.model_revision, cacheDir: config.cache_dir });
  const precision = basePrecision(config, gpu.caps);
  if (precision.note) status(precision.note);
  status(`loading ${config.model_name_or_path}${config.quantization_bit ? ` (${config.quantization_bit}-bit)` : precision.f16 ? ' (f16 base)' : ''}`);
  const session = await Session.open(gpu, files, { quantizationBit: (config.quantization_bit as 4 | 8 | null) ?? null, f16: precision.f16 });

  const logPath = join(out, 'trainer_log.jsonl');
  const log = appendQueue(logPath);
  let tracking = null as TrackingHooks | null; // report_to's writers, opened with the run
  let pruning: Promise<void> = Promise.resolve();
  let lastCheckpoint: string | null = resumeFrom;
  const trainer = await trainModel(config, {
    session,
    data: { ...nodeFileAccess(), ...hubDatasetAccess(), log: status },
    store: folderStore(out),
    resumeFrom,
    openModel: (name) => resolveModelFiles(name, { onStatus: status, cacheDir: config.cache_dir }),
    hooks: {
      ...(hooks.signal ? { signal: hooks.signal } : {}),
      onStatus: (m) => {
        status(m);
        tracking?.onStatus(m);
      },
      onStart: async () => {
        await removeStaleTemps(out);
        tracking = await trackingHooks(config, out);
        // the log holds exactly the records of the checkpoint resumed from: steps trained after it are trained again
        const resumedLog = resumeFrom ? await checkpointLog(out, resumeFrom) : [];
        await writeFileAtomic(logPath, resumedLog.map((r) => `${JSON.stringify(r)}\n`).join(''));
      },
      onLog: (rec) => {
        log.append(`${JSON.stringify(rec)}\n`);
        tracking?.onLog(rec);
        hooks.onLog?.(rec);
      },
      onCheckpoint: (dir, step, best) => {
        lastCheckpoint = dir;
        hooks.onCheckpoint?.(join(out, dir), step);
        pruning = pruning.then(() => pruneCheckpoints(out, config.save_total_limit, best ?? null));
      },
      onDone: async (t) => {
        if (t.finished) await saveFinal(session, t, files, config, out);
      },
    },
  });
  await log.flush();
  await tracking?.close();
  await pruning;
  trainer.objective?.valueHead?.release();
  const state = trainer.state;
  const interrupted = !trainer.finished;
  const all = [...state.log_history];
  if (config.plot_loss) await writeFileAtomic(join(out, 'training_loss.png'), lossPlotPng(all.map((r) => ({ step: r.current_steps, ...(r.loss !== undefined ? { loss: r.loss } : {}), ...(r.eval_loss !== undefined ? { eval_loss: r.eval_loss } : {}) }))));
  const trainLoss = [...all].reverse().find((r) => r.loss !== undefined)?.loss;
  const evalMetrics = interrupted ? null : finalEvalMetrics(trainer);
  await writeFileAtomic(join(out, 'train_results.json'), JSON.stringify({ epoch: state.epoch, global_step: state.global_step, train_loss: trainLoss, eval_loss: evalMetrics?.eval_loss }, null, 2));
  if (!interrupted) await writeFileAtomic(join(out, 'trainer_state.json'), trainer.stateJson());
  if (!interrupted) await writeResults(out, state.log_history.at(-1)?.epoch ?? state.epoch, trainLoss, evalMetrics);
  const evalLoss = evalMetrics?.eval_loss;
  session.release();
  return {
    outputDir: out,
    globalStep: state.global_step,
    totalSteps: trainer.totalSteps,
    interrupted,
    checkpoint: lastCheckpoint ? join(out, lastCheckpoint) : null,
    ...(trainLoss !== undefined ? { trainLoss } : {}),
    ...(evalLoss !== undefined ? { evalLoss } : {}),
    ...(state.stopped ? { stopped: state.stopped } : {}),
    ...(trainer.opts.bestModel?.loadAtEnd && state.best.best_model_checkpoint ? { bestCheckpoint: join(out, state.best.best_model_checkpoint) } : {}),
  };
}

/**
 * The evaluation metrics of the model left in output_dir: the best checkpoint's evaluation when it
 * was loaded, otherwise the last step's. The weights are the ones evaluated then, so the final
 * evaluation LLaMA-Factory runs after training (do_eval) is not repeated.
 */
function finalEvalMetrics(trainer: Trainer): Record<string, number> | null {
  const { best, global_step: last, log_history: log } = trainer.state;
  const loaded = trainer.opts.bestModel?.loadAtEnd && best.best_model_checkpoint ? best.best_global_step : null;
  const step = loaded ?? last;
  const rec = [...log].reverse().find((r) => r.eval_loss !== undefined && r.current_steps === step);
  if (!rec) return null;
  const metrics: Record<string, number> = { epoch: rec.epoch };
  for (const [k, v] of Object.entries(rec)) if (k.startsWith('eval_') && typeof v === 'number') metrics[k] = v;
  return metrics;
}

/** eval_results.json, and all_results.json with the train and eval results merged into what it held (HF's save_metrics). */
async function writeResults(out: string, epoch: number, trainLoss: number | undefined, evalMetrics: Record<string, number> | null): Promise<void> {
  if (evalMetrics) await writeFileAtomic(join(out, 'eval_results.json'), metricsJson(evalMetrics));
  const previous = await readFile(join(out, ALL_RESULTS_FILE), 'utf8').catch(() => null);
  const kept = previous === null ? new Map<string, string>() : flatJsonEntries(previous);
  if (!kept) throw new Error(`${join(out, ALL_RESULTS_FILE)} is not a flat JSON object of results; remove it to start a fresh one`);
  await writeFileAtomic(join(out, ALL_RESULTS_FILE), metricsJson({ epoch, ...(trainLoss !== undefined ? { train_loss: trainLoss } : {}), ...evalMetrics }, kept));
}

/** The adapter (with base_model_name_or_path) or the whole trained model, plus rm's value head. */
async function saveFinal(session: Session, trainer: Trainer, files: ModelFiles, config: CrucibleConfig, out: string): Promise<void> {
  if (config.finetuning_type === 'lora' || config.finetuning_type === 'oft') {
    const ad = await session.exportAdapter(config.model_name_or_path);
    await writeFileAtomic(join(out, 'adapter_config.json'), ad['adapter_config.json']);
    await writeFileAtomic(join(out, 'adapter_model.safetensors'), ad['adapter_model.safetensors']);
  } else {
    await writeSharded(modelTensors(session.model), (p, d) => writeFileAtomic(join(out, p), d), { maxBytes: 5e9, dtype: 'F32' });
  }
  await trainer.objective?.save(folderStore(out), '');
  // the tokenizer files carry the template the model was trained with (LLaMA-Factory's fix_jinja_template)
  const template = templateFromConfig(config, session.tokenizer);
  for (const f of MODEL_SIDE_FILES) {
    if ((config.finetuning_type === 'lora' || config.finetuning_type === 'oft') && f === 'config.json') continue;
    if (await files.exists(f)) await writeFileAtomic(join(out, f), withChatTemplate(f, await files.readText(f), template));
  }
}

const CHECKPOINT = /^checkpoint-(\d+)$/;

/** The log records a checkpoint's trainer_state.json holds (those of its step and before). */
async function checkpointLog(out: string, dir: string): Promise<LogRecord[]> {
  const path = join(out, dir, 'trainer_state.json');
  const text = await readFile(path, 'utf8');
  return parseJsonFile<{ log_history?: LogRecord[] }>(text, path, `remove ${join(out, dir)} to resume from an earlier checkpoint`).log_history ?? [];
}

async function checkpoints(out: string): Promise<{ dir: string; step: number }[]> {
  let names: string[];
  try {
    names = await readdir(out);
  } catch {
    return [];
  }
  const found: { dir: string; step: number }[] = [];
  for (const n of names) {
    const m = CHECKPOINT.exec(n);
    if (m && (await stat(join(out, n, 'trainer_state.json')).then(() => true, () => false))) found.push({ dir: n, step: Number(m[1]) });
  }
  return found.sort((a, b) => a.step - b.step);
}

async function checkpointToResume(config: CrucibleConfig, out: string): Promise<string | null> {
  const r = config.resume_from_checkpoint;
  if (typeof r === 'string' && r.length > 0) {
    const inOut = join(out, r);
    if (CHECKPOINT.test(r) && (await checkpoints(out)).some((c) => c.dir === r)) return r;
    throw new Error(`resume_from_checkpoint: ${r} is not a complete checkpoint folder in ${out} (looked for ${inOut}/trainer_state.json)`);
  }
  if (r === false || config.overwrite_output_dir) return null;
  const last = (await checkpoints(out)).pop();
  if (!last && r === true) throw new Error(`resume_from_checkpoint: true, but ${out} has no complete checkpoint`);
  return last?.dir ?? null;
}

/** save_total_limit, never deleting the best model's checkpoint (rotation.ts). */
async function pruneCheckpoints(out: string, limit: number | null | undefined, best: string | null): Promise<void> {
  const bestStep = best ? Number(CHECKPOINT.exec(best)?.[1]) : null;
  for (const step of checkpointsToDelete((await checkpoints(out)).map((c) => c.step), limit, bestStep)) {
    await rm(join(out, `checkpoint-${step}`), { recursive: true, force: true });
  }
}

async function clearRunFiles(out: string): Promise<void> {
  for (const c of await checkpoints(out)) await rm(join(out, c.dir), { recursive: true, force: true });
  for (const f of ['trainer_log.jsonl', 'training_loss.png', 'train_results.json', 'trainer_state.json', 'eval_results.json', ALL_RESULTS_FILE]) await rm(join(out, f), { force: true });
}
