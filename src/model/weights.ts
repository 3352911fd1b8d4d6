// Loading a Hugging Face checkpoint onto the GPU, tensor by tensor: the host holds one tensor at a
// time (converted to f32 or f16, or quantized on the way), never the whole model.

import { parseJsonFile } from '../data/json-file';
import { parseHfConfig } from './hf-config';
import type { Gpu } from '../gpu/runtime';
import type { DType, Tensor } from '../gpu/tensor';
import { byteSize } from '../gpu/tensor';
import { dequantizeRows, int32s, isPackedPart, packedLinears, prequantizedScheme, type PackedData, type PackedLinear, type PrequantizedScheme } from './prequantized';
import { floatToHalf, openSafetensors, readBytes, readF32, type ByteSource, type SafetensorsFile, type TensorInfo } from './safetensors';
import type { ModelSpec } from './spec';
import type { Weight } from '../kernels/matmul';
import { quantize } from '../kernels/quant';

/** Where the checkpoint's files come from: a folder on disk, a browser store, a test fixture. */
export interface ModelFiles {
  /** Human-readable origin for messages. */
  name: string;
  readText(path: string): Promise<string>;
  open(path: string): Promise<ByteSource>;
  exists(path: string): Promise<boolean>;
}

/**
 * All tensors of a checkpoint, single-file or sharded (model.safetensors.index.json). A GPTQ/AWQ
 * checkpoint's packed layers show as plain `<layer>.weight` tensors, dequantized on read
 * (prequantized.ts); their packed parts are hidden.
 */
export class Checkpoint {
  /** The packed layer whose parts were read last: a matrix is read in consecutive row slices. */
  private lastPacked: { name: string; data: PackedData } | null = null;

  private constructor(
    private readonly index: Map<string, SafetensorsFile>,
    readonly origin: string,
    /** The checkpoint's pre-quantization (config.json quantization_config), null for plain weights. */
    readonly prequantized: PrequantizedScheme | null,
    private readonly packed: Map<string, PackedLinear>,
  ) {}

  static async open(files: ModelFiles): Promise<Checkpoint> {
    const index = new Map<string, SafetensorsFile>();
    if (await files.exists('model.safetensors.index.json')) {
      const json = parseJsonFile<{ weight_map: Record<string, string> }>(await files.readText('model.safetensors.index.json'), `${files.name}/model.safetensors.index.json`);
      const shards = new Map<string, SafetensorsFile>();
      for (const [name, shard] of Object.entries(json.weight_map)) {
        let f = shards.get(shard);
        if (!f) {
          f = await openSafetensors(await files.open(shard));
          shards.set(shard, f);
        }
        if (!f.tensors.has(name)) throw new Error(`${files.name}/${shard}: tensor ${name} listed in model.safetensors.index.json is missing`);
        index.set(name, f);
      }
    } else if (await files.exists('model.safetensors')) {
      const f = await openSafetensors(await files.open('model.safetensors'));
      for (const name of f.tensors.keys()) index.set(name, f);
    } else {
      throw new Error(`${files.name}: no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are supported)`);
    }
    const where = `${files.name}/config.json`;
    const config = await files.exists('config.json') ? parseHfConfig(await files.readText('config.json'), where) : null;
    const scheme = config ? prequantizedScheme(config, where) : null;
    if (config && VLM_LEGACY_LAYOUT.has(((config.architectures as string[] | undefined) ?? [])[0] ?? '')) renameLegacyVlm(index);
    const infos = new Map([...index].map(([name, f]) => [name, f.tensors.get(name)!]));
    const packed = scheme ? packedLinears(scheme, infos, files.name) : new Map<string, PackedLinear>();
    return new Checkpoint(index, files.name, scheme, packed);
  }

  has(name: string): boolean {
    return this.packed.has(name) || (this.index.has(name) && !(this.prequantized && isPackedPart(name)));
  }

  names(): string[] {
    return [...[...this.index.keys()].filter((n) => this.has(n)), ...this.packed.keys()];
  }

