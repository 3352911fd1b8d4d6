// The app's memory estimate of generation's state (src/ui/lib/estimate.ts, decode) against the GPU
// buffers allocKVCache really creates, for a plain transformer and each recurrent family: Qwen3.5's
// Gated DeltaNet (conv + delta-rule memory), Granite 4's Mamba-2 (conv over x, B, C + SSD state) and
// LFM2's short convolution (conv state only). The recurrent part is also worked out here by hand
// from config.json's keys, and checked not to grow with the length.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { syntheticModelFiles } from '../src/bench/synthetic';
import { allocKVCache, cacheTensors } from '../src/model/forward';
import { Model } from '../src/model/model';
import { estimateMemory } from '../src/ui/lib/estimate';
import { testGpu } from './helpers/gpu';

type Json = Record<string, unknown>;
const config = (name: string): Json => JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/synthetic', name, 'config.json'), 'utf8')) as Json;
const n = (c: Json, key: string) => c[key] as number;
const layersOf = (c: Json, type: string) => (c.layer_types as string[] | undefined)?.filter((t) => t === type).length ?? 0;

/** Bytes of recurrent state per sequence, from the config keys: (K - 1) conv inputs per channel and the recurrent memory, f32. */
const byHand: Record<string, (c: Json) => number> = {
  llama_tied_rope3: () => 0,
  qwen3_5_text: (c) => {
    const [hk, hv, dk, dv, k] = ['linear_num_key_heads', 'linear_num_value_heads', 'linear_key_head_dim', 'linear_value_head_dim', 'linear_conv_kernel_dim'].map((key) => n(c, key));
    return layersOf(c, 'linear_attention') * 4 * ((k! - 1) * (2 * hk! * dk! + hv! * dv!) + hv! * dk! * dv!);
  },
  granite4_h: (c) => {
    const width = n(c, 'mamba_expand') * n(c, 'hidden_size'), groups = n(c, 'mamba_n_groups'), N = n(c, 'mamba_d_state');
    return layersOf(c, 'mamba') * 4 * ((n(c, 'mamba_d_conv') - 1) * (width + 2 * groups * N) + N * width);
  },
  lfm2: (c) => layersOf(c, 'conv') * 4 * (n(c, 'conv_L_cache') - 1) * n(c, 'hidden_size'),
};

describe('memory estimate: generation state', () => {
  for (const name of Object.keys(byHand)) {
    it(`${name}: KV cache and recurrent state equal the buffers allocKVCache creates`, async () => {
      const c = config(name);
      const gpu = await testGpu();
      const model = await Model.load(gpu, syntheticModelFiles(c));
      for (const capacity of [7, 40]) {
        const cache = allocKVCache(model, capacity);
        const sum = (ts: (GPUBuffer | undefined)[]) => ts.reduce((a, b) => a + (b?.size ?? 0), 0);
        const kv = sum([...cache.k, ...cache.v].map((t) => t?.buffer));
        const recurrent = sum([...cache.conv, ...cache.rule].map((t) => t?.buffer));
        expect(kv + recurrent).toBe(sum(cacheTensors(cache).map((t) => t.buffer)));
        const { decode } = estimateMemory(c, { cutoff_len: capacity, per_device_train_batch_size: 1 });
        expect(decode, `${name} at ${capacity} positions`).toEqual({ kv, recurrent });
        expect(recurrent, `${name}: the recurrent state by hand`).toBe(byHand[name]!(c));
        const attention = model.layers.filter((l) => l.mixer === 'attention').length;
        expect(kv).toBe(attention * 2 * 4 * capacity * model.spec.kvHeads * model.spec.headDim);
        gpu.release(...cacheTensors(cache));
      }
      model.release();
    });
  }
});
