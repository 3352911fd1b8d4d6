// LFM2 (Lfm2ForCausalLM: gated short convolutions and GQA attention with q/k layernorm) in the
// engine against the independent f64 reference (tests/reference/transformer.ts) on a tiny synthetic
// checkpoint (tests/fixtures/synthetic/lfm2: conv, attention, conv), until gen_new_archs.py's
// transformers-made fixture exists. Random weights under the HF names come from a seeded RNG
// (SEED=... replays). Checked: the spec read from config.json (and LFM2's original keys); logits
// and loss, base and with a PEFT LoRA on every linear module (q/k/v/out_proj, in_proj, w1/w3/w2);
// LoRA and full gradients against central differences; packed sequences; prefill + decode with the
// conv state equal to one full forward; an engine-made adapter under PEFT's names, and its merge;
// the app's parameter and LoRA counts; LLaMA Pro block expansion.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { configFromObject } from '../src/config';
import { expandBlocks } from '../src/export/block-expansion';
import { exportModel } from '../src/engine/export-node';
import { countParams, estimateMemory } from '../src/ui/lib/estimate';
import { syntheticModelFiles } from '../src/bench/synthetic';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { logitsForRows } from '../src/kernels/loss';
import { activationBytes, loraSitesByMixer } from '../src/model/activations';
import { Adapter, type TrainableTensor } from '../src/model/adapter';
import { dirFiles, fileSource } from '../src/model/files-node';
import {
  allocKVCache, cacheTensors, forwardBackward, forwardCached, fullLogits, Workspace, type Batch, type LoraDropoutStep,
} from '../src/model/forward';
import { Generator } from '../src/model/generate';
import { Model } from '../src/model/model';
import { encodeSafetensors } from '../src/model/safetensors';
import { makeTrainable } from '../src/model/trainable';
import { specFromConfig } from '../src/model/spec';
import { makeRng, relErr, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { batchOf, engineLogits, writeRefAdapter } from './helpers/ref-model';
import { refCausalLoss, refLinearModules, refLogits, refParameters, type RefLora } from './reference/transformer';

type Json = Record<string, unknown>;
const config = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/synthetic/lfm2/config.json'), 'utf8')) as Json;
const V = Number(config.vocab_size);
const TOL = 1e-4;
const RANK = 4, ALPHA = 8;

/** Weights of every parameter transformers creates, around the values a trained model has. */
function synthesize(rng: Rng): Map<string, Float32Array> {
  const w = new Map<string, Float32Array>();
  for (const [name, shape] of refParameters(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let v: Float32Array;
    if (name.endsWith('norm.weight')) v = rng.uniform(n, 0.8, 1.2); // w * x̂
    else if (name.endsWith('conv.conv.weight')) v = rng.randn(n, 0.5);
    else if (name === 'model.embed_tokens.weight') v = rng.randn(n, 0.3);
    // in_proj's B and C multiply each other: larger so the gated path shows
    else v = rng.randn(n, (/q_proj|k_proj|in_proj/.test(name) ? 2.5 : 1) / Math.sqrt(shape[1]!));
    w.set(name, v);
  }
  return w;
}

/** A checkpoint folder: config.json and the weights, their names under `prefix` instead of "model". */
function writeCheckpoint(cfg: Json, weights: Map<string, Float32Array>, prefix = 'model'): string {
  const dir = mkdtempSync(join(tmpdir(), 'lfm2-'));
  const shapes = new Map(refParameters(config));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(
    Object.fromEntries([...weights].map(([n, data]) => [n.replace(/^model\./, `${prefix}.`), { dtype: 'F32' as const, shape: shapes.get(n)!, data }])),
    { format: 'pt' },
  ));
  return dir;
}

const randomIds = (rng: Rng, n: number) => Array.from({ length: n }, () => 3 + Math.floor(rng.next() * (V - 3)));

/** A PEFT adapter on every linear module (B ~ N(0, 0.05²) so it shows), written as PEFT saves it. */
const writeAdapter = (rng: Rng) => writeRefAdapter(refParameters(config), refLinearModules(config), rng, { rank: RANK, alpha: ALPHA });

/** Engine gradients of LoRA tensors against central differences of the reference loss (largest element, a random one, a random direction). */
function worstGradient(loss: (l: RefLora) => number, lora: RefLora, params: TrainableTensor[], grads: Map<string, Float32Array>, rng: Rng) {
  const h = 1e-4;
  let worst = 0, where = '';
  for (const p of params) {
    const m = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(p.name);
    if (!m) throw new Error(`unexpected trainable ${p.name}`);
    const mod = lora.get(m[1]!)!, which = m[2] as 'A' | 'B', g = grads.get(p.name)!;
    const base = Float64Array.from(mod[which]);
    const along = (u: Float64Array) => {
      const at = (eps: number) => loss(new Map(lora).set(m[1]!, { ...mod, [which]: base.map((v, i) => v + eps * u[i]!) }));
      return (at(h) - at(-h)) / (2 * h);
    };
    let arg = 0;
    for (let i = 1; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[arg]!)) arg = i;
    const got: number[] = [], want: number[] = [];
    for (const i of [arg, Math.floor(rng.next() * g.length)]) {
      const u = new Float64Array(g.length);
      u[i] = 1;
      got.push(g[i]!);
      want.push(along(u));
    }
    const dir = Float64Array.from({ length: g.length }, () => rng.normal());
    const len = Math.hypot(...dir);
    dir.forEach((v, i) => (dir[i] = v / len));
    got.push(g.reduce((a, v, i) => a + v * dir[i]!, 0));
    want.push(along(dir));
    const err = relErr(got, want);
    if (err > worst) [worst, where] = [err, p.name];
  }
  return { worst, where };
}

