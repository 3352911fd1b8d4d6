// A PPO step's rollouts: each query answered by the policy as it is now (adapter on), sampled on
// the GPU with the KV cache (model/generate.ts). As LLaMA-Factory's get_inputs, a response keeps
// the stop token that ended it, and is that token alone when the policy stops at once.

import type { Generator } from '../../model/generate';
import type { PpoSampling } from './options';

export async function sampleResponses(gen: Generator, queries: readonly (readonly number[])[], s: PpoSampling, seedOf: (i: number) => number): Promise<number[][]> {
  // the adapter moved since the last rollout: cached keys and values are stale
  gen.reset();
  const out: number[][] = [];
  for (const [i, q] of queries.entries()) {
    const response: number[] = [];
    for await (const id of gen.generate(q, {
      maxNewTokens: s.maxNewTokens, temperature: s.temperature, topK: s.topK, topP: s.topP,
      repetitionPenalty: s.repetitionPenalty, stopIds: s.stopIds, seed: seedOf(i),
    })) response.push(id);
    if (gen.lastStop !== null) response.push(gen.lastStop);
    out.push(response);
  }
  return out;
}
