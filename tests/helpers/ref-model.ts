// Shared pieces of the whole-model tests against the f64 reference (tests/reference/*): a batch with
// shifted labels, the engine's full logits, and a random PEFT LoRA adapter written as PEFT saves it.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Gpu } from '../../src/gpu/runtime';
import { fullLogits, shiftLabels, Workspace, type Batch } from '../../src/model/forward';
import type { Model } from '../../src/model/model';
import { encodeSafetensors } from '../../src/model/safetensors';
import type { RefLora } from '../reference/transformer';
import type { Rng } from './check';

/** Rows of equal length with 1-D positions; `valid` counts the labelled tokens after the shift. */
export function batchOf(ids: number[][], labels: number[][]): Batch & { valid: number } {
  const B = ids.length, S = ids[0]!.length;
  const shifted = shiftLabels(Int32Array.from(labels.flat()), B, S);
  return {
    B, S, ids: Int32Array.from(ids.flat()), labels: shifted,
    positions: Int32Array.from({ length: B * S }, (_, i) => i % S), valid: shifted.filter((l) => l !== -100).length,
  };
}

/** The engine's logits for every token of the batch, [B*S, vocab]. */
export async function engineLogits(gpu: Gpu, model: Model, batch: Batch, recompute = false): Promise<Float32Array> {
  const ws = new Workspace(model, batch.B, batch.S, recompute);
  ws.load(batch);
  const out = gpu.tensor([batch.B * batch.S, model.spec.vocab]);
  fullLogits(ws, out);
  const z = await gpu.readF32(out);
  gpu.release(out);
  ws.release();
  return z;
}

/**
 * A PEFT LoRA adapter on every `kinds` module among the reference's parameters (those under
 * `under`, if given), B ~ N(0, 0.05²) so it shows, written as PEFT saves it; also as the
 * reference's RefLora.
 */
export function writeRefAdapter(
  parameters: Iterable<readonly [string, readonly number[]]>, kinds: string[], rng: Rng,
  opts: { rank: number; alpha: number; under?: string },
): { dir: string; lora: RefLora } {
  const { rank, alpha } = opts;
  const dir = mkdtempSync(join(tmpdir(), 'ref-adapter-'));
  const lora: RefLora = new Map();
  const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const [n, shape] of parameters) {
    const module = n.replace(/\.weight$/, '');
    if ((opts.under && !n.startsWith(opts.under)) || !n.endsWith('.weight') || !kinds.includes(module.split('.').pop()!)) continue;
    const [N, K] = shape as [number, number];
    const A = rng.uniform(rank * K, -1 / Math.sqrt(K), 1 / Math.sqrt(K)), Bm = rng.randn(N * rank, 0.05);
    lora.set(module, { A, B: Bm, r: rank, scaling: alpha / rank });
    tensors[`base_model.model.${module}.lora_A.weight`] = { dtype: 'F32', shape: [rank, K], data: A };
    tensors[`base_model.model.${module}.lora_B.weight`] = { dtype: 'F32', shape: [N, rank], data: Bm };
  }
  writeFileSync(join(dir, 'adapter_model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: null, r: rank, lora_alpha: alpha, lora_dropout: 0.0,
    target_modules: kinds, bias: 'none', use_rslora: false, use_dora: false, init_lora_weights: true, inference_mode: true,
  }, null, 2));
  return { dir, lora };
}
