// LLaMA Pro (use_llama_pro): after block expansion (src/export/block-expansion.ts) only the
// inserted copies train.

/**
 * The layers use_llama_pro trains: with E = freeze_trainable_layers, every (L/E)-th layer counted
 * from the stride's end (LLaMA-Factory's range(stride - 1, L + stride - 1, stride)), which are the
 * copies block expansion inserted.
 */
export function llamaProLayers(layers: number, trainable: number): number[] {
  if (!Number.isInteger(trainable) || trainable < 1 || layers % trainable !== 0) {
    throw new Error(`use_llama_pro: the model's ${layers} layers are not divisible by freeze_trainable_layers ${trainable}`);
  }
  const stride = layers / trainable;
  return Array.from({ length: trainable }, (_, i) => stride - 1 + i * stride);
}