  info(name: string): TensorInfo {
    const p = this.packed.get(name);
    // a packed layer has no bytes of its own in the file: begin/end stay 0
    if (p) return { name, dtype: p.scales.dtype, shape: [p.N, p.K], begin: 0, end: 0 };
    const f = this.has(name) ? this.index.get(name) : undefined;
    if (!f) throw new Error(`${this.origin}: tensor ${name} is missing from the checkpoint`);
    return f.tensors.get(name)!;
  }

  async read(name: string, expectShape?: readonly number[], rows?: [number, number]): Promise<Float32Array> {
    const info = this.info(name);
    if (expectShape && (info.shape.length !== expectShape.length || info.shape.some((d, i) => d !== expectShape[i]))) {
      throw new Error(`${this.origin}: tensor ${name} has shape [${info.shape}], expected [${expectShape}]`);
    }
    const p = this.packed.get(name);
    if (!p) return readF32(this.index.get(name)!, name, rows);
    const [r0, r1] = rows ?? [0, p.N];
    return dequantizeRows(this.prequantized!, p, await this.packedData(p), r0, r1);
  }

  private async packedData(p: PackedLinear): Promise<PackedData> {
    if (this.lastPacked?.name === p.name) return this.lastPacked.data;
    const raw = (t: TensorInfo) => readBytes(this.index.get(t.name)!, t.name);
    const data: PackedData = {
      qweight: int32s(await raw(p.qweight)),
      qzeros: int32s(await raw(p.qzeros)),
      scales: await readF32(this.index.get(p.scales.name)!, p.scales.name),
      gIdx: p.gIdx ? int32s(await raw(p.gIdx)) : null,
    };
    this.lastPacked = { name: p.name, data };
    return data;
  }
}

/** Vision-language classes whose checkpoints before transformers 4.52 kept the text model at model.* and the tower at visual.*. */
const VLM_LEGACY_LAYOUT = new Set(['Qwen2VLForConditionalGeneration']);

/** transformers' checkpoint conversion: visual.* -> model.visual.*, model.* -> model.language_model.* (lm_head stays). */
function renameLegacyVlm(index: Map<string, SafetensorsFile>): void {
  if (![...index.keys()].some((n) => n.startsWith('visual.'))) return;
  for (const [name, f] of [...index]) {
    const renamed = name.startsWith('visual.') ? `model.${name}` : /^model\.(?!language_model\.|visual\.)/.test(name) ? name.replace(/^model\./, 'model.language_model.') : name;
    if (renamed === name) continue;
    index.delete(name);
    index.set(renamed, f);
    const info = f.tensors.get(name)!;
    f.tensors.delete(name);
    f.tensors.set(renamed, { ...info, name: renamed });
  }
}

export type WeightFormat = 'f32' | 'f16' | 'q4' | 'q8';

/** Upload one tensor, as f32 (norms, biases), or in the base-weight format for matrices. */
export async function uploadTensor(gpu: Gpu, ckpt: Checkpoint, name: string, shape: readonly number[]): Promise<Tensor> {
  return gpu.upload(await ckpt.read(name, shape), shape, 'f32', name);
}

/** Bytes of a matrix read from the checkpoint at once: a part can be a whole 1 GiB binding. */
const HOST_SLICE_BYTES = 64 << 20;

/**
 * Upload a matrix [N, K] in the chosen format, split in row parts when one binding cannot hold it.
 * Each part is read and written in slices of rows, so the host holds at most HOST_SLICE_BYTES of
 * it. `rows` uploads only that row range of the stored matrix (one projection of a fused
 * qkv_proj / gate_up_proj).
 */
