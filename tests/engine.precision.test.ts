// bf16 / fp16 -> the f16 tier (src/engine/precision.ts): which runs store the base in f16, and the
// one note for those that asked and stay f32.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config';
import { basePrecision } from '../src/engine/precision';

const F16_GPU = { f16: true, adapter: 'Test GPU' };
const NO_F16_GPU = { f16: false, adapter: 'Google SwiftShader' };
const config = (yaml: string) => parseConfig(yaml).config;

describe('basePrecision', () => {
  it('bf16 and fp16 select an f16 base for LoRA on a device with shader-f16', () => {
    for (const key of ['bf16', 'fp16']) {
      expect(basePrecision(config(`${key}: true`), F16_GPU)).toEqual({ f16: true, note: null });
    }
  });

  it('without bf16 / fp16 the base is f32, silently, on any device', () => {
    expect(basePrecision(config('finetuning_type: lora'), F16_GPU)).toEqual({ f16: false, note: null });
    expect(basePrecision(config('bf16: false'), NO_F16_GPU)).toEqual({ f16: false, note: null });
  });

  it('falls back to f32 with one note where the device lacks shader-f16', () => {
    expect(basePrecision(config('bf16: true'), NO_F16_GPU)).toEqual({
      f16: false, note: 'note: bf16: Google SwiftShader has no shader-f16; training runs in f32',
    });
    expect(basePrecision(config('fp16: true'), NO_F16_GPU).note).toMatch(/^note: fp16: Google SwiftShader has no shader-f16/);
  });

  it('keeps trained and quantized bases as they are, with a note saying why', () => {
    expect(basePrecision(config('bf16: true\nfinetuning_type: full'), F16_GPU)).toEqual({
      f16: false, note: 'note: bf16: full training updates the base weights, which stay f32 (the f16 tier stores only a frozen LoRA base)',
    });
    expect(basePrecision(config('bf16: true\nfinetuning_type: freeze'), F16_GPU).f16).toBe(false);
    expect(basePrecision(config('bf16: true\nquantization_bit: 4'), F16_GPU)).toEqual({
      f16: false, note: 'note: bf16: the base is quantized (quantization_bit: 4); its products run in f32',
    });
  });
});
