// An independent f64 CPU reference of Granite 4.0 H (GraniteMoeHybridForCausalLM, dense: no
// experts), logits with PEFT LoRA on any linear module, written from transformers'
// models/granitemoehybrid/modeling_granitemoehybrid.py and configuration_granitemoehybrid.py, reading
// the HF config.json itself: nothing here comes from src/.
//
//   embeddings * embedding_multiplier; per layer (layer_types "mamba" / "attention"):
//     h = x + residual_multiplier * mixer(RMSNorm(x));  x' = h + residual_multiplier * shared_mlp(RMSNorm(h))
//   mamba (torch_forward without cache): in_proj -> gate z | x, B, C | dt (clamped to time_step_limit after
//     softplus); causal conv1d (+ bias) + SiLU
//     over x, B, C; the chunked SSD of tests/reference/ssd.ts (chunks of mamba_chunk_size, as
//     torch_forward); RMSNorm(y * silu(z)) * w over the whole width; out_proj.
//   attention: q/k/v/o_proj, GQA, scaling attention_multiplier, rope only when
//     position_embedding_type is "rope" (default theta rope), causal.
//   shared_mlp: input_linear -> chunk(2): silu(first) * second -> output_linear.
//   logits = lm_head(RMSNorm(x)) / logits_scaling (lm_head tied to the embeddings when tie_word_embeddings).
// LoRA (PEFT Linear.forward, dropout 0): y = x Wᵀ + b + scaling · (x Aᵀ) Bᵀ.

import { conv1dRef } from './conv1d';
import { ssdChunkedRef } from './ssd';
import type { RefLora, RefWeights } from './transformer';

type Json = Record<string, unknown>;

interface Granite {
  V: number; D: number; L: number; I: number; Hq: number; Hkv: number; Dh: number; eps: number;
  types: string[];
  embedMult: number; attnMult: number; residMult: number; logitsScale: number; rope: boolean; theta: number; tied: boolean;
  mamba: { H: number; P: number; G: number; N: number; K: number; chunk: number; convBias: boolean; projBias: boolean; dtLimit: [number, number] };
}

function arch(c: Json): Granite {
  const n = (k: string, d?: number): number => {
    const v = c[k] ?? d;
    if (typeof v !== 'number') throw new Error(`reference: config ${k} missing`);
    return v;
  };
  const D = n('hidden_size'), Hq = n('num_attention_heads'), L = n('num_hidden_layers');
  const H = n('mamba_n_heads', 128), W = n('mamba_expand', 2) * D;
  const dHead = c.mamba_d_head === undefined || c.mamba_d_head === 'auto' ? W / H : n('mamba_d_head');
  return {
    V: n('vocab_size'), D, L, I: n('shared_intermediate_size', 1024), Hq, Hkv: n('num_key_value_heads', Hq), Dh: D / Hq, eps: n('rms_norm_eps', 1e-6),
    types: (c.layer_types as string[] | undefined) ?? Array.from({ length: L }, () => 'mamba'),
    embedMult: n('embedding_multiplier', 1), attnMult: n('attention_multiplier', 1), residMult: n('residual_multiplier', 1),
    logitsScale: n('logits_scaling', 1), rope: c.position_embedding_type === 'rope', theta: n('rope_theta', 10000), tied: c.tie_word_embeddings === true,
    mamba: {
      H, P: dHead, G: n('mamba_n_groups', 1), N: n('mamba_d_state', 256), K: n('mamba_d_conv', 4), chunk: n('mamba_chunk_size', 256),
      convBias: c.mamba_conv_bias !== false, projBias: c.mamba_proj_bias === true,
      dtLimit: (c.time_step_limit as [number, number] | undefined) ?? [0, Infinity],
    },
  };
}

