// LLaMA-Factory's bf16 / fp16 (mixed precision) as Crucible's f16 tier: a LoRA run stores the
// frozen base weights in f16 and multiplies them with f16 operands and f32 sums (src/kernels/
// matmul.ts); the adapter, optimizer state and loss stay f32. It needs shader-f16: without it,
// and where the base cannot be f16, the run stays f32 and says so in one note.

import type { CrucibleConfig } from '../config';
import type { Capabilities } from '../gpu/capabilities';

export interface BasePrecision {
  /** Store the base linear weights in f16 (Session.open's f16). */
  f16: boolean;
  /** Why half precision was asked for and not used; null when it was used or not asked for. */
  note: string | null;
}

export function basePrecision(
  c: Pick<CrucibleConfig, 'bf16' | 'fp16' | 'finetuning_type' | 'quantization_bit'>,
  caps: Pick<Capabilities, 'f16' | 'adapter'>,
): BasePrecision {
  const key = c.bf16 ? 'bf16' : c.fp16 ? 'fp16' : null;
  if (!key) return { f16: false, note: null };
  const f32 = (why: string) => ({ f16: false, note: `note: ${key}: ${why}` });
  if (c.quantization_bit !== null) return f32(`the base is quantized (quantization_bit: ${c.quantization_bit}); its products run in f32`);
  if (c.finetuning_type === 'oft') return f32('OFT trains in f32 (the f16 tier stores only a frozen LoRA base)');
  if (c.finetuning_type !== 'lora') return f32(`${c.finetuning_type} training updates the base weights, which stay f32 (the f16 tier stores only a frozen LoRA base)`);
  if (!caps.f16) return f32(`${caps.adapter} has no shader-f16; training runs in f32`);
  return { f16: true, note: null };
}
