// Qwen3.5 text models in the engine against the independent f64 reference (tests/reference/
// transformer.ts, with the Gated DeltaNet of tests/reference/delta-rule.ts and conv1d.ts) on a tiny
// synthetic checkpoint (tests/fixtures/synthetic/qwen3_5_text: a linear-attention layer, then a gated
// full-attention layer), until gen_new_archs.py's transformers-made fixture exists. Random weights
// under the HF names are drawn from a seeded RNG (SEED=... replays) and written as model.safetensors.
// Checked: the spec read from config.json (and from a multimodal checkpoint's text_config);
// logits and HF's causal-LM loss, base and with a PEFT LoRA on every linear module (recomputed
// layers), across delta-rule chunks; LoRA gradients against central differences of the reference
// loss; prefill + decode with the recurrent state equal to one full forward (logits and greedy
// tokens, prefix reuse); an engine-made adapter saved under PEFT's names, and its merge.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { expandBlocks } from '../src/export/block-expansion';
import { exportModel } from '../src/engine/export-node';
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
import { syntheticModelFiles } from '../src/bench/synthetic';
import { countParams, estimateMemory } from '../src/ui/lib/estimate';
import { makeRng, relErr, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { batchOf, engineLogits, writeRefAdapter } from './helpers/ref-model';
import { refCausalLoss, refLinearModules, refLogits, refParameters, type RefLora } from './reference/transformer';

type Json = Record<string, unknown>;
const config = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/synthetic/qwen3_5_text/config.json'), 'utf8')) as Json;
const V = Number(config.vocab_size);
const TOL = 1e-4;
const RANK = 4, ALPHA = 8;

/** Weights of every parameter transformers creates, around the values a trained model has. */
function synthesize(rng: Rng): Map<string, Float32Array> {
  const w = new Map<string, Float32Array>();
  for (const [name, shape] of refParameters(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let v: Float32Array;
    if (name.endsWith('A_log')) v = rng.uniform(n, -1, 1);
    else if (name.endsWith('dt_bias')) v = rng.randn(n, 0.5);
    else if (name.endsWith('linear_attn.norm.weight')) v = rng.uniform(n, 0.8, 1.2); // RMSNormGated: plain w
    else if (name.endsWith('norm.weight')) v = rng.randn(n, 0.1); // zero-centred: (1 + w)
    else if (name.endsWith('conv1d.weight')) v = rng.randn(n, 0.5);
    else if (name === 'model.embed_tokens.weight') v = rng.randn(n, 0.3);
    else v = rng.randn(n, (/q_proj|k_proj/.test(name) ? 2.5 : 1) / Math.sqrt(shape[1]!));
    w.set(name, v);
  }
  return w;
}

/** A checkpoint folder: config.json and the weights, their names under `prefix` instead of "model". */
function writeCheckpoint(cfg: Json, weights: Map<string, Float32Array>, prefix = 'model'): string {
  const dir = mkdtempSync(join(tmpdir(), 'qwen3_5-'));
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

describe('Qwen3.5 spec', () => {
  it('reads layer kinds, the Gated DeltaNet dimensions, the gated attention and (1 + w) norms from the HF keys', () => {
    const s = specFromConfig(config);
    expect(s.arch).toBe('qwen3_5');
    expect(s.layers.map((l) => l.mixer)).toEqual(['deltaNet', 'attention']);
    expect(s.deltaNet).toEqual({ keyHeads: 1, valueHeads: 2, keyDim: 8, valueDim: 8, convKernel: 4 });
    expect([s.attnOutputGate, s.qkNorm, s.normOffset, s.tiedEmbeddings, s.textPrefix]).toEqual([true, true, 1, true, 'model']);
    expect(s.layers[1]!.rope.partialRotaryFactor).toBe(0.25);
    // without layer_types: every full_attention_interval-th layer is full attention
    const plain = specFromConfig({ ...config, layer_types: undefined, num_hidden_layers: 6, full_attention_interval: 3 });
    expect(plain.layers.map((l) => (l.mixer === 'deltaNet' ? 'L' : 'F')).join('')).toBe('LLFLLF');
    expect(() => specFromConfig({ ...config, layer_types: ['linear_attention', 'mamba'] })).toThrow(/layer_types\[1\] "mamba" is not a layer type of Qwen3_5ForCausalLM/);
  });

  it('reads a multimodal checkpoint\'s text_config, whose text model lives under model.language_model', () => {
    const s = specFromConfig({ architectures: ['Qwen3_5ForConditionalGeneration'], model_type: 'qwen3_5', text_config: { ...config, architectures: undefined } });
    expect(s.textPrefix).toBe('model.language_model');
    expect(s.layers.map((l) => l.mixer)).toEqual(['deltaNet', 'attention']);
    // keys the text config leaves out come from the top level
    const { tie_word_embeddings: _, ...untied } = config;
    const top = specFromConfig({ architectures: ['Qwen3_5ForConditionalGeneration'], tie_word_embeddings: true, text_config: untied });
    expect([top.tiedEmbeddings, top.hidden]).toEqual([true, 32]);
  });
});

describe('Qwen3.5 outside the engine', () => {
  it('the memory estimate counts its parameters and LoRA tensors; the bench\'s synthetic checkpoint loads', async () => {
    const params = refParameters(config);
    const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
    const p = countParams(specFromConfig(config));
    const qkNorms = params.filter(([n]) => /[qk]_norm/.test(n)).reduce((a, [, s]) => a + size(s), 0);
    expect(p.linear + p.embed + p.head + p.norms + qkNorms).toBe(params.reduce((a, [, s]) => a + size(s), 0));
    const linear = params.filter(([n]) => refLinearModules(config).includes(n.split('.').at(-2)!));
    const lora = linear.reduce((a, [, [N, K]]) => a + RANK * (N! + K!), 0);
    expect(estimateMemory(config, { finetuning_type: 'lora', lora_rank: RANK, lora_target: 'all', per_device_train_batch_size: 1, cutoff_len: 16 }).trainable).toBe(lora);
    const model = await Model.load(await testGpu(), syntheticModelFiles(config));
    expect(model.modules().map((m) => m.name)).toEqual(linear.map(([n]) => n.replace(/\.weight$/, '')));
    model.release();
  });
});

describe('Qwen3.5 in the engine vs the f64 reference', () => {
  it('logits and loss, base and with LoRA on every linear module (recomputed); LoRA gradients vs finite differences; lora_dropout', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(config, weights)));
    expect(model.moduleKinds()).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'in_proj_qkv', 'in_proj_z', 'in_proj_b', 'in_proj_a', 'out_proj', 'gate_proj', 'up_proj', 'down_proj']);
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

    // longer than one delta-rule chunk (64 tokens)
    const long = [randomIds(rng, 75)];
    expect(relErr(await engineLogits(gpu, model, batchOf(long, long)), refLogits(config, weights, long)), `75-token logits ${at}`).toBeLessThan(TOL);

    const { dir, lora } = writeAdapter(rng);
    const adapter = await Adapter.load(model, readFileSync(join(dir, 'adapter_config.json'), 'utf8'), await fileSource(join(dir, 'adapter_model.safetensors')));
    const refL = refLogits(config, weights, ids, lora);
    expect(relErr(await engineLogits(gpu, model, batch, true), refL), `LoRA logits ${at}`).toBeLessThan(TOL);
    const params = adapter.params();
    expect(params.length).toBe(2 * lora.size);
    for (const p of params) gpu.zero(p.grad);
    const ws2 = new Workspace(model, B, S, true);
    ws2.load(batch);
    forwardBackward(ws2, { backward: true, gradScale: 1 / batch.valid });
    const lossL = (await gpu.readF32(ws2.loss)).reduce((a, b) => a + b, 0) / batch.valid;
    const refLossL = refCausalLoss(refL, labels, V);
    expect(Math.abs(lossL - refLossL) / refLossL, `LoRA loss ${lossL} vs ${refLossL} ${at}`).toBeLessThan(TOL);
    const grads = new Map(await Promise.all(params.map(async (p) => [p.name, await gpu.readF32(p.grad)] as const)));
    const { worst, where } = worstGradient((l) => refCausalLoss(refLogits(config, weights, ids, l), labels, V), lora, params, grads, rng);
    expect(worst, `LoRA gradient ${where} vs finite differences ${at}`).toBeLessThan(TOL);
    ws2.release();

    // lora_dropout: recomputed layers see the forward's masks, on the Gated DeltaNet modules too
    const drop: LoraDropoutStep = { p: 0.3, seed: 7, step: 2, micro: 0 };
    const dropped = async (recompute: boolean): Promise<Float32Array[]> => {
      const w = new Workspace(model, B, S, recompute);
      w.load(batch);
      for (const p of params) gpu.zero(p.grad);
      forwardBackward(w, { backward: true, gradScale: 1 / batch.valid, loraDropout: drop });
      const out = await Promise.all(params.map((p) => gpu.readF32(p.grad)));
      w.release();
      return out;
    };
    const kept = await dropped(false), recomputed = await dropped(true);
    params.forEach((p, i) => {
      expect(relErr(recomputed[i]!, kept[i]!), `${p.name} with dropout, recomputed`).toBeLessThan(1e-6);
      expect(relErr(kept[i]!, grads.get(p.name)!), `${p.name}: dropout changes the gradient`).toBeGreaterThan(1e-3);
    });
    adapter.release();
    model.release();
  });

  it('full fine-tuning: the gradient of every weight of both layers (conv, gates, gated norm, gated q_proj) vs finite differences', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(config, weights)));
    const ids = [randomIds(rng, 10), randomIds(rng, 10)];
    const batch = batchOf(ids, ids);
    const trainable = makeTrainable(model, [0, 1], false);
    expect(trainable.map((t) => t.name).filter((n) => n.includes('linear_attn.') && !n.includes('_proj')).sort())
      .toEqual(['A_log', 'conv1d.weight', 'dt_bias', 'norm.weight'].map((n) => `model.layers.0.linear_attn.${n}`));
    for (const t of trainable) gpu.zero(t.grad);
    const ws = new Workspace(model, 2, 10, false);
    ws.load(batch);
    forwardBackward(ws, { backward: true, gradScale: 1 / batch.valid });
    const loss = (w: Map<string, ArrayLike<number>>) => refCausalLoss(refLogits(config, w, ids), ids, V);
    const h = 1e-4;
    for (const t of trainable) {
      const g = await gpu.readF32(t.grad);
      const base = Float64Array.from(weights.get(t.name)!);
      // the largest element and a random direction
      let arg = 0;
      for (let i = 1; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[arg]!)) arg = i;
      const dir = Float64Array.from({ length: g.length }, () => rng.normal());
      const units = [Float64Array.from({ length: g.length }, (_, i) => (i === arg ? 1 : 0)), dir];
      const got = units.map((u) => g.reduce((a, v, i) => a + v * u[i]!, 0));
      const want = units.map((u) => {
        const along = (eps: number) => loss(new Map<string, ArrayLike<number>>(weights).set(t.name, base.map((v, i) => v + eps * u[i]!)));
        return (along(h) - along(-h)) / (2 * h);
      });
      // a random direction sums a whole f32 gradient (in_proj_qkv's passes the chunked delta rule
      // and the conv): some seeds reach 3e-4 there, so 1e-3 here
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
    // two rows, each packing a 7- and a 9-token sequence
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
      // the kernels' scratch grew on the first pass; measure a second workspace
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

  it('prefill in chunks and decode with the recurrent state equal one full forward: logits, greedy tokens, prefix reuse', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(config, weights)));

    // logits of every position: prefill 64 + 6 tokens (the state carried across), then 5 single tokens
    const seq = randomIds(rng, 75);
    const want = refLogits(config, weights, [seq]);
    const cache = allocKVCache(model, 128);
    for (const [t0, t1] of [[0, 64], [64, 70], [70, 71], [71, 72], [72, 73], [73, 74], [74, 75]] as const) {
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

    // greedy generation against the reference's argmax, token by token
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
    const gen = new Generator(model, 128);
    const run = async (prompt: number[], n: number) => {
      const out: number[] = [];
      for await (const id of gen.generate(prompt, { maxNewTokens: n, temperature: 0, stopIds: [] })) out.push(id);
      return out;
    };
    const prompt = randomIds(rng, 20);
    const first = await run(prompt, 6);
    expect(first, `greedy tokens ${at}`).toEqual(greedy(prompt, 6));
    // the next turn extends the cached tokens: the state is reused
    const turn = [...prompt, ...first, ...randomIds(rng, 4)];
    expect(await run(turn, 4), `second turn ${at}`).toEqual(greedy(turn, 4));
    // beams would need the recurrent state per beam: refused by name
    await expect(gen.beamSearch(prompt, { maxNewTokens: 2, numBeams: 2, stopIds: [] })).rejects.toThrow(/beam search \(num_beams 2\) is not supported for models with recurrent layers \(Gated DeltaNet, Mamba-2, short convolution\)/);
    // a prompt that shares only part of the cache: the state starts again from zeros
    const other = [...prompt.slice(0, 10), ...randomIds(rng, 5)];
    expect(await run(other, 4), `diverging prompt ${at}`).toEqual(greedy(other, 4));
    // a stop token inside a decode burst (steps 3..6 are recorded together): the state ran past
    // it, so the next turn, which extends the answer and the stop, starts again from zeros
    let stopped = false;
    for (let attempt = 0; attempt < 8 && !stopped; attempt++) {
      const p = randomIds(rng, 12);
      const free = greedy(p, 7);
      const j = [3, 4, 5].find((i) => free.indexOf(free[i]!) === i);
      if (j === undefined) continue;
      const out: number[] = [];
      for await (const id of gen.generate(p, { maxNewTokens: 7, temperature: 0, stopIds: [free[j]!] })) out.push(id);
      expect(out, `stopped answer ${at}`).toEqual(free.slice(0, j));
      const next = [...p, ...out, free[j]!, ...randomIds(rng, 3)];
      expect(await run(next, 3), `turn after a stop inside a burst ${at}`).toEqual(greedy(next, 3));
      stopped = true;
    }
    expect(stopped, `no prompt gave a stop token inside a burst ${at}`).toBe(true);
    gen.release();
    model.release();
  });

  it('an engine-made adapter is saved under PEFT names and merges; a multimodal checkpoint loads its language_model; LLaMA Pro expansion', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const base = writeCheckpoint(config, weights);
    const model = await Model.load(gpu, dirFiles(base));
    const fresh = await Adapter.create(model, { rank: RANK, alpha: ALPHA, targets: 'all' }, rng.next);
    const params = fresh.params();
    const kinds = refLinearModules(config);
    const keys = refParameters(config).map(([n]) => n).filter((n) => n.endsWith('.weight') && kinds.includes(n.split('.').at(-2)!))
      .flatMap((n) => ['A', 'B'].map((w) => `base_model.model.${n.replace(/\.weight$/, '')}.lora_${w}.weight`));
    expect(params.map((p) => p.name).sort()).toEqual(keys.sort());
    expect(new Set(JSON.parse(fresh.configJson(null)).target_modules)).toEqual(new Set(kinds));
    // B values through the optimizer's tensors, as training would give them
    const lora: RefLora = new Map();
    for (const p of params) {
      const values = p.name.includes('lora_B') ? rng.randn(p.value.shape[0]! * p.value.shape[1]!, 0.05) : await gpu.readF32(p.value);
      if (p.name.includes('lora_B')) gpu.write(p.value, values);
      const mod = p.name.replace(/^base_model\.model\./, '').replace(/\.lora_[AB]\.weight$/, '');
      const e = lora.get(mod) ?? { A: [], B: [], r: RANK, scaling: ALPHA / RANK };
      lora.set(mod, { ...e, [p.name.includes('lora_A') ? 'A' : 'B']: values });
    }
    const dir = mkdtempSync(join(tmpdir(), 'qwen3_5-trained-'));
    writeFileSync(join(dir, 'adapter_model.safetensors'), await fresh.safetensors());
    writeFileSync(join(dir, 'adapter_config.json'), fresh.configJson(null));
    fresh.release();
    model.release();

    const ids = [randomIds(rng, 12)];
    const batch = batchOf(ids, ids);
    const want = refLogits(config, weights, ids, lora);
    const out = mkdtempSync(join(tmpdir(), 'qwen3_5-merged-'));
    await exportModel(configFromObject({ model_name_or_path: base, adapter_name_or_path: dir, export_dir: out }).config, {});
    const merged = await Model.load(gpu, dirFiles(out));
    expect(relErr(await engineLogits(gpu, merged, batch), want), `merged model ${at}`).toBeLessThan(TOL);
    merged.release();

    const mm = await Model.load(gpu, dirFiles(writeCheckpoint(
      { architectures: ['Qwen3_5ForConditionalGeneration'], model_type: 'qwen3_5', tie_word_embeddings: true, text_config: { ...config, architectures: undefined } },
      weights, 'model.language_model',
    )));
    expect(mm.modules()[0]!.name).toBe('model.language_model.layers.0.linear_attn.in_proj_qkv');
    expect(relErr(await engineLogits(gpu, mm, batch), refLogits(config, weights, ids)), `multimodal checkpoint ${at}`).toBeLessThan(TOL);
    mm.release();

    // LLaMA Pro: a zeroed copy after each layer (out_proj / o_proj and down_proj zero) computes the same
    const expanded = mkdtempSync(join(tmpdir(), 'qwen3_5-expanded-'));
    await expandBlocks(dirFiles(base), 2, async (f, data) => writeFileSync(join(expanded, f), data), { maxBytes: 5e9 });
    const pro = await Model.load(gpu, dirFiles(expanded));
    expect(pro.layers.map((l) => l.mixer)).toEqual(['deltaNet', 'deltaNet', 'attention', 'attention']);
    expect(relErr(await engineLogits(gpu, pro, batch), refLogits(config, weights, ids)), `expanded model ${at}`).toBeLessThan(TOL);
    pro.release();
  });
});
