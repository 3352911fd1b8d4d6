// LLaMA Pro block expansion: the expanded checkpoint computes exactly what the original does (the
// inserted copies have zero o_proj and down_proj), its layers are where LLaMA-Factory puts them,
// and use_llama_pro's trainable layers are those copies.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { main } from '../src/cli/main';
import { configFromObject } from '../src/config';
import { trainOptionsFromConfig } from '../src/engine/options';
import { Session } from '../src/engine/session';
import { openSafetensors } from '../src/model/safetensors';
import { memoryStore } from './helpers/run-store';
import { expandBlocks, expandedLayers } from '../src/export/block-expansion';
import { dirFiles } from '../src/model/files-node';
import { fullLogits, Workspace } from '../src/model/forward';
import { llamaProLayers } from '../src/model/llama-pro';
import { Model } from '../src/model/model';
import { Checkpoint } from '../src/model/weights';
import { testGpu } from './helpers/gpu';
import { batchOf, readCase } from './helpers/parity';

const DIR = join(import.meta.dirname, 'fixtures/models/llama');

async function logits(model: Model): Promise<Float32Array> {
  const batch = batchOf(readCase('llama'));
  const ws = new Workspace(model, batch.B, batch.S, false);
  ws.load(batch);
  const out = model.gpu.tensor([batch.B * batch.S, model.spec.vocab]);
  fullLogits(ws, out);
  return model.gpu.readF32(out);
}

