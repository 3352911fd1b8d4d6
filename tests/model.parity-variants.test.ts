// Parity variants: 2 x 100 tokens (several attention tiles), rsLoRA and DoRA (tests/helpers/parity.ts).
import { describe, it } from 'vitest';
import { loraParity } from './helpers/parity';

describe('model parity with transformers + PEFT: variants', () => {
  for (const name of ['llama_long', 'llama_rslora', 'llama_dora']) {
    it(`${name}: base logits and greedy tokens, LoRA loss and gradients, 5 AdamW steps, final adapter`, () => loraParity(name));
  }
});
