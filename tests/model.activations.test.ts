// The activation table (src/model/activations.ts) against what a Workspace really allocates: a
// forward and backward of a small model's micro-batch (activations, LoRA's saved activations,
// the backward's gradients) adds exactly the table's bytes, and release() frees all of them.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { activationBytes, loraSites } from '../src/model/activations';
import { Adapter } from '../src/model/adapter';
import { dirFiles, fileSource } from '../src/model/files-node';
import { forwardBackward, Workspace, type Batch } from '../src/model/forward';
import { Model } from '../src/model/model';
import { makeRng, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';

const FIX = join(import.meta.dirname, 'fixtures/models');

function randomBatch(rng: Rng, B: number, S: number, vocab: number, packed: boolean): Batch {
  const T = B * S;
  const ids = rng.int(T, vocab);
  const labels = Int32Array.from(ids, (id, i) => (i % S === S - 1 ? -100 : ids[i + 1]!));
  const positions = Int32Array.from({ length: T }, (_, i) => (packed ? i % Math.ceil(S / 2) : i % S));
  return { B, S, ids, labels, positions, ...(packed ? { segments: Int32Array.from({ length: T }, (_, i) => 1 + Math.floor((i % S) / Math.ceil(S / 2))) } : {}) };
}

/** Bytes a workspace's forward + backward allocates, after a first workspace of the shape has grown the kernels' per-GPU scratch. */
async function workspaceAllocation(model: Model, batch: Batch, recompute: boolean): Promise<number> {
  const gpu = model.gpu;
  const packed = !!batch.segments;
  const warm = new Workspace(model, batch.B, batch.S, recompute, packed);
  warm.load(batch);
  forwardBackward(warm, { backward: true, gradScale: 1 });
  await gpu.sync();
  const before = gpu.allocated;
  const ws = new Workspace(model, batch.B, batch.S, recompute, packed);
  ws.load(batch);
  forwardBackward(ws, { backward: true, gradScale: 1 });
  await gpu.sync();
  const used = gpu.allocated - before;
  ws.release();
  expect(gpu.allocated, 'release() frees every buffer the workspace allocated').toBe(before);
  warm.release();
  return used;
}

describe('activation table', () => {
  const cases: Array<{ fixture: string; B: number; S: number; recompute: boolean; packed: boolean }> = [
    { fixture: 'llama', B: 2, S: 8, recompute: false, packed: false },
    { fixture: 'llama', B: 2, S: 8, recompute: true, packed: true },
    { fixture: 'qwen3', B: 1, S: 16, recompute: false, packed: false },
    { fixture: 'llama_dora', B: 2, S: 8, recompute: true, packed: false },
  ];
  for (const c of cases) {
    it(`${c.fixture} with its LoRA adapter, ${c.B}x${c.S}${c.recompute ? ', recomputed' : ''}${c.packed ? ', packed' : ''}: the table's total is what the workspace allocates`, async () => {
      const gpu = await testGpu();
      const dir = join(FIX, c.fixture);
      const model = await Model.load(gpu, dirFiles(dir));
      const adapter = await Adapter.load(model, readFileSync(join(dir, 'adapter_init/adapter_config.json'), 'utf8'), await fileSource(join(dir, 'adapter_init/adapter_model.safetensors')));
      try {
        const rng = makeRng();
        const used = await workspaceAllocation(model, randomBatch(rng, c.B, c.S, model.spec.vocab, c.packed), c.recompute);
        const table = activationBytes(model.spec, { B: c.B, S: c.S, recompute: c.recompute, packed: c.packed, lora: loraSites(model.layers[0]!) });
        expect(table.lora).toBeGreaterThan(0);
        expect(used).toBe(table.stream + table.layers + table.lora + table.gradients);
      } finally {
        adapter.release();
        model.release();
      }
    });
  }
});
