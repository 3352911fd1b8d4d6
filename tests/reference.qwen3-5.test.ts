// The f64 reference of Qwen3.5 text models (tests/reference/transformer.ts with the Gated DeltaNet
// pieces of tests/reference/delta-rule.ts and conv1d.ts) on a tiny synthetic checkpoint
// (tests/fixtures/synthetic/qwen3_5_text): self-consistency, until HF fixtures meet it (the engine
// is checked against it in tests/model.qwen3-5.test.ts).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeRng, relErr, type Rng } from './helpers/check';
import { refArch, refLinearModules, refLogits, refParameters, type RefWeights } from './reference/transformer';

type Json = Record<string, unknown>;
const config = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/synthetic/qwen3_5_text/config.json'), 'utf8')) as Json;

/** Weights of every parameter refParameters names, around the values a trained model has. */
function weights(rng: Rng): Map<string, Float64Array> {
  const w = new Map<string, Float64Array>();
  for (const [name, shape] of refParameters(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let v: Float32Array;
    if (name.endsWith('A_log')) v = rng.uniform(n, -1, 1);
    else if (name.endsWith('dt_bias')) v = rng.randn(n, 0.5);
    else if (name.endsWith('linear_attn.norm.weight')) v = rng.uniform(n, 0.8, 1.2); // plain w (RMSNormGated)
    else if (name.endsWith('norm.weight')) v = rng.randn(n, 0.1); // (1 + w)
    else if (name.endsWith('conv1d.weight')) v = rng.randn(n, 0.5);
    else if (name === 'model.embed_tokens.weight') v = rng.randn(n, 0.3);
    else v = rng.randn(n, 1 / Math.sqrt(shape[1]!));
    w.set(name, Float64Array.from(v));
  }
  return w;
}

/** A map that records which weights were read. */
class Reads extends Map<string, Float64Array> {
  readonly seen = new Set<string>();
  override get(key: string): Float64Array | undefined {
    this.seen.add(key);
    return super.get(key);
  }
}

describe('Qwen3.5 text reference', () => {
  it('reads the config as transformers does: layer kinds, GQA of the delta rule, partial rotary', () => {
    const a = refArch(config);
    expect(a.layers.map((l) => l.linear)).toEqual([true, false]);
    expect(a.deltaNet).toEqual({ Hk: 1, Hv: 2, Dk: 8, Dv: 8, kernel: 4 });
    expect(a.layers[1]!.rotaryDim).toBe(4);
    expect(a.gemmaNorm && a.qkNorm && a.gatedAttention && a.tied).toBe(true);
    expect(refLinearModules(config)).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'in_proj_qkv', 'in_proj_z', 'in_proj_b', 'in_proj_a', 'out_proj', 'gate_proj', 'up_proj', 'down_proj']);
    const defaults = refArch({ ...config, layer_types: undefined, num_hidden_layers: 8, rope_parameters: { rope_theta: 1e7, rope_type: 'default' } });
    expect(defaults.layers.map((l) => (l.linear ? 'L' : 'F')).join('')).toBe('LLLFLLLF');
    expect(defaults.layers[3]!.rotaryDim).toBe(4);
  });

  it('uses every parameter it lists, and is causal: a prefix gives the same logits alone', () => {
    const rng = makeRng();
    const w = new Reads(weights(rng));
    const V = Number(config.vocab_size);
    const ids = [Array.from({ length: 11 }, () => Math.floor(rng.next() * V)), Array.from({ length: 11 }, () => Math.floor(rng.next() * V))];
    const full = refLogits(config, w as RefWeights, ids);
    expect(full.every(Number.isFinite)).toBe(true);
    // (optional lookups such as biases count only when present)
    expect([...w.seen].filter((n) => w.has(n)).sort()).toEqual(refParameters(config).map(([n]) => n).sort());
    const P = 6;
    const prefix = refLogits(config, w as RefWeights, ids.map((r) => r.slice(0, P)));
    for (let b = 0; b < 2; b++) {
      const got = prefix.subarray(b * P * V, (b + 1) * P * V), want = full.subarray(b * 11 * V, (b * 11 + P) * V);
      expect(relErr(got, want), `row ${b} (SEED=${rng.seed})`).toBeLessThan(1e-12);
    }
  });

  it('each piece shows in the logits: the attention gate, the delta rule state, the conv taps', () => {
    const rng = makeRng();
    const w = weights(rng);
    const V = Number(config.vocab_size);
    const ids = [Array.from({ length: 9 }, () => Math.floor(rng.next() * V))];
    const base = refLogits(config, w, ids);
    const changed = (name: string, f: (v: Float64Array) => void) => {
      const copy = new Map(w);
      const v = Float64Array.from(w.get(name)!);
      f(v);
      copy.set(name, v);
      return relErr(refLogits(config, copy, ids), base);
    };
    // the gate half of each head's q_proj rows
    expect(changed('model.layers.1.self_attn.q_proj.weight', (v) => v.subarray(16 * 32, 32 * 32).fill(0)), `gate (SEED=${rng.seed})`).toBeGreaterThan(1e-3);
    // stronger decay: the state forgets sooner
    expect(changed('model.layers.0.linear_attn.A_log', (v) => v.fill(3)), `decay (SEED=${rng.seed})`).toBeGreaterThan(1e-3);
    // only the current token's conv tap
    expect(changed('model.layers.0.linear_attn.conv1d.weight', (v) => v.forEach((_, i) => i % 4 !== 3 && (v[i] = 0))), `conv (SEED=${rng.seed})`).toBeGreaterThan(1e-3);
  });
});
