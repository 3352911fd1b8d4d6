// A checkpoint read back into a run (resume): its files must hold exactly the run's trainable
// tensors with the run's shapes. Checked before anything is written to the GPU, so a changed
// setting (lora_rank, lora_target, ...) is named instead of failing as a WebGPU write range error.

import { DataError } from '../data/errors';
import type { SafetensorsFile } from './safetensors';

export interface ExpectedTensor {
  name: string;
  shape: readonly number[];
}

const OPTIMIZER_MOMENT = /\.(exp_avg|exp_avg_sq)$/;
const RESTART = 'resume with the settings the checkpoint was saved with, or start afresh with overwrite_output_dir: true (or another output_dir)';

/** Refuses `file` unless it holds exactly `expected`, naming the first difference and the setting that likely changed. */
export function checkCheckpointTensors(file: SafetensorsFile, expected: readonly ExpectedTensor[]): void {
  const at = { file: file.source.name };
  for (const { name, shape } of expected) {
    const info = file.tensors.get(name);
    if (!info) throw new DataError(`has no tensor ${name}, which this run trains: ${changedSetting(name)}; ${RESTART}`, at);
    if (!sameShape(info.shape, shape)) {
      throw new DataError(`tensor ${name} is [${info.shape.join(', ')}] in the checkpoint, this run expects [${shape.join(', ')}]: ${changedShape(name, info.shape, shape)}; ${RESTART}`, at);
    }
  }
  const names = new Set(expected.map((t) => t.name));
  const other = [...file.tensors.keys()].find((n) => !names.has(n));
  if (other !== undefined) throw new DataError(`holds tensor ${other}, which this run does not train: ${changedSetting(other)}; ${RESTART}`, at);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** LoRA's A is [r, in], B is [out, r] (PEFT): a difference on the r axis alone is lora_rank. */
function changedShape(name: string, inFile: readonly number[], expected: readonly number[]): string {
  const base = name.replace(OPTIMIZER_MOMENT, '');
  const rankAxis = base.endsWith('.lora_A.weight') ? 0 : base.endsWith('.lora_B.weight') ? 1 : -1;
  if (rankAxis >= 0 && inFile.length === 2 && expected.length === 2 && inFile[1 - rankAxis] === expected[1 - rankAxis]) {
    return `lora_rank changed since the checkpoint was saved (it has rank ${inFile[rankAxis]}, this run ${expected[rankAxis]})`;
  }
  return 'the model differs from the one the checkpoint was trained on (model_name_or_path)';
}

function changedSetting(name: string): string {
  const base = name.replace(OPTIMIZER_MOMENT, '');
  if (base.endsWith('.lora_magnitude_vector')) return 'use_dora changed since the checkpoint was saved';
  if (/\.lora_[AB]\.weight$/.test(base)) return 'lora_target changed since the checkpoint was saved';
  return 'finetuning_type or freeze_trainable_layers / freeze_trainable_modules / freeze_extra_modules changed since the checkpoint was saved';
}
