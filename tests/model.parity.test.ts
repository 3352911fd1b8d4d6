// Model engine vs HF transformers + PEFT (tests/helpers/parity.ts): base logits, LoRA gradients,
// AdamW steps, final adapter, greedy tokens. The longer variants are in model.parity-variants.test.ts.
import { describe, it } from 'vitest';
import { fullParity, loraParity } from './helpers/parity';

describe('model parity with transformers + PEFT', () => {
  for (const name of ['llama', 'mistral', 'qwen2', 'qwen3']) {
    it(`${name}: base logits and greedy tokens, LoRA loss and gradients, 5 AdamW steps, final adapter`, () => loraParity(name));
  }
  it('llama_full: full fine-tuning gradients of every weight, 3 AdamW steps, final weights', () => fullParity('llama_full'));
});
