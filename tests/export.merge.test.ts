// Merging PEFT adapters into their base (crucible export): the merged model must give the logits
// that transformers + PEFT gave for base + adapter (logits_final of the fixtures).
import { mkdtempSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { exportModel } from '../src/engine/export-node';
import { mergeLora } from '../src/export/lora-merge';
import { writeSharded } from '../src/export/shards';
import { modelTensors } from '../src/export/model-tensors';
import { Checkpoint } from '../src/model/weights';
import { dirFiles, fileSource } from '../src/model/files-node';
import { fullLogits, shiftLabels, Workspace } from '../src/model/forward';
import { Model } from '../src/model/model';
import { openSafetensors, readF32 } from '../src/model/safetensors';
import { testGpu } from './helpers/gpu';
import { makeRng, relErr } from './helpers/check';

const FIX = join(import.meta.dirname, 'fixtures/models');

describe('export: merge adapter into base', () => {
  for (const name of ['llama', 'llama_dora', 'qwen2']) {
    it(`${name}: the merged model reproduces PEFT's logits of base + adapter`, async () => {
      const out = mkdtempSync(join(tmpdir(), 'merge-'));
      const { config } = configFromObject({
        model_name_or_path: join(FIX, name),
        adapter_name_or_path: join(FIX, name, 'adapter_final'),
        export_dir: out,
      });
      const result = await exportModel(config, {});
      expect(result.files.map((f) => f.slice(out.length + 1))).toEqual(expect.arrayContaining(['model.safetensors', 'config.json']));
      const gpu = await testGpu();
      const model = await Model.load(gpu, dirFiles(out));
      const c = JSON.parse(readFileSync(join(FIX, name, 'case.json'), 'utf8'));
      const B = c.input_ids.length, S = c.input_ids[0].length;
      const ws = new Workspace(model, B, S, true);
      ws.load({ B, S, ids: Int32Array.from(c.input_ids.flat()), labels: shiftLabels(Int32Array.from(c.labels.flat()), B, S), positions: Int32Array.from({ length: B * S }, (_, i) => i % S) });
      const logits = gpu.tensor([B * S, model.spec.vocab]);
      fullLogits(ws, logits);
      const ref = await readF32(await openSafetensors(await fileSource(join(FIX, name, 'logits_final.safetensors'))), 'logits');
      expect(relErr(await gpu.readF32(logits), ref)).toBeLessThan(1e-4);
    });
  }

  it('refuses to merge a PiSSA adapter saved without conversion (it belongs to the residual base)', async () => {
    const ad = join(FIX, 'llama', 'adapter_final');
    const dir = mkdtempSync(join(tmpdir(), 'pissa-raw-'));
    const cfg = JSON.parse(readFileSync(join(ad, 'adapter_config.json'), 'utf8'));
    await writeFile(join(dir, 'adapter_config.json'), JSON.stringify({ ...cfg, init_lora_weights: 'pissa_niter_16' }));
    await writeFile(join(dir, 'adapter_model.safetensors'), readFileSync(join(ad, 'adapter_model.safetensors')));
    const { config } = configFromObject({ model_name_or_path: join(FIX, 'llama'), adapter_name_or_path: dir, export_dir: mkdtempSync(join(tmpdir(), 'merge-')) });
    await expect(exportModel(config, {})).rejects.toThrow(/PiSSA adapter saved without conversion \(init_lora_weights "pissa_niter_16"\).*pissa_convert: true/);
  });

  it('writeSharded splits at export_size and writes an index that loads back', async () => {
    const out = mkdtempSync(join(tmpdir(), 'shards-'));
    const rng = makeRng();
    const tensors = [['a.weight', [10, 10]], ['b.weight', [30, 4]], ['c.bias', [7]]] as const;
    const data = new Map(tensors.map(([n, shape]) => [n, rng.randn(shape.reduce((x, y) => x * y, 1))]));
    const files = await writeSharded(tensors.map(([name, shape]) => ({ name, shape, read: async () => data.get(name)! })),
      (p, d) => writeFile(join(out, p), d), { maxBytes: 450, dtype: 'F32' });
    expect(files).toEqual(['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors', 'model.safetensors.index.json']);
    const ckpt = await Checkpoint.open(dirFiles(out));
    for (const [name, shape] of tensors) expect(await ckpt.read(name, shape)).toEqual(data.get(name));
  });

  it('modelTensors writes back exactly the checkpoint it loaded (names, shapes, values)', async () => {
    const gpu = await testGpu();
    const dir = join(FIX, 'qwen2');
    const model = await Model.load(gpu, dirFiles(dir));
    const out = mkdtempSync(join(tmpdir(), 'save-'));
    await writeSharded(modelTensors(model), (p, d) => writeFile(join(out, p), d), { maxBytes: 5e9, dtype: 'F32' });
    const [a, b] = [await Checkpoint.open(dirFiles(dir)), await Checkpoint.open(dirFiles(out))];
    expect(b.names().sort()).toEqual(a.names().filter((n) => n !== 'lm_head.weight').sort());
    for (const n of b.names()) expect(await b.read(n)).toEqual(await a.read(n));
  });

  it('mergeLora: W + s·B·A against a direct f64 product; DoRA rescales rows to the magnitude', () => {
    const rng = makeRng();
    const [N, K, r, s] = [5, 7, 3, 0.5];
    const W = rng.randn(N * K), A = rng.randn(r * K), B = rng.randn(N * r), m = rng.uniform(N, 0.5, 2);
    const plain = mergeLora(W, N, K, { A, B, r, scaling: s });
    const dora = mergeLora(W, N, K, { A, B, r, scaling: s, magnitude: m });
    for (let n = 0; n < N; n++) {
      let sq = 0;
      for (let k = 0; k < K; k++) {
        let d = 0;
        for (let j = 0; j < r; j++) d += B[n * r + j]! * A[j * K + k]!;
        const v = W[n * K + k]! + s * d;
        expect(plain[n * K + k]).toBeCloseTo(v, 5);
        sq += dora[n * K + k]! ** 2;
      }
      expect(Math.sqrt(sq)).toBeCloseTo(m[n]!, 5);
    }
  });
});