/** Every parameter GraniteMoeHybridForCausalLM creates (dense), with its shape. */
export function refGraniteParameters(c: Json): [string, number[]][] {
  const a = arch(c);
  const { H, P, G, N, K, convBias, projBias } = a.mamba;
  const W = H * P, C = W + 2 * G * N;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [a.V, a.D]]];
  for (let l = 0; l < a.L; l++) {
    const p = `model.layers.${l}`;
    out.push([`${p}.input_layernorm.weight`, [a.D]], [`${p}.post_attention_layernorm.weight`, [a.D]]);
    if (a.types[l] === 'mamba') {
      out.push([`${p}.mamba.in_proj.weight`, [W + C + H, a.D]], [`${p}.mamba.conv1d.weight`, [C, 1, K]]);
      if (projBias) out.push([`${p}.mamba.in_proj.bias`, [W + C + H]]);
      if (convBias) out.push([`${p}.mamba.conv1d.bias`, [C]]);
      out.push([`${p}.mamba.dt_bias`, [H]], [`${p}.mamba.A_log`, [H]], [`${p}.mamba.D`, [H]], [`${p}.mamba.norm.weight`, [W]],
        [`${p}.mamba.out_proj.weight`, [a.D, W]]);
      if (projBias) out.push([`${p}.mamba.out_proj.bias`, [a.D]]);
    } else {
      out.push([`${p}.self_attn.q_proj.weight`, [a.Hq * a.Dh, a.D]], [`${p}.self_attn.k_proj.weight`, [a.Hkv * a.Dh, a.D]],
        [`${p}.self_attn.v_proj.weight`, [a.Hkv * a.Dh, a.D]], [`${p}.self_attn.o_proj.weight`, [a.D, a.Hq * a.Dh]]);
    }
    out.push([`${p}.shared_mlp.input_linear.weight`, [2 * a.I, a.D]], [`${p}.shared_mlp.output_linear.weight`, [a.D, a.I]]);
  }
  out.push(['model.norm.weight', [a.D]]);
  if (!a.tied) out.push(['lm_head.weight', [a.V, a.D]]);
  return out;
}

/** The linear module kinds (PEFT target names) of the model. */
export function refGraniteLinearModules(c: Json): string[] {
  const kinds = new Set(refGraniteParameters(c).filter(([n, s]) => n.endsWith('.weight') && s.length === 2 && n.includes('layers.')).map(([n]) => n.split('.').at(-2)!));
  return [...kinds].sort();
}

function get(w: RefWeights, name: string): ArrayLike<number> {
  const t = w.get(name);
  if (!t) throw new Error(`reference: weight ${name} missing`);
  return t;
}

function linear(w: RefWeights, lora: RefLora | undefined, module: string, x: Float64Array, T: number, K: number, N: number): Float64Array {
  const Wt = get(w, `${module}.weight`), b = w.get(`${module}.bias`);
  const y = new Float64Array(T * N);
  for (let t = 0; t < T; t++)
    for (let n = 0; n < N; n++) {
      let s = b ? b[n]! : 0;
      for (let k = 0; k < K; k++) s += x[t * K + k]! * Wt[n * K + k]!;
      y[t * N + n] = s;
    }
  const l = lora?.get(module);
  if (l) {
    for (let t = 0; t < T; t++) {
      const xa = Array.from({ length: l.r }, (_, j) => {
        let s = 0;
        for (let k = 0; k < K; k++) s += x[t * K + k]! * l.A[j * K + k]!;
        return s;
      });
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let j = 0; j < l.r; j++) s += xa[j]! * l.B[n * l.r + j]!;
        y[t * N + n]! += l.scaling * s;
      }
    }
  }
  return y;
}

function rmsNorm(x: Float64Array, rows: number, D: number, w: ArrayLike<number>, eps: number): Float64Array {
  const y = new Float64Array(rows * D);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let d = 0; d < D; d++) ss += x[r * D + d]! ** 2;
    const inv = 1 / Math.sqrt(ss / D + eps);
    for (let d = 0; d < D; d++) y[r * D + d] = w[d]! * x[r * D + d]! * inv;
  }
  return y;
}

const silu = (v: number) => v / (1 + Math.exp(-v));

function cols(x: Float64Array, T: number, width: number, from: number, n: number): Float64Array {
  const o = new Float64Array(T * n);
  for (let t = 0; t < T; t++) for (let j = 0; j < n; j++) o[t * n + j] = x[t * width + from + j]!;
  return o;
}

function mambaMixer(a: Granite, w: RefWeights, lora: RefLora | undefined, m: string, x: Float64Array, B: number, S: number): Float64Array {
  const { H, P, G, N, K, chunk, dtLimit } = a.mamba;
  const T = B * S, W = H * P, C = W + 2 * G * N, F = W + C + H;
  const proj = linear(w, lora, `${m}.in_proj`, x, T, a.D, F);
  const z = cols(proj, T, F, 0, W), dt = cols(proj, T, F, W + C, H);
  const bias = w.get(`${m}.conv1d.bias`);
  const xbc = conv1dRef({ B, T: S, C, K, ...(bias ? { bias } : {}) }, cols(proj, T, F, W, C), get(w, `${m}.conv1d.weight`)).y;
  const y = ssdChunkedRef({ B, T: S, H, G, N, P, dtMin: dtLimit[0], dtMax: dtLimit[1] }, {
    x: cols(xbc, T, C, 0, W), Bm: cols(xbc, T, C, W, G * N), Cm: cols(xbc, T, C, W + G * N, G * N), dt,
    dtBias: get(w, `${m}.dt_bias`), aLog: get(w, `${m}.A_log`), D: get(w, `${m}.D`),
  }, chunk).y;
  for (let i = 0; i < T * W; i++) y[i] = y[i]! * silu(z[i]!);
  return linear(w, lora, `${m}.out_proj`, rmsNorm(y, T, W, get(w, `${m}.norm.weight`), a.eps), T, W, a.D);
}

