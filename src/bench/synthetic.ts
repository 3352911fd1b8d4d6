// A random-initialised checkpoint of any config, served as ModelFiles without ever existing as a
// file: the safetensors header is built from the config, and tensor bytes are generated on
// demand for each range read (normal * 0.02 for matrices, 1 for norms, as HF initialises).

import type { ByteSource } from '../model/safetensors';
import { specFromConfig } from '../model/spec';
import { finalNormName, layerNames, type ModelFiles } from '../model/weights';

export function syntheticModelFiles(config: Record<string, unknown>, name = 'synthetic', seed = 1): ModelFiles {
  const spec = specFromConfig(config, name);
  const { hidden: D, heads: Hq, kvHeads: Hkv, headDim: Dh, intermediate: I, vocab: V } = spec;
  const m = spec.textPrefix;
  const tensors: [string, number[]][] = [[`${m}.embed_tokens.weight`, [V, D]], [finalNormName(spec), [D]]];
  if (!spec.tiedEmbeddings) tensors.push(['lm_head.weight', [V, D]]);
  spec.layers.forEach((layer, i) => {
    const n = layerNames(spec, i);
    const p = n.prefix;
    for (const pre of [n.attnNorm, n.mlpNorm]) if (pre) tensors.push([pre, [D]]);
    if (spec.sharedMlp) tensors.push([`${p}.shared_mlp.input_linear.weight`, [2 * I, D]], [`${p}.shared_mlp.output_linear.weight`, [D, I]]);
    else tensors.push([`${n.gate}.weight`, [I, D]], [`${n.up}.weight`, [I, D]], [`${n.down}.weight`, [D, I]]);
    for (const post of [n.attnPostNorm, n.mlpPostNorm]) if (post) tensors.push([post, [D]]);
    if (layer.mixer === 'shortConv') {
      const c = `${p}.conv`;
      tensors.push([`${c}.in_proj.weight`, [3 * D, D]], [`${c}.out_proj.weight`, [D, D]], [`${c}.conv.weight`, [D, 1, spec.shortConv!.convKernel]]);
      return;
    }
    if (layer.mixer === 'deltaNet') {
      const d = spec.deltaNet!, K = d.keyHeads * d.keyDim, Vd = d.valueHeads * d.valueDim, la = `${p}.linear_attn`;
      tensors.push([`${la}.in_proj_qkv.weight`, [2 * K + Vd, D]], [`${la}.in_proj_z.weight`, [Vd, D]], [`${la}.in_proj_b.weight`, [d.valueHeads, D]],
        [`${la}.in_proj_a.weight`, [d.valueHeads, D]], [`${la}.conv1d.weight`, [2 * K + Vd, 1, d.convKernel]], [`${la}.dt_bias`, [d.valueHeads]],
        [`${la}.A_log`, [d.valueHeads]], [`${la}.norm.weight`, [d.valueDim]], [`${la}.out_proj.weight`, [D, Vd]]);
      return;
    }
    if (layer.mixer === 'mamba') {
      const mb = spec.mamba!, W = mb.heads * mb.headDim, C = W + 2 * mb.groups * mb.stateDim, mp = `${p}.mamba`;
      tensors.push([`${mp}.in_proj.weight`, [W + C + mb.heads, D]], [`${mp}.conv1d.weight`, [C, 1, mb.convKernel]], [`${mp}.dt_bias`, [mb.heads]],
        [`${mp}.A_log`, [mb.heads]], [`${mp}.D`, [mb.heads]], [`${mp}.norm.weight`, [W]], [`${mp}.out_proj.weight`, [D, W]]);
      if (mb.convBias) tensors.push([`${mp}.conv1d.bias`, [C]]);
      if (mb.projBias) tensors.push([`${mp}.in_proj.bias`, [W + C + mb.heads]], [`${mp}.out_proj.bias`, [D]]);
      return;
    }
    tensors.push([`${p}.self_attn.q_proj.weight`, [(spec.attnOutputGate ? 2 : 1) * Hq * Dh, D]], [`${p}.self_attn.k_proj.weight`, [Hkv * Dh, D]],
      [`${p}.self_attn.v_proj.weight`, [Hkv * Dh, D]], [`${n.attnOut}.weight`, [D, Hq * Dh]]);
    if (spec.qkvBias) for (const k of ['q', 'k', 'v']) tensors.push([`${p}.self_attn.${k}_proj.bias`, [(k === 'q' ? Hq : Hkv) * Dh]]);
    if (n.qNorm && n.kNorm) tensors.push([n.qNorm, [spec.qkNormWhole ? Hq * Dh : Dh]], [n.kNorm, [spec.qkNormWhole ? Hkv * Dh : Dh]]);
  });
  const header: Record<string, unknown> = {};
  const ranges: { begin: number; end: number; norm: boolean }[] = [];
  let offset = 0;
  for (const [n, shape] of tensors) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    header[n] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    ranges.push({ begin: offset, end: offset + bytes, norm: /norm/.test(n) });
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const dataStart = 8 + head.length;
  const size = dataStart + offset;
  const source: ByteSource = {
    name: `${name}/model.safetensors`,
    size,
    async read(off, len) {
      const out = new Uint8Array(len);
      const prefix = new Uint8Array(dataStart);
      new DataView(prefix.buffer).setBigUint64(0, BigInt(head.length), true);
      prefix.set(head, 8);
      if (off < dataStart) out.set(prefix.subarray(off, Math.min(dataStart, off + len)));
      const f = new Float32Array(out.buffer, 0, Math.floor(len / 4));
      // data reads are tensor-aligned (4-byte), so value index i of the file is (off - dataStart)/4 + i
      if (off + len > dataStart && (off - dataStart) % 4 === 0) {
        const first = Math.max(0, (dataStart - off) / 4);
        // reads stay within one tensor (the checkpoint reader asks per tensor or row range)
        const norm = ranges.find((x) => off - dataStart + first * 4 < x.end)!.norm;
        for (let i = first; i < f.length; i++) f[i] = norm ? 1 : gaussian(seed, (off - dataStart) / 4 + i) * 0.02;
      }
      return out;
    },
  };
  return {
    name,
    readText: async (p) => {
      if (p === 'config.json') return JSON.stringify(config);
      throw new Error(`${name}: synthetic model has no ${p}`);
    },
    open: async (p) => {
      if (p !== 'model.safetensors') throw new Error(`${name}: synthetic model has no ${p}`);
      return source;
    },
    exists: async (p) => p === 'config.json' || p === 'model.safetensors',
  };
}

/** A deterministic standard normal for (seed, index), cheap enough for hundreds of millions of values. */
function gaussian(seed: number, i: number): number {
  const u1 = (hash(seed, 2 * i) + 0.5) / 4294967296;
  const u2 = hash(seed, 2 * i + 1) / 4294967296;
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

function hash(seed: number, i: number): number {
  let h = (Math.imul(i, 0x9e3779b1) ^ Math.imul(seed, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}