describe('LFM2 spec', () => {
  it('reads layer kinds, the conv taps, the MLP width, norm_eps and tied embeddings; LFM2\'s original keys too', () => {
    const s = specFromConfig(config);
    expect(s.arch).toBe('lfm2');
    expect(s.layers.map((l) => l.mixer)).toEqual(['shortConv', 'attention', 'shortConv']);
    expect(s.shortConv).toEqual({ convKernel: 3 });
    // int(2 * 90 / 3) = 60, times 1.0, rounded up to a multiple of 32
    expect([s.intermediate, s.rmsEps, s.qkNorm, s.normOffset, s.tiedEmbeddings, s.headDim]).toEqual([64, 1e-5, true, 0, true, 16]);
    expect(s.layers[1]!.rope.theta).toBe(1e6);
    expect(specFromConfig({ ...config, block_auto_adjust_ff_dim: false }).intermediate).toBe(90);
    expect(specFromConfig({ ...config, block_ffn_dim_multiplier: null }).intermediate).toBe(60);
    // LFM2-1.2B's original keys: block_ff_dim 12288 -> 8192, full_attn_idxs, theta, tie_embedding
    const { layer_types: _, rope_parameters: __, tie_word_embeddings: ___, intermediate_size: ____, ...rest } = config;
    const orig = specFromConfig({ ...rest, block_ff_dim: 12288, block_multiple_of: 256, full_attn_idxs: [1], theta: 5e5, tie_embedding: true });
    expect([orig.intermediate, orig.layers.map((l) => l.mixer).join(), orig.layers[1]!.rope.theta, orig.tiedEmbeddings])
      .toEqual([8192, 'shortConv,attention,shortConv', 5e5, true]);
    expect(() => specFromConfig({ ...config, conv_bias: true })).toThrow(/conv_bias/);
    expect(() => specFromConfig({ ...config, layer_types: ['conv', 'linear_attention', 'conv'] })).toThrow(/layer_types\[1\] "linear_attention" is not a layer type of Lfm2ForCausalLM/);
  });
});