export async function uploadMatrix(
  gpu: Gpu, ckpt: Checkpoint, name: string, shape: readonly [number, number], format: WeightFormat, rows?: readonly [number, number],
): Promise<Weight> {
  ckpt.info(name); // existence check with a clear message
  const [first, end] = rows ?? [0, shape[0]];
  if (!(first >= 0 && first < end && end <= shape[0])) throw new Error(`${ckpt.origin}: rows [${first}, ${end}) of ${name} are outside its ${shape[0]} rows`);
  const N = end - first, K = shape[1];
  const dtype: DType = format;
  const limit = gpu.caps.limits.maxStorageBufferBindingSize;
  const rowBytes = byteSize([1, K], dtype === 'q4' || dtype === 'q8' ? 'f32' : dtype);
  const rowsPerPart = Math.max(1, Math.min(N, Math.floor(limit / rowBytes)));
  let rowsPerSlice = Math.max(1, Math.floor(HOST_SLICE_BYTES / rowBytes));
  // queue writes start at multiples of 4 bytes: an even number of f16 rows when K is odd
  if (dtype === 'f16' && K % 2) rowsPerSlice = Math.max(2, rowsPerSlice - (rowsPerSlice % 2));
  const parts: Tensor[] = [];
  for (let r0 = 0; r0 < N; r0 += rowsPerPart) {
    const r1 = Math.min(N, r0 + rowsPerPart);
    const host = dtype === 'f16' ? 'f16' : 'f32';
    const t = gpu.tensor([r1 - r0, K], host, name);
    for (let s0 = r0; s0 < r1; s0 += rowsPerSlice) {
      const s1 = Math.min(r1, s0 + rowsPerSlice);
      const data = await ckpt.read(name, shape, [first + s0, first + s1]);
      gpu.write(t, host === 'f16' ? toHalfBits(data) : data, (s0 - r0) * rowBytes);
    }
    if (dtype === 'f32' || dtype === 'f16') parts.push(t);
    else {
      parts.push(quantize(gpu, t, dtype, name));
      await gpu.sync();
      gpu.release(t);
    }
  }
  return parts.length === 1 ? parts[0]! : parts;
}

function toHalfBits(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = floatToHalf(x[i]!);
  return out;
}

/** The HF names of a layer's tensors, by architecture (LFM2 names its norms, attention output and MLP its own way). */
export function layerNames(spec: ModelSpec, i: number) {
  const p = `${spec.textPrefix}.layers.${i}`;
  const attention = spec.layers[i]!.mixer === 'attention';
  const lfm2 = spec.arch === 'lfm2';
  const post = spec.sandwichNorms || spec.postNormsOnly;
  const mlp = lfm2 ? `${p}.feed_forward` : `${p}.mlp`;
  return {
    // (OLMo 2 has neither pre-norm: null)
    attnNorm: spec.postNormsOnly ? null : lfm2 ? `${p}.operator_norm.weight` : `${p}.input_layernorm.weight`,
    attnPostNorm: post ? `${p}.post_attention_layernorm.weight` : null,
    mlpNorm: spec.postNormsOnly ? null : lfm2 ? `${p}.ffn_norm.weight` : spec.sandwichNorms ? `${p}.pre_feedforward_layernorm.weight` : `${p}.post_attention_layernorm.weight`,
    mlpPostNorm: post ? `${p}.post_feedforward_layernorm.weight` : null,
    qNorm: spec.qkNorm && attention ? `${p}.self_attn.${lfm2 ? 'q_layernorm' : 'q_norm'}.weight` : null,
    kNorm: spec.qkNorm && attention ? `${p}.self_attn.${lfm2 ? 'k_layernorm' : 'k_norm'}.weight` : null,
    /** Modules: the attention output, the MLP's gate, up and down. */
    attnOut: `${p}.self_attn.${lfm2 ? 'out_proj' : 'o_proj'}`,
    gate: lfm2 ? `${mlp}.w1` : `${mlp}.gate_proj`,
    up: lfm2 ? `${mlp}.w3` : `${mlp}.up_proj`,
    down: lfm2 ? `${mlp}.w2` : `${mlp}.down_proj`,
    prefix: p,
  };
}

/** The final norm's HF name (LFM2: embedding_norm). */
export const finalNormName = (spec: ModelSpec): string => `${spec.textPrefix}.${spec.arch === 'lfm2' ? 'embedding_norm' : 'norm'}.weight`;
