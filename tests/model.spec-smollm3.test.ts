// SmolLM3's NoPE layers in the model spec: no_rope_layers (1 = rope, 0 = none) or its interval default.
import { describe, expect, it } from 'vitest';
import { specFromConfig } from '../src/model/spec';

const base = {
  architectures: ['SmolLM3ForCausalLM'], hidden_size: 64, intermediate_size: 128, num_attention_heads: 4, num_key_value_heads: 2,
  num_hidden_layers: 8, vocab_size: 256, rope_parameters: { rope_theta: 2e6, rope_type: 'default' },
};
const rotated = (c: Record<string, unknown>) => specFromConfig(c).layers.map((l) => l.rope.partialRotaryFactor);

describe('SmolLM3 spec', () => {
  it('reads no_rope_layers as where rope is used, and defaults to every fourth layer without it', () => {
    expect(rotated({ ...base, no_rope_layers: [1, 0, 1, 1, 0, 1, 1, 1] })).toEqual([1, 0, 1, 1, 0, 1, 1, 1]);
    expect(rotated(base)).toEqual([1, 1, 1, 0, 1, 1, 1, 0]);
    expect(rotated({ ...base, no_rope_layer_interval: 2 })).toEqual([1, 0, 1, 0, 1, 0, 1, 0]);
    // other architectures ignore the key
    expect(rotated({ ...base, architectures: ['LlamaForCausalLM'], no_rope_layers: [0, 0, 0, 0, 0, 0, 0, 0] })).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
  });

  it('rejects a list that does not cover every layer with 0 or 1', () => {
    expect(() => specFromConfig({ ...base, no_rope_layers: [1, 0, 1] })).toThrow(/"no_rope_layers" must list 0 or 1 for each of the 8 layers/);
    expect(() => specFromConfig({ ...base, no_rope_layers: [1, 2, 1, 1, 1, 1, 1, 1] })).toThrow(/no_rope_layers/);
  });
});