describe('LFM2 in the engine vs the f64 reference', () => {
  it('logits and loss, base and with LoRA on every linear module (recomputed); LoRA gradients vs finite differences; PEFT names', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(config, weights)));
    expect(model.moduleKinds()).toEqual(['q_proj', 'k_proj', 'v_proj', 'out_proj', 'in_proj', 'w1', 'w3', 'w2']);
    const linear = refParameters(config).filter(([n]) => refLinearModules(config).includes(n.split('.').at(-2)!)).map(([n]) => n.replace(/\.weight$/, ''));
    expect([...model.modules().map((m) => m.name)].sort()).toEqual([...linear].sort());
    const [B, S] = [2, 16];
    const ids = [randomIds(rng, S), randomIds(rng, S)];
    const labels = ids.map((r) => [...r]);
    for (let t = 0; t < 4; t++) labels[0]![t] = -100;
    const batch = batchOf(ids, labels);

    const ref = refLogits(config, weights, ids);
    expect(relErr(await engineLogits(gpu, model, batch), ref), `base logits ${at}`).toBeLessThan(TOL);
    const ws = new Workspace(model, B, S, false);
    ws.load(batch);
    forwardBackward(ws, { backward: false, gradScale: 1 / batch.valid });
    const loss = (await gpu.readF32(ws.loss)).reduce((a, b) => a + b, 0) / batch.valid;
    const refLoss = refCausalLoss(ref, labels, V);
    expect(Math.abs(loss - refLoss) / refLoss, `base loss ${loss} vs ${refLoss} ${at}`).toBeLessThan(TOL);
    ws.release();

    const { dir, lora } = writeAdapter(rng);
    const adapter = await Adapter.load(model, readFileSync(join(dir, 'adapter_config.json'), 'utf8'), await fileSource(join(dir, 'adapter_model.safetensors')));
    const refL = refLogits(config, weights, ids, lora);
    expect(relErr(await engineLogits(gpu, model, batch, true), refL), `LoRA logits ${at}`).toBeLessThan(TOL);
    const params = adapter.params();
    expect(params.length).toBe(2 * lora.size);
    for (const recompute of [false, true]) {
      for (const p of params) gpu.zero(p.grad);
      const ws2 = new Workspace(model, B, S, recompute);
      ws2.load(batch);
      forwardBackward(ws2, { backward: true, gradScale: 1 / batch.valid });
      const lossL = (await gpu.readF32(ws2.loss)).reduce((a, b) => a + b, 0) / batch.valid;
      const refLossL = refCausalLoss(refL, labels, V);
      expect(Math.abs(lossL - refLossL) / refLossL, `LoRA loss ${lossL} vs ${refLossL} ${at}`).toBeLessThan(TOL);
      const grads = new Map(await Promise.all(params.map(async (p) => [p.name, await gpu.readF32(p.grad)] as const)));
      const { worst, where } = worstGradient((l) => refCausalLoss(refLogits(config, weights, ids, l), labels, V), lora, params, grads, rng);
      expect(worst, `LoRA gradient ${where} vs finite differences${recompute ? ', recomputed' : ''} ${at}`).toBeLessThan(TOL);
      ws2.release();
    }
    adapter.release();
    model.release();
  });

  it('full fine-tuning: the gradient of every weight (conv taps, in_proj, layernorms, w1/w3/w2) vs finite differences', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(config, weights)));
    const ids = [randomIds(rng, 10), randomIds(rng, 10)];
    const batch = batchOf(ids, ids);
    const trainable = makeTrainable(model, [0, 1, 2], false);
    expect(trainable.map((t) => t.name)).toContain('model.layers.0.conv.conv.weight');
    for (const t of trainable) gpu.zero(t.grad);
    const ws = new Workspace(model, 2, 10, true);
    ws.load(batch);
    forwardBackward(ws, { backward: true, gradScale: 1 / batch.valid });
    const loss = (w: Map<string, ArrayLike<number>>) => refCausalLoss(refLogits(config, w, ids), ids, V);
    const h = 1e-4;
    for (const t of trainable) {
      const g = await gpu.readF32(t.grad);
      const base = Float64Array.from(weights.get(t.name)!);
      let arg = 0;
      for (let i = 1; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[arg]!)) arg = i;
      const dir = Float64Array.from({ length: g.length }, () => rng.normal());
      const units = [Float64Array.from({ length: g.length }, (_, i) => (i === arg ? 1 : 0)), dir];
      const got = units.map((u) => g.reduce((a, v, i) => a + v * u[i]!, 0));
      const want = units.map((u) => {
        const along = (eps: number) => loss(new Map<string, ArrayLike<number>>(weights).set(t.name, base.map((v, i) => v + eps * u[i]!)));
        return (along(h) - along(-h)) / (2 * h);
      });
      expect(relErr(got, want), `gradient of ${t.name}: ${got} vs ${want} ${at}`).toBeLessThan(1e-3);
    }
    ws.release();
    model.release();
  });

  it('packed sequences (neat_packing) each see only themselves; the activation table is what a workspace allocates', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(config, weights)));
    const { dir, lora } = writeAdapter(rng);
    const adapter = await Adapter.load(model, readFileSync(join(dir, 'adapter_config.json'), 'utf8'), await fileSource(join(dir, 'adapter_model.safetensors')));
    const seqs = [randomIds(rng, 7), randomIds(rng, 9), randomIds(rng, 9), randomIds(rng, 7)];
    const ids = Int32Array.from(seqs.flat());
    const positions = Int32Array.from(seqs.flatMap((q) => q.map((_, i) => i)));
    const segments = Int32Array.from(seqs.flatMap((q, i) => q.map(() => 1 + (i % 2))));
    const batch: Batch = { B: 2, S: 16, ids, labels: new Int32Array(32).fill(-100), positions, segments };
    for (const recompute of [false, true]) {
      const ws = new Workspace(model, 2, 16, recompute, true);
      ws.load(batch);
      const out = gpu.tensor([32, V]);
      fullLogits(ws, out);
      const got = await gpu.readF32(out);
      gpu.release(out);
      const want = seqs.flatMap((q) => [...refLogits(config, weights, [q], lora)]);
      expect(relErr(got, want), `packed logits${recompute ? ', recomputed' : ''} ${at}`).toBeLessThan(TOL);
      forwardBackward(ws, { backward: true, gradScale: 1 });
      await gpu.sync();
      const table = activationBytes(model.spec, { B: 2, S: 16, recompute, packed: true, lora: loraSitesByMixer(model.layers) });
      const grown = gpu.allocated;
      const ws2 = new Workspace(model, 2, 16, recompute, true);
      ws2.load(batch);
      forwardBackward(ws2, { backward: true, gradScale: 1 });
      await gpu.sync();
      expect(gpu.allocated - grown, `workspace bytes${recompute ? ', recomputed' : ''}`).toBe(table.total - table.lossChunk);
      ws2.release();
      expect(gpu.allocated, 'release() frees every buffer the workspace allocated').toBe(grown);
      ws.release();
    }
    adapter.release();
    model.release();
  });

  it('prefill in chunks and decode with the conv state equal one full forward: logits, greedy tokens, prefix reuse', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(config, weights)));
    const seq = randomIds(rng, 30);
    const want = refLogits(config, weights, [seq]);
    const cache = allocKVCache(model, 64);
    for (const [t0, t1] of [[0, 1], [1, 12], [12, 13], [13, 14], [14, 28], [28, 29], [29, 30]] as const) {
      const L = t1 - t0;
      const ws = new Workspace(model, 1, L, true);
      ws.load({ B: 1, S: L, ids: Int32Array.from(seq.slice(t0, t1)), labels: new Int32Array(L).fill(-100), positions: Int32Array.from({ length: L }, (_, j) => t0 + j) });
      forwardCached(ws, cache);
      const out = gpu.tensor([L, V]);
      logitsForRows(gpu, ws.final, model.lmHead.weight, out, {});
      expect(relErr(await gpu.readF32(out), want.subarray(t0 * V, t1 * V)), `cached logits of tokens ${t0}..${t1 - 1} ${at}`).toBeLessThan(TOL);
      gpu.release(out);
      ws.release();
    }
    gpu.release(...cacheTensors(cache));

    const greedy = (prompt: number[], n: number): number[] => {
      const s = [...prompt];
      for (let i = 0; i < n; i++) {
        const z = refLogits(config, weights, [s]).subarray((s.length - 1) * V, s.length * V);
        let best = 0;
        for (let j = 1; j < V; j++) if (z[j]! > z[best]!) best = j;
        s.push(best);
      }
      return s.slice(prompt.length);
    };
    const gen = new Generator(model, 64);
    const run = async (prompt: number[], n: number) => {
      const out: number[] = [];
      for await (const id of gen.generate(prompt, { maxNewTokens: n, temperature: 0, stopIds: [] })) out.push(id);
      return out;
    };
    const prompt = randomIds(rng, 12);
    const first = await run(prompt, 6);
    expect(first, `greedy tokens ${at}`).toEqual(greedy(prompt, 6));
    const turn = [...prompt, ...first, ...randomIds(rng, 3)];
    expect(await run(turn, 4), `second turn (the state reused) ${at}`).toEqual(greedy(turn, 4));
    const other = [...prompt.slice(0, 5), ...randomIds(rng, 4)];
    expect(await run(other, 4), `diverging prompt (the state restarted) ${at}`).toEqual(greedy(other, 4));
    gen.release();
    model.release();
  });

  it('an engine-made adapter is saved under PEFT names and merges; the memory estimate counts its parameters; LLaMA Pro expansion', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const params0 = refParameters(config);
    const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
    const p = countParams(specFromConfig(config));
    const qkNorms = params0.filter(([n]) => /[qk]_layernorm/.test(n)).reduce((a, [, sh]) => a + size(sh), 0);
    expect(p.linear + p.embed + p.head + p.norms + qkNorms).toBe(params0.reduce((a, [, sh]) => a + size(sh), 0));
    const kinds = refLinearModules(config);
    const linearParams = params0.filter(([n]) => kinds.includes(n.split('.').at(-2)!));
    const loraSize = linearParams.reduce((a, [, [N, K]]) => a + RANK * (N! + K!), 0);
    expect(estimateMemory(config, { finetuning_type: 'lora', lora_rank: RANK, lora_target: 'all', per_device_train_batch_size: 1, cutoff_len: 16 }).trainable).toBe(loraSize);

    const weights = synthesize(rng);
    const base = writeCheckpoint(config, weights);
    const model = await Model.load(gpu, dirFiles(base));
    const fresh = await Adapter.create(model, { rank: RANK, alpha: ALPHA, targets: 'all' }, rng.next);
    const params = fresh.params();
    const keys = linearParams.map(([n]) => n).flatMap((n) => ['A', 'B'].map((w) => `base_model.model.${n.replace(/\.weight$/, '')}.lora_${w}.weight`));
    expect(params.map((q) => q.name).sort()).toEqual(keys.sort());
    expect(new Set(JSON.parse(fresh.configJson(null)).target_modules)).toEqual(new Set(kinds));
    const lora: RefLora = new Map();
    for (const q of params) {
      const values = q.name.includes('lora_B') ? rng.randn(q.value.shape[0]! * q.value.shape[1]!, 0.05) : await gpu.readF32(q.value);
      if (q.name.includes('lora_B')) gpu.write(q.value, values);
      const mod = q.name.replace(/^base_model\.model\./, '').replace(/\.lora_[AB]\.weight$/, '');
      const e = lora.get(mod) ?? { A: [], B: [], r: RANK, scaling: ALPHA / RANK };
      lora.set(mod, { ...e, [q.name.includes('lora_A') ? 'A' : 'B']: values });
    }
    const dir = mkdtempSync(join(tmpdir(), 'lfm2-trained-'));
    writeFileSync(join(dir, 'adapter_model.safetensors'), await fresh.safetensors());
    writeFileSync(join(dir, 'adapter_config.json'), fresh.configJson(null));
    fresh.release();
    model.release();

    const ids = [randomIds(rng, 12)];
    const batch = batchOf(ids, ids);
    const out = mkdtempSync(join(tmpdir(), 'lfm2-merged-'));
    await exportModel(configFromObject({ model_name_or_path: base, adapter_name_or_path: dir, export_dir: out }).config, {});
    const merged = await Model.load(gpu, dirFiles(out));
    expect(relErr(await engineLogits(gpu, merged, batch), refLogits(config, weights, ids, lora)), `merged model ${at}`).toBeLessThan(TOL);
    merged.release();

    // LLaMA Pro: a copy after each layer with out_proj and w2 zero computes the same
    const expanded = mkdtempSync(join(tmpdir(), 'lfm2-expanded-'));
    await expandBlocks(dirFiles(base), 3, async (f, data) => writeFileSync(join(expanded, f), data), { maxBytes: 5e9 });
    const pro = await Model.load(gpu, dirFiles(expanded));
    expect(pro.layers.map((l) => l.mixer)).toEqual(['shortConv', 'shortConv', 'attention', 'attention', 'shortConv', 'shortConv']);
    expect(relErr(await engineLogits(gpu, pro, batch), refLogits(config, weights, ids)), `expanded model ${at}`).toBeLessThan(TOL);
    pro.release();
    // the bench's random checkpoint of the same config loads (names and shapes as transformers has them)
    const synthetic = await Model.load(gpu, syntheticModelFiles(config));
    expect(synthetic.modules().map((m) => m.name).sort()).toEqual(linearParams.map(([n]) => n.replace(/\.weight$/, '')).sort());
    synthetic.release();
  });
});
