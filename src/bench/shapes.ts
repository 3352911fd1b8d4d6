// The model shapes the benchmarks use (config.json of the real checkpoints; weights are random).

export const BENCH_MODELS: Record<string, Record<string, unknown>> = {
  'smollm2-135m': {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30,
    num_attention_heads: 9, num_key_value_heads: 3, vocab_size: 49152, tie_word_embeddings: true, rope_theta: 100000,
    max_position_embeddings: 8192, rms_norm_eps: 1e-5, hidden_act: 'silu', bos_token_id: 0, eos_token_id: 0,
  },
  'qwen2.5-0.5b': {
    architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24,
    num_attention_heads: 14, num_key_value_heads: 2, vocab_size: 151936, tie_word_embeddings: true, rope_theta: 1000000,
    max_position_embeddings: 32768, rms_norm_eps: 1e-6, hidden_act: 'silu', eos_token_id: 151643,
  },
  'llama3.2-1b': {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16,
    num_attention_heads: 32, num_key_value_heads: 8, head_dim: 64, vocab_size: 128256, tie_word_embeddings: true,
    rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    max_position_embeddings: 131072, rms_norm_eps: 1e-5, hidden_act: 'silu', bos_token_id: 128000, eos_token_id: 128001,
  },
  /** Small enough for software adapters (SwiftShader): the CI smoke shape. */
  tiny: {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 256, tie_word_embeddings: false, rope_theta: 10000,
    max_position_embeddings: 512, rms_norm_eps: 1e-6, hidden_act: 'silu', eos_token_id: 2,
  },
};
