// `crucible train <config.yaml> [key=value ...]`, as `llamafactory-cli train`.

import type { CrucibleConfig } from '../config';
import { commandConfig, type CommandDef } from './args';
import type { TrainLog } from '../engine/jobs';
import { loadEngine } from './engines';
import { formatDuration } from './format';
import { interruptSignal, type CliIO } from './io';
import { keysHelp } from './keys';

/** A 20-cell bar of the run's progress. */
export function progressBar(done: number, total: number): string {
  const cells = Math.round((20 * Math.min(done, total)) / Math.max(1, total));
  return `[${'#'.repeat(cells)}${'.'.repeat(20 - cells)}] ${String(Math.floor((100 * done) / Math.max(1, total))).padStart(3)}%`;
}

/** One line like LLaMA-Factory's progress logs. */
export function formatTrainLog(r: TrainLog): string {
  const parts = [`step ${r.current_steps}/${r.total_steps}`];
  if (r.loss !== undefined) parts.push(`loss ${r.loss.toFixed(4)}`);
  if (r.eval_loss !== undefined) parts.push(`eval_loss ${r.eval_loss.toFixed(4)}`);
  if (r.grad_norm !== undefined) parts.push(`grad_norm ${r.grad_norm.toFixed(3)}`);
  if (r['rewards/accuracies'] !== undefined) parts.push(`reward_acc ${r['rewards/accuracies'].toFixed(2)}`);
  if (r['rewards/margins'] !== undefined) parts.push(`margin ${r['rewards/margins'].toFixed(3)}`);
  if (r.accuracy !== undefined) parts.push(`accuracy ${r.accuracy.toFixed(2)}`);
  if (r.reward !== undefined) parts.push(`reward ${r.reward.toFixed(3)}`);
  parts.push(`lr ${r.lr.toExponential(2)}`, `epoch ${r.epoch.toFixed(2)}`);
  if (r.tokens_per_second > 0) parts.push(`${Math.round(r.tokens_per_second)} tok/s`);
  parts.push(`${formatDuration(r.elapsed_time)} elapsed, ${formatDuration(r.remaining_time)} left`);
  return parts.join('  ');
}

export function describeRun(c: CrucibleConfig): string {
  const method =
    c.finetuning_type === 'lora'
      ? `LoRA r=${c.lora_rank} alpha=${c.lora_alpha}${c.use_dora ? ' DoRA' : ''}${c.use_rslora ? ' rsLoRA' : ''}${c.quantization_bit ? ` on a ${c.quantization_bit}-bit base` : ''}`
      : c.finetuning_type === 'oft'
        ? `OFT ${c.oft_rank ? `${c.oft_rank} blocks` : `blocks of ${c.oft_block_size}`}${c.quantization_bit ? ` on a ${c.quantization_bit}-bit base` : ''}`
      : c.finetuning_type === 'freeze'
        ? `freeze (${c.freeze_trainable_layers} trainable layers)`
        : 'full fine-tuning';
  const data = c.dataset ? c.dataset.join(', ') : '(no training data)';
  return `${c.stage} · ${method} · ${c.model_name_or_path} · ${data} -> ${c.output_dir}`;
}

export const trainCommand: CommandDef = {
  name: 'train',
  summary: 'Fine-tune a model from a LLaMA-Factory style config',
  usage: '<config.yaml> [key=value ...]',
  details: [
    'Reads LLaMA-Factory training YAMLs unchanged (crucible train examples/train_lora/qwen3_lora_sft.yaml).',
    'Overrides: key=value or --key value (learning_rate=1.0e-4 --num_train_epochs 1).',
    'Ctrl-C stops after the current step and saves a checkpoint; training resumes from it when rerun',
    '(unless overwrite_output_dir: true).',
  ],
  flags: [{ name: 'keys', help: 'list the config keys training reads, with defaults' }],
  config: true,
  async run(args, io) {
    if (args.flags.keys) {
      io.stdout(keysHelp('train'));
      return 0;
    }
    const config = await commandConfig(args, io, 'train');
    if (!config.do_train && config.do_predict) return predict(config, io);
    const runTraining = await loadEngine('runTraining', 'train', io);
    io.stderr(`train: ${describeRun(config)}\n`);
    const stop = interruptSignal(io, () => io.stderr('\nstopping after this step and saving a checkpoint (Ctrl-C again to quit now)\n'));
    try {
      const result = await runTraining(config, {
        signal: stop.signal,
        onStatus: (m) => io.stderr(`${m}\n`),
        onLog: (r) => io.stdout(`${io.interactive ? `${progressBar(r.current_steps, r.total_steps)} ` : ''}${formatTrainLog(r)}\n`),
        onCheckpoint: (dir, step) => io.stderr(`saved checkpoint ${dir} (step ${step})\n`),
      });
      const loss = result.trainLoss !== undefined ? `, train loss ${result.trainLoss.toFixed(4)}` : '';
      const evalLoss = result.evalLoss !== undefined ? `, eval loss ${result.evalLoss.toFixed(4)}` : '';
      io.stderr(
        result.interrupted
          ? `interrupted at step ${result.globalStep}/${result.totalSteps}; ${result.checkpoint ? `checkpoint ${result.checkpoint}: rerun the same command to resume` : 'no step finished, nothing to resume'}\n`
          : `${result.stopped ? `${result.stopped}\n` : ''}done: ${result.globalStep} steps${loss}${evalLoss}; saved ${result.bestCheckpoint ? `the best model (${result.bestCheckpoint}) ` : ''}to ${result.outputDir}\n`,
      );
      if (result.interrupted) return 130;
    } finally {
      stop.dispose();
    }
    return config.do_predict ? predict(justTrained(config), io) : 0;
  },
};

/**
 * As LLaMA-Factory, predict with the model just trained: the base model with the adapter in
 * output_dir after LoRA, the whole model written to output_dir after full or freeze training.
 */
function justTrained(config: CrucibleConfig): CrucibleConfig {
  if (config.finetuning_type === 'lora') return { ...config, adapter_name_or_path: [config.output_dir] };
  return { ...config, model_name_or_path: config.output_dir, adapter_name_or_path: null };
}

/** do_predict: generated_predictions.jsonl and predict_results.json in output_dir, the metrics printed. */
async function predict(config: CrucibleConfig, io: CliIO): Promise<number> {
  const runPredictJob = await loadEngine('runPredictJob', 'train', io);
  io.stderr(`predict: ${config.model_name_or_path}${config.adapter_name_or_path ? ` + ${config.adapter_name_or_path.join(', ')}` : ''} on ${(config.eval_dataset ?? ['the val_size split']).join(', ')} -> ${config.output_dir}\n`);
  const stop = interruptSignal(io);
  try {
    const result = await runPredictJob(config, { signal: stop.signal, onStatus: (m) => io.stderr(`${m}\n`) });
    for (const [k, v] of Object.entries(result.metrics)) io.stdout(`${k} = ${v}\n`);
    return 0;
  } finally {
    stop.dispose();
  }
}
