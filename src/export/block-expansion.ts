// LLaMA Pro block expansion (LLaMA-Factory's scripts/llama_pro.py): a model of L layers becomes one
// of L + E. After every L/E original layers comes a copy of the last of them whose o_proj (out_proj
// on Qwen3.5's Gated DeltaNet, Granite 4's Mamba and LFM2's short-convolution layers, and LFM2's
// attention) and down_proj (Granite 4's shared_mlp.output_linear, LFM2's w2) are zero, so the
// expanded model computes exactly what the original does (layer_types, where listed, follows the
// copies); training with use_llama_pro then updates only the copies (finetuning_type freeze,
// freeze_trainable_layers E).

import type { ModelFiles } from '../model/weights';
import { Checkpoint } from '../model/weights';
import { parseJsonFile } from '../data/json-file';
import { writeSharded, type TensorSource, type WriteFile } from './shards';

export interface ExpansionResult {
  /** Layers before and after. */
  from: number;
  to: number;
  /** Files written (weights, index, config.json). */
  files: string[];
}

/** The layer index in a tensor name ("model.layers.7.mlp..." → 7), null for embeddings, norms, head. */
const layerOf = (name: string): number | null => {
  const m = /\.layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : null;
};

/** Which original layer each layer of the expanded model comes from, and whether it is a zeroed copy. */
export function expandedLayers(layers: number, expand: number): { from: number; copy: boolean }[] {
  if (!Number.isInteger(expand) || expand < 1) throw new Error(`num_expand must be a positive integer, got ${expand}`);
  if (layers % expand !== 0) throw new Error(`the model's ${layers} layers are not divisible by num_expand ${expand}`);
  const split = layers / expand;
  const out: { from: number; copy: boolean }[] = [];
  for (let i = 0; i < layers; i++) {
    out.push({ from: i, copy: false });
    if ((i + 1) % split === 0) out.push({ from: i, copy: true });
  }
  return out;
}

/**
 * Writes the expanded checkpoint (weights in the base's widest float type, sharded at maxBytes)
 * and its config.json through `write`; the caller copies tokenizer files.
 */
export async function expandBlocks(base: ModelFiles, expand: number, write: WriteFile, opts: { maxBytes: number }): Promise<ExpansionResult> {
  const configText = await base.readText('config.json');
  const config = parseJsonFile<Record<string, unknown>>(configText, `${base.name}/config.json`);
  const layers = config.num_hidden_layers;
  if (typeof layers !== 'number' || !Number.isInteger(layers) || layers < 1) throw new Error(`${base.name}/config.json: num_hidden_layers is missing or not a positive integer`);
  if (config.quantization_config) throw new Error(`${base.name} is a pre-quantized checkpoint: expand the unquantized model`);
  const plan = expandedLayers(layers, expand);
  const ckpt = await Checkpoint.open(base);
  const names = ckpt.names();
  const byLayer = new Map<number, string[]>();
  const outside: string[] = [];
  for (const n of names) {
    const l = layerOf(n);
    if (l === null) outside.push(n);
    else byLayer.set(l, [...(byLayer.get(l) ?? []), n]);
  }
  const sources: TensorSource[] = [];
  plan.forEach(({ from, copy }, to) => {
    for (const name of byLayer.get(from) ?? []) {
      const zero = copy && /\.(o_proj|out_proj|down_proj|output_linear|w2)\./.test(name);
      const shape = ckpt.info(name).shape;
      sources.push({
        name: name.replace(`.layers.${from}.`, `.layers.${to}.`),
        shape,
        read: async () => (zero ? new Float32Array(shape.reduce((a, b) => a * b, 1)) : ckpt.read(name)),
      });
    }
  });
  for (const name of outside) sources.push({ name, shape: ckpt.info(name).shape, read: () => ckpt.read(name) });
  const dtypes = new Set(names.map((n) => ckpt.info(n).dtype));
  const dtype = dtypes.has('F32') ? 'F32' : dtypes.has('BF16') ? 'BF16' : 'F16';
  const files = await writeSharded(sources, write, { maxBytes: opts.maxBytes, dtype });
  const types = Array.isArray(config.layer_types) && config.layer_types.length === layers ? { layer_types: plan.map((p) => (config.layer_types as unknown[])[p.from]) } : {};
  await write('config.json', `${JSON.stringify({ ...config, num_hidden_layers: plan.length, ...types }, null, 2)}\n`);
  return { from: layers, to: plan.length, files: [...files, 'config.json'] };
}