function attentionMixer(a: Granite, w: RefWeights, lora: RefLora | undefined, p: string, x: Float64Array, B: number, S: number): Float64Array {
  const { Hq, Hkv, Dh, D } = a;
  const T = B * S;
  const q = linear(w, lora, `${p}.q_proj`, x, T, D, Hq * Dh), k = linear(w, lora, `${p}.k_proj`, x, T, D, Hkv * Dh);
  const v = linear(w, lora, `${p}.v_proj`, x, T, D, Hkv * Dh);
  if (a.rope) {
    const half = Dh / 2;
    for (const [t4, heads] of [[q, Hq], [k, Hkv]] as const)
      for (let t = 0; t < T; t++)
        for (let h = 0; h < heads; h++)
          for (let i = 0; i < half; i++) {
            const ang = (t % S) * a.theta ** (-(2 * i) / Dh), o = (t * heads + h) * Dh;
            const x1 = t4[o + i]!, x2 = t4[o + i + half]!;
            t4[o + i] = x1 * Math.cos(ang) - x2 * Math.sin(ang);
            t4[o + i + half] = x2 * Math.cos(ang) + x1 * Math.sin(ang);
          }
  }
  const out = new Float64Array(T * Hq * Dh);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / (Hq / Hkv));
      for (let i = 0; i < S; i++) {
        const qo = ((b * S + i) * Hq + h) * Dh;
        const s = Array.from({ length: i + 1 }, (_, j) => {
          let d = 0;
          for (let e = 0; e < Dh; e++) d += q[qo + e]! * k[((b * S + j) * Hkv + kh) * Dh + e]!;
          return d * a.attnMult;
        });
        const max = Math.max(...s);
        const p = s.map((v) => Math.exp(v - max));
        const sum = p.reduce((u, v) => u + v, 0);
        for (let j = 0; j <= i; j++) for (let e = 0; e < Dh; e++) out[qo + e]! += (p[j]! / sum) * v[((b * S + j) * Hkv + kh) * Dh + e]!;
      }
    }
  return linear(w, lora, `${p}.o_proj`, out, T, Hq * Dh, D);
}

/** Logits [B*S, V] for B rows of S token ids. */
export function refGraniteLogits(c: Json, w: RefWeights, ids: readonly (readonly number[])[], lora?: RefLora): Float64Array {
  const a = arch(c);
  const B = ids.length, S = ids[0]!.length, T = B * S, { D, I, V } = a;
  const E = get(w, 'model.embed_tokens.weight');
  let x = new Float64Array(T * D);
  ids.flat().forEach((id, t) => {
    for (let d = 0; d < D; d++) x[t * D + d] = E[id * D + d]! * a.embedMult;
  });
  for (let l = 0; l < a.L; l++) {
    const p = `model.layers.${l}`;
    const h1 = rmsNorm(x, T, D, get(w, `${p}.input_layernorm.weight`), a.eps);
    const mixed = a.types[l] === 'mamba' ? mambaMixer(a, w, lora, `${p}.mamba`, h1, B, S) : attentionMixer(a, w, lora, `${p}.self_attn`, h1, B, S);
    const h = x.map((v, i) => v + mixed[i]! * a.residMult);
    const h2 = rmsNorm(h, T, D, get(w, `${p}.post_attention_layernorm.weight`), a.eps);
    const gu = linear(w, lora, `${p}.shared_mlp.input_linear`, h2, T, D, 2 * I);
    const act = new Float64Array(T * I);
    for (let t = 0; t < T; t++) for (let j = 0; j < I; j++) act[t * I + j] = silu(gu[t * 2 * I + j]!) * gu[t * 2 * I + I + j]!;
    const mlp = linear(w, lora, `${p}.shared_mlp.output_linear`, act, T, I, D);
    x = h.map((v, i) => v + mlp[i]! * a.residMult);
  }
  const f = rmsNorm(x, T, D, get(w, 'model.norm.weight'), a.eps);
  const head = a.tied ? E : get(w, 'lm_head.weight');
  const logits = new Float64Array(T * V);
  for (let t = 0; t < T; t++)
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += f[t * D + d]! * head[v * D + d]!;
      logits[t * V + v] = s / a.logitsScale;
    }
  return logits;
}