describe('LLaMA Pro block expansion', () => {
  it('places a copy after every L/E layers, as llama_pro.py does', () => {
    expect(expandedLayers(4, 2)).toEqual([
      { from: 0, copy: false }, { from: 1, copy: false }, { from: 1, copy: true },
      { from: 2, copy: false }, { from: 3, copy: false }, { from: 3, copy: true },
    ]);
    expect(() => expandedLayers(6, 4)).toThrow(/6 layers are not divisible by num_expand 4/);
    // after expanding 4 layers by 2, the copies are layers 2 and 5: what use_llama_pro trains
    expect(llamaProLayers(6, 2)).toEqual([2, 5]);
    expect(llamaProLayers(32 + 8, 8)).toEqual([4, 9, 14, 19, 24, 29, 34, 39]);
    expect(() => llamaProLayers(6, 4)).toThrow(/6 layers are not divisible by freeze_trainable_layers 4/);
  });

  it('the expanded model computes the original logits; copies carry the weights, zero o_proj and down_proj', async () => {
    const gpu = await testGpu();
    const out = mkdtempSync(join(tmpdir(), 'crucible-llama-pro-'));
    const write = async (p: string, d: Uint8Array | string) => writeFileSync(join(out, p), d);
    const result = await expandBlocks(dirFiles(DIR), 2, write, { maxBytes: 40_000 }); // small shards: an index too
    expect(result).toMatchObject({ from: 2, to: 4 });
    expect(result.files).toContain('model.safetensors.index.json');
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).num_hidden_layers).toBe(4);

    const ckpt = await Checkpoint.open(dirFiles(out));
    const orig = await Checkpoint.open(dirFiles(DIR));
    const same = async (a: string, b: string) => expect(await ckpt.read(a)).toEqual(await orig.read(b));
    await same('model.layers.2.self_attn.q_proj.weight', 'model.layers.1.self_attn.q_proj.weight');
    await same('model.layers.1.mlp.up_proj.weight', 'model.layers.0.mlp.up_proj.weight');
    await same('model.layers.3.input_layernorm.weight', 'model.layers.1.input_layernorm.weight');
    expect((await ckpt.read('model.layers.3.mlp.down_proj.weight')).every((x) => x === 0)).toBe(true);
    expect((await ckpt.read('model.layers.1.self_attn.o_proj.weight')).every((x) => x === 0)).toBe(true);
    await same('model.layers.2.self_attn.o_proj.weight', 'model.layers.1.self_attn.o_proj.weight');

    writeFileSync(join(out, 'generation_config.json'), readFileSync(join(DIR, 'generation_config.json')));
    const expanded = await Model.load(gpu, dirFiles(out));
    expect(expanded.layers.length).toBe(4);
    expect(await logits(expanded)).toEqual(await logits(await Model.load(gpu, dirFiles(DIR))));
  });

  it('crucible expand writes a folder that loads on its own, and says what it cannot do', async () => {
    const out: string[] = [], err: string[] = [];
    const io = { stdout: (t: string) => void out.push(t), stderr: (t: string) => void err.push(t), env: {}, cwd: process.cwd(), stdin: Readable.from([]), interactive: false };
    const dir = join(mkdtempSync(join(tmpdir(), 'crucible-expand-')), 'pro');
    expect(await main(['expand', DIR, dir, '--num-expand', '1'], io)).toBe(0);
    expect(out.join('')).toContain('model.safetensors\n');
    expect(err.join('')).toMatch(/expanded 2 to 3 layers .*\n.*finetuning_type: freeze\n  freeze_trainable_layers: 1\n  use_llama_pro: true/s);
    expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).num_hidden_layers).toBe(3);
    expect(readFileSync(join(dir, 'generation_config.json'), 'utf8')).toBe(readFileSync(join(DIR, 'generation_config.json'), 'utf8'));
    err.length = 0;
    expect(await main(['expand', DIR, `${dir}-2`, '--num-expand', '3'], io)).toBe(1);
    expect(err.join('')).toMatch(/2 layers are not divisible by num_expand 3/);
    err.length = 0;
    expect(await main(['expand', DIR, `${dir}-3`], io)).toBe(1);
    expect(err.join('')).toMatch(/--num-expand must be a positive integer/);
  });

  it('use_llama_pro trains exactly the inserted blocks of an expanded model (not the last layers), whole or with LoRA', async () => {
    const gpu = await testGpu();
    const tiny = join(import.meta.dirname, 'fixtures/tiny-chat');
    const dir = mkdtempSync(join(tmpdir(), 'crucible-pro-train-'));
    await expandBlocks(dirFiles(tiny), 2, async (p, d) => writeFileSync(join(dir, p), d), { maxBytes: 5e9 });
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) writeFileSync(join(dir, f), readFileSync(join(tiny, f)));
    const session = await Session.open(gpu, dirFiles(dir));
    const { config: c } = configFromObject({ stage: 'sft', finetuning_type: 'freeze', freeze_trainable_layers: 2, use_llama_pro: true, learning_rate: 1e-3, max_steps: 1, per_device_train_batch_size: 2 });
    const rows = Array.from({ length: 2 }, (_, i) => {
      const ids = Array.from({ length: 10 }, (_, j) => (i * 5 + j * 3) % 200 + 5);
      return { input_ids: ids, labels: ids.slice() };
    });
    const store = memoryStore();
    const trainer = await session.train(trainOptionsFromConfig(c), rows, [], store, {});
    await trainer.saveModel(store, 'out');
    const saved = await openSafetensors({ name: 'w', size: (store.files.get('out/trained_weights.safetensors') as Uint8Array).length, read: async (o, l) => (store.files.get('out/trained_weights.safetensors') as Uint8Array).slice(o, o + l) });
    const layers = new Set([...saved.tensors.keys()].map((n) => /layers\.(\d+)\./.exec(n)?.[1]));
    expect([...layers].sort()).toEqual(['1', '3']); // the copies of layers 0 and 1
    // with LoRA the adapter goes on the copies only (LLaMA-Factory's find_expanded_modules)
    const { config: cl } = configFromObject({ stage: 'sft', finetuning_type: 'lora', lora_target: 'all', freeze_trainable_layers: 2, use_llama_pro: true, learning_rate: 1e-3, max_steps: 1, per_device_train_batch_size: 2 });
    const loraStore = memoryStore();
    const loraTrainer = await session.train(trainOptionsFromConfig(cl), rows, [], loraStore, {});
    await loraTrainer.saveModel(loraStore, 'out');
    const bytes = loraStore.files.get('out/adapter_model.safetensors') as Uint8Array;
    const adapter = await openSafetensors({ name: 'a', size: bytes.length, read: async (o, l) => bytes.slice(o, o + l) });
    const names = [...adapter.tensors.keys()];
    expect(names.length).toBeGreaterThan(0);
    expect([...new Set(names.map((n) => /layers\.(\d+)\./.exec(n)?.[1]))].sort()).toEqual(['1', '3']);
    expect(JSON.parse(loraStore.files.get('out/adapter_config.json') as string).layers_to_transform).toEqual([1, 3]);
    expect(() => configFromObject({ stage: 'sft', finetuning_type: 'full', use_llama_pro: true })).toThrow(/use_llama_pro trains the expanded blocks with finetuning_type: freeze, or LoRA on them/);
    session.release();
  });
});
