// Granite 4.0 H (dense) in the engine against the independent f64 reference (tests/reference/
// granite.ts, with the SSD of tests/reference/ssd.ts and the conv of conv1d.ts) on a tiny synthetic
// checkpoint (tests/fixtures/synthetic/granite4_h: a Mamba-2 layer with two B/C groups, then a NoPE
// attention layer; Granite's multipliers), until gen_new_archs.py's transformers-made fixture
// exists. Random weights under the HF names come from a seeded RNG (SEED=... replays).
// Checked: the spec from config.json (and the refusal of the MoE variants); logits and loss, base and
// with a PEFT LoRA on every linear module (recomputed layers), across SSD chunks; LoRA gradients and
// full fine-tuning gradients of the Mamba parameters against central differences of the reference
// loss; packed sequences (neat_packing) each as if alone; prefill + decode with the recurrent state equal to one full forward (logits and greedy
// tokens); an engine-made adapter saved under PEFT's names, and its merge. Once the GPU server has
// run gen_new_archs.py into tests/fixtures/models (granite4_h, granite4_h_long), the same parity
// steps as the other architectures run against transformers + PEFT; until then they are skipped.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { expandBlocks } from '../src/export/block-expansion';
import { exportModel } from '../src/engine/export-node';
import { logitsForRows } from '../src/kernels/loss';
import { activationBytes, loraSitesByMixer } from '../src/model/activations';
import { Adapter } from '../src/model/adapter';
import { dequantizeWeight } from '../src/model/dequant';
import { dirFiles, fileSource } from '../src/model/files-node';
import { allocKVCache, cacheTensors, forwardBackward, forwardCached, fullLogits, Workspace, type Batch } from '../src/model/forward';
import { Generator } from '../src/model/generate';
import { Model } from '../src/model/model';
import { encodeSafetensors } from '../src/model/safetensors';
import { parseHfConfig } from '../src/model/hf-config';
import { specFromConfig } from '../src/model/spec';
import { countParams, estimateMemory } from '../src/ui/lib/estimate';
import { syntheticModelFiles } from '../src/bench/synthetic';
import { makeTrainable } from '../src/model/trainable';
import { makeRng, relErr, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { batchOf, engineLogits, writeRefAdapter } from './helpers/ref-model';
import { loraParity, ROOT } from './helpers/parity';
import { refGraniteLinearModules, refGraniteLogits, refGraniteParameters } from './reference/granite';
import type { RefLora } from './reference/transformer';

type Json = Record<string, unknown>;
const config = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/synthetic/granite4_h/config.json'), 'utf8')) as Json;
const V = Number(config.vocab_size);
const TOL = 1e-4;
const RANK = 4, ALPHA = 8;

/** Weights of every parameter transformers creates, around the values a trained model has. */
function synthesize(rng: Rng): Map<string, Float32Array> {
  const w = new Map<string, Float32Array>();
  for (const [name, shape] of refGraniteParameters(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let v: Float32Array;
    if (name.endsWith('A_log')) v = rng.uniform(n, -1, 1.5);
    else if (name.endsWith('dt_bias')) v = rng.randn(n, 0.5);
    else if (name.endsWith('mamba.D')) v = rng.uniform(n, 0.5, 1.5);
    else if (name.endsWith('norm.weight')) v = rng.uniform(n, 0.8, 1.2);
    else if (name.endsWith('conv1d.weight')) v = rng.randn(n, 0.5);
    else if (name.endsWith('conv1d.bias')) v = rng.randn(n, 0.2);
    else if (name === 'model.embed_tokens.weight') v = rng.randn(n, 0.1);
    else v = rng.randn(n, (/q_proj|k_proj/.test(name) ? 4 : 1) / Math.sqrt(shape[1]!));
    w.set(name, v);
  }
  return w;
}

/** A checkpoint folder: config.json (as given, or the synthetic one) and the weights. */
function writeCheckpoint(weights: Map<string, Float32Array>, configText = JSON.stringify(config, null, 2)): string {
  const dir = mkdtempSync(join(tmpdir(), 'granite4-'));
  const shapes = new Map(refGraniteParameters(config));
  writeFileSync(join(dir, 'config.json'), configText);
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(
    Object.fromEntries([...weights].map(([n, data]) => [n, { dtype: 'F32' as const, shape: shapes.get(n)!, data }])), { format: 'pt' },
  ));
  return dir;
}

const randomIds = (rng: Rng, n: number) => Array.from({ length: n }, () => 3 + Math.floor(rng.next() * (V - 3)));

/** HF's causal-LM loss (mean over the shifted labels) from reference logits. */
function refLoss(logits: ArrayLike<number>, labels: number[][]): number {
  let sum = 0, n = 0;
  const S = labels[0]!.length;
  labels.forEach((row, b) => {
    for (let t = 0; t + 1 < S; t++) {
      const target = row[t + 1]!;
      if (target === -100) continue;
      const o = (b * S + t) * V;
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[o + v]!);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[o + v]! - max);
      sum += Math.log(z) + max - logits[o + target]!;
      n++;
    }
  });
  return sum / n;
}

/** A PEFT adapter on every linear module (B ~ N(0, 0.05²) so it shows), written as PEFT saves it. */
const writeAdapter = (rng: Rng) => writeRefAdapter(refGraniteParameters(config), refGraniteLinearModules(config), rng, { rank: RANK, alpha: ALPHA });

/** Engine gradient vs central differences of `loss` along its largest element and a random direction. */
function gradientError(g: Float32Array, base: ArrayLike<number>, loss: (v: Float64Array) => number, rng: Rng, h = 1e-4): { got: number[]; want: number[] } {
  let arg = 0;
  for (let i = 1; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[arg]!)) arg = i;
  const dir = Float64Array.from({ length: g.length }, () => rng.normal());
  const units = [Float64Array.from({ length: g.length }, (_, i) => (i === arg ? 1 : 0)), dir];
  const got = units.map((u) => g.reduce((a, v, i) => a + v * u[i]!, 0));
  const want = units.map((u) => {
    const along = (eps: number) => loss(Float64Array.from(base, (v, i) => v + eps * u[i]!));
    return (along(h) - along(-h)) / (2 * h);
  });
  return { got, want };
}

describe('Granite 4.0 H spec', () => {
  it('reads the Mamba-2 shape, the layer kinds, NoPE and the multipliers; refuses the MoE variants', () => {
    const s = specFromConfig(config);
    expect(s.arch).toBe('granitemoehybrid');
    expect(s.layers.map((l) => l.mixer)).toEqual(['mamba', 'attention']);
    expect(s.mamba).toEqual({ heads: 4, headDim: 16, groups: 2, stateDim: 8, convKernel: 4, convBias: true, projBias: false, dtMin: 0, dtMax: Infinity });
    expect([s.embedScale, s.attnScale, s.residualScale, s.logitsScale, s.intermediate, s.sharedMlp]).toEqual([12, 0.0625, 0.22, 8, 64, true]);
    expect(s.layers[1]!.rope.partialRotaryFactor).toBe(0);
    expect(specFromConfig({ ...config, position_embedding_type: 'rope' }).layers[1]!.rope.partialRotaryFactor).toBe(1);
    expect(() => specFromConfig({ ...config, num_local_experts: 62 })).toThrow(/Granite 4 with experts \(num_local_experts 62: granite-4.0-h-tiny, h-small\) is not supported/);
    const { num_local_experts: _, ...moeByDefault } = config;
    expect(() => specFromConfig(moeByDefault)).toThrow(/num_local_experts 8/);
    expect(() => specFromConfig({ ...config, layer_types: ['mamba', 'linear_attention'] })).toThrow(/layer_types\[1\] "linear_attention" is not a layer type/);
    expect(() => specFromConfig({ ...config, mamba_d_head: 12 })).toThrow(/mamba_n_heads 4 x mamba_d_head 12 must equal mamba_expand x hidden_size = 64/);
  });

  it("reads config.json's Python constants (time_step_limit [0.0, Infinity]) and leaves strings alone", () => {
    const parsed = parseHfConfig('{"time_step_limit": [0.0, Infinity], "x": -Infinity, "y": NaN, "name": "Infinity \\" NaN"}', 'config.json');
    expect(parsed).toEqual({ time_step_limit: [0, 'Infinity'], x: '-Infinity', y: 'NaN', name: 'Infinity " NaN' });
    expect(specFromConfig({ ...config, time_step_limit: parsed.time_step_limit }).mamba!.dtMax).toBe(Infinity);
    expect(() => parseHfConfig('{"a": Infinit}', 'dir/config.json')).toThrow(/not valid JSON/);
  });
});

describe('Granite 4.0 H outside the engine', () => {
  it("the bench's synthetic checkpoint has every tensor the model loads", async () => {
    const model = await Model.load(await testGpu(), syntheticModelFiles(config));
    const linear = refGraniteParameters(config).filter(([n, s]) => s.length === 2 && refGraniteLinearModules(config).includes(n.split('.').at(-2)!));
    expect(model.modules().map((m) => m.name)).toEqual(linear.map(([n]) => n.replace(/\.weight$/, '')));
    expect(model.params().map((p) => p.name).sort()).toEqual(refGraniteParameters(config).map(([n]) => n).filter((n) => !linear.some(([l]) => l === n)).sort());
    model.release();
  });

  it('the memory estimate counts its parameters and LoRA tensors', () => {
    const params = refGraniteParameters(config);
    const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
    const p = countParams(specFromConfig(config));
    expect(p.linear + p.embed + p.head + p.norms).toBe(params.reduce((a, [, s]) => a + size(s), 0));
    const linear = params.filter(([n, s]) => s.length === 2 && refGraniteLinearModules(config).includes(n.split('.').at(-2)!));
    const lora = linear.reduce((a, [, [N, K]]) => a + RANK * (N! + K!), 0);
    expect(estimateMemory(config, { finetuning_type: 'lora', lora_rank: RANK, lora_target: 'all', per_device_train_batch_size: 1, cutoff_len: 16 }).trainable).toBe(lora);
  });
});

describe('Granite 4.0 H reference case', () => {
  it('exercises each feature: switching one off moves the reference logits by > 10x the tolerance', () => {
    const rng = makeRng();
    const weights = synthesize(rng);
    const ids = [randomIds(rng, 12)];
    const base = refGraniteLogits(config, weights, ids);
    const zeroed = (name: string) => new Map<string, ArrayLike<number>>(weights).set(name, new Float32Array(weights.get(name)!.length));
    const { ['model.layers.0.mamba.conv1d.bias']: _, ...noConvBias } = Object.fromEntries(weights);
    const variants: [string, Json, Map<string, ArrayLike<number>>][] = [
      ['embedding_multiplier', { ...config, embedding_multiplier: 1 }, weights],
      ['attention_multiplier', { ...config, attention_multiplier: 0.25 }, weights],
      ['residual_multiplier', { ...config, residual_multiplier: 1 }, weights],
      ['logits_scaling', { ...config, logits_scaling: 1 }, weights],
      ['conv1d.bias', { ...config, mamba_conv_bias: false }, new Map(Object.entries(noConvBias))],
      ['D', config, zeroed('model.layers.0.mamba.D')],
      ['dt_bias', config, zeroed('model.layers.0.mamba.dt_bias')],
      ['rope', { ...config, position_embedding_type: 'rope' }, weights],
    ];
    for (const [what, cfg, w] of variants) {
      expect(relErr(refGraniteLogits(cfg, w, ids), base), `${what} (SEED=${rng.seed})`).toBeGreaterThan(10 * TOL);
    }
  });
});

describe('Granite 4.0 H in the engine vs the f64 reference', () => {
  it('logits and loss, base and with LoRA on every linear module (recomputed); LoRA gradients vs finite differences', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(weights)));
    expect(model.moduleKinds()).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'in_proj', 'out_proj', 'input_linear', 'output_linear']);
    const [B, S] = [2, 13];
    const ids = [randomIds(rng, S), randomIds(rng, S)];
    const labels = ids.map((r) => [...r]);
    for (let t = 0; t < 4; t++) labels[0]![t] = -100;
    const batch = batchOf(ids, labels);

    const ref = refGraniteLogits(config, weights, ids);
    expect(relErr(await engineLogits(gpu, model, batch), ref), `base logits ${at}`).toBeLessThan(TOL);
    const ws = new Workspace(model, B, S, false);
    ws.load(batch);
    forwardBackward(ws, { backward: false, gradScale: 1 / batch.valid });
    const loss = (await gpu.readF32(ws.loss)).reduce((a, b) => a + b, 0) / batch.valid;
    expect(Math.abs(loss - refLoss(ref, labels)) / refLoss(ref, labels), `base loss ${at}`).toBeLessThan(TOL);
    ws.release();

    // a value head (reward models) reads the final hidden state undivided by logits_scaling
    const wsHead = new Workspace(model, B, S, false);
    wsHead.load(batch);
    forwardBackward(wsHead, { backward: true, gradScale: 1, head: (dFinal) => gpu.zero(dFinal) });
    const hidden = await gpu.readF32(wsHead.final), E = weights.get('model.embed_tokens.weight')!, D = Number(config.hidden_size);
    const headLogits = Float64Array.from({ length: B * S * V }, (_, i) => {
      const t = Math.floor(i / V), v = i % V;
      let z = 0;
      for (let d = 0; d < D; d++) z += hidden[t * D + d]! * E[v * D + d]!;
      return z / Number(config.logits_scaling);
    });
    expect(relErr(headLogits, ref), `final hidden state under a value head ${at}`).toBeLessThan(TOL);
    wsHead.release();

    // position_embedding_type "rope" (transformers 5 writes rope_parameters)
    const roped = { ...config, position_embedding_type: 'rope', rope_parameters: { rope_type: 'default', rope_theta: 10000 } };
    const ropeModel = await Model.load(gpu, dirFiles(writeCheckpoint(weights, JSON.stringify(roped))));
    expect(relErr(await engineLogits(gpu, ropeModel, batch), refGraniteLogits(roped, weights, ids)), `rope logits ${at}`).toBeLessThan(TOL);
    ropeModel.release();

    // time_step_limit as transformers writes it (Python's Infinity), and a clamp that holds some steps
    for (const limit of ['[0.0, Infinity]', '[0.4, 1.1]']) {
      const text = JSON.stringify({ ...config, time_step_limit: 'LIMIT' }).replace('"LIMIT"', limit);
      const limited = await Model.load(gpu, dirFiles(writeCheckpoint(weights, text)));
      const want = refGraniteLogits({ ...config, time_step_limit: limit.includes('Infinity') ? [0, Infinity] : [0.4, 1.1] }, weights, ids);
      expect(relErr(await engineLogits(gpu, limited, batch), want), `logits with time_step_limit ${limit} ${at}`).toBeLessThan(TOL);
      limited.release();
    }

    // longer than one engine SSD chunk (64 tokens) and many of the reference's (8)
    const long = [randomIds(rng, 75)];
    expect(relErr(await engineLogits(gpu, model, batchOf(long, long)), refGraniteLogits(config, weights, long)), `75-token logits ${at}`).toBeLessThan(TOL);

    const { dir, lora } = writeAdapter(rng);
    const adapter = await Adapter.load(model, readFileSync(join(dir, 'adapter_config.json'), 'utf8'), await fileSource(join(dir, 'adapter_model.safetensors')));
    const refL = refGraniteLogits(config, weights, ids, lora);
    expect(relErr(await engineLogits(gpu, model, batch, true), refL), `LoRA logits ${at}`).toBeLessThan(TOL);
    const params = adapter.params();
    expect(params.length).toBe(2 * lora.size);
    for (const p of params) gpu.zero(p.grad);
    const ws2 = new Workspace(model, B, S, true);
    ws2.load(batch);
    forwardBackward(ws2, { backward: true, gradScale: 1 / batch.valid });
    const lossL = (await gpu.readF32(ws2.loss)).reduce((a, b) => a + b, 0) / batch.valid;
    expect(Math.abs(lossL - refLoss(refL, labels)) / refLoss(refL, labels), `LoRA loss ${at}`).toBeLessThan(TOL);
    for (const p of params) {
      const m = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(p.name)!;
      const mod = lora.get(m[1]!)!, which = m[2] as 'A' | 'B';
      const { got, want } = gradientError(await gpu.readF32(p.grad), mod[which],
        (v) => refLoss(refGraniteLogits(config, weights, ids, new Map(lora).set(m[1]!, { ...mod, [which]: v })), labels), rng);
      expect(relErr(got, want), `gradient of ${p.name}: ${got} vs ${want} ${at}`).toBeLessThan(1e-3);
    }
    ws2.release();

    // the activation table (the app's estimate and the recompute choice) is what a workspace allocates
    for (const recompute of [false, true]) {
      const table = activationBytes(model.spec, { B, S, recompute, lora: loraSitesByMixer(model.layers) });
      const before = gpu.allocated;
      const w = new Workspace(model, B, S, recompute);
      w.load(batch);
      forwardBackward(w, { backward: true, gradScale: 1 / batch.valid });
      await gpu.sync();
      expect(gpu.allocated - before, `workspace bytes${recompute ? ', recomputed' : ''}`).toBe(table.total - table.lossChunk);
      w.release();
    }
    adapter.release();
    model.release();
  });

  it('QLoRA: a 4- and 8-bit base with an adapter computes the model of its dequantized weights', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const base = writeCheckpoint(weights);
    const { dir, lora } = writeAdapter(rng);
    const ids = [randomIds(rng, 11), randomIds(rng, 11)];
    for (const format of ['q4', 'q8'] as const) {
      const model = await Model.load(gpu, dirFiles(base), { format });
      const dequantized = new Map<string, ArrayLike<number>>(weights);
      for (const s of model.sites()) dequantized.set(`${s.name}.weight`, await dequantizeWeight(gpu, s.weight, s.outFeatures, s.inFeatures));
      const adapter = await Adapter.load(model, readFileSync(join(dir, 'adapter_config.json'), 'utf8'), await fileSource(join(dir, 'adapter_model.safetensors')));
      const got = await engineLogits(gpu, model, batchOf(ids, ids), true);
      expect(relErr(got, refGraniteLogits(config, dequantized, ids, lora)), `${format} logits ${at}`).toBeLessThan(TOL);
      adapter.release();
      model.release();
    }
  });

  it('full fine-tuning: the gradients of the Mamba layer\'s conv, bias, A_log, dt_bias, D and gated norm vs finite differences', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(weights)));
    const ids = [randomIds(rng, 10), randomIds(rng, 10)];
    const batch = batchOf(ids, ids);
    const trainable = makeTrainable(model, [0], false);
    const mambaParams = trainable.map((t) => t.name).filter((n) => n.includes('.mamba.') && !n.includes('_proj'));
    expect(mambaParams.sort()).toEqual(['A_log', 'D', 'conv1d.bias', 'conv1d.weight', 'dt_bias', 'norm.weight'].map((n) => `model.layers.0.mamba.${n}`));
    for (const t of trainable) gpu.zero(t.grad);
    const ws = new Workspace(model, 2, 10, false);
    ws.load(batch);
    forwardBackward(ws, { backward: true, gradScale: 1 / batch.valid });
    for (const t of trainable) {
      const { got, want } = gradientError(await gpu.readF32(t.grad), weights.get(t.name)!,
        (v) => refLoss(refGraniteLogits(config, new Map<string, ArrayLike<number>>(weights).set(t.name, v), ids), ids), rng);
      expect(relErr(got, want), `gradient of ${t.name}: ${got} vs ${want} ${at}`).toBeLessThan(1e-3);
    }
    ws.release();
    model.release();
  });

  it('packed sequences (neat_packing) each see only themselves: logits, loss and LoRA gradients, kept and recomputed', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(weights)));
    const { dir, lora } = writeAdapter(rng);
    const adapter = await Adapter.load(model, readFileSync(join(dir, 'adapter_config.json'), 'utf8'), await fileSource(join(dir, 'adapter_model.safetensors')));
    // two rows, each packing a 7- and a 9-token sequence; each token's target is the next one of its own sequence
    const seqs = [randomIds(rng, 7), randomIds(rng, 9), randomIds(rng, 9), randomIds(rng, 7)];
    const ids = Int32Array.from(seqs.flat());
    const positions = Int32Array.from(seqs.flatMap((q) => q.map((_, i) => i)));
    const segments = Int32Array.from(seqs.flatMap((q, i) => q.map(() => 1 + (i % 2))));
    const labels = Int32Array.from(seqs.flatMap((q) => q.map((_, i) => q[i + 1] ?? -100)));
    const valid = labels.filter((l) => l !== -100).length;
    const batch: Batch = { B: 2, S: 16, ids, labels, positions, segments };
    const packedLoss = (l: RefLora) => seqs.reduce((a, q) => a + refLoss(refGraniteLogits(config, weights, [q], l), [q]) * (q.length - 1), 0) / valid;
    const params = adapter.params();
    let first: Float32Array[] | null = null;
    for (const recompute of [false, true]) {
      const ws = new Workspace(model, 2, 16, recompute, true);
      ws.load(batch);
      const out = gpu.tensor([32, V]);
      fullLogits(ws, out);
      const want = seqs.flatMap((q) => [...refGraniteLogits(config, weights, [q], lora)]);
      expect(relErr(await gpu.readF32(out), want), `packed logits${recompute ? ', recomputed' : ''} ${at}`).toBeLessThan(TOL);
      gpu.release(out);
      for (const p of params) gpu.zero(p.grad);
      forwardBackward(ws, { backward: true, gradScale: 1 / valid });
      const loss = (await gpu.readF32(ws.loss)).reduce((a, b) => a + b, 0) / valid;
      expect(Math.abs(loss - packedLoss(lora)) / packedLoss(lora), `packed loss ${at}`).toBeLessThan(TOL);
      const grads = await Promise.all(params.map((p) => gpu.readF32(p.grad)));
      if (first) grads.forEach((g, i) => expect(relErr(g, first![i]!), `${params[i]!.name} recomputed`).toBeLessThan(1e-6));
      first = grads;
      ws.release();
    }
    // the Mamba modules' gradients against central differences of the per-sequence reference
    for (const [i, p] of params.entries()) {
      if (!p.name.includes('.mamba.')) continue;
      const m = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(p.name)!;
      const mod = lora.get(m[1]!)!, which = m[2] as 'A' | 'B';
      const { got, want } = gradientError(first![i]!, mod[which], (v) => packedLoss(new Map(lora).set(m[1]!, { ...mod, [which]: v })), rng);
      expect(relErr(got, want), `packed gradient of ${p.name}: ${got} vs ${want} ${at}`).toBeLessThan(1e-3);
    }
    adapter.release();
    model.release();
  });

  it('prefill in chunks and decode with the recurrent state equal one full forward: logits and greedy tokens', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(weights)));
    const seq = randomIds(rng, 75);
    const want = refGraniteLogits(config, weights, [seq]);
    const cache = allocKVCache(model, 128);
    for (const [t0, t1] of [[0, 64], [64, 70], [70, 71], [71, 72], [72, 75]] as const) {
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
        const z = refGraniteLogits(config, weights, [s]).subarray((s.length - 1) * V, s.length * V);
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
    const turn = [...prompt, ...first, ...randomIds(rng, 4)];
    expect(await run(turn, 4), `second turn ${at}`).toEqual(greedy(turn, 4));
    gen.release();
    model.release();
  });

  it('an engine-made adapter is saved under PEFT names and merges into a checkpoint that loads; LLaMA Pro expansion', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const base = writeCheckpoint(weights);
    const model = await Model.load(gpu, dirFiles(base));
    const fresh = await Adapter.create(model, { rank: RANK, alpha: ALPHA, targets: 'all' }, rng.next);
    const params = fresh.params();
    const kinds = refGraniteLinearModules(config);
    const keys = refGraniteParameters(config).map(([n]) => n).filter((n) => n.endsWith('.weight') && kinds.includes(n.split('.').at(-2)!))
      .flatMap((n) => ['A', 'B'].map((w) => `base_model.model.${n.replace(/\.weight$/, '')}.lora_${w}.weight`));
    expect(params.map((p) => p.name).sort()).toEqual(keys.sort());
    const lora: RefLora = new Map();
    for (const p of params) {
      const values = p.name.includes('lora_B') ? rng.randn(p.value.shape[0]! * p.value.shape[1]!, 0.05) : await gpu.readF32(p.value);
      if (p.name.includes('lora_B')) gpu.write(p.value, values);
      const mod = p.name.replace(/^base_model\.model\./, '').replace(/\.lora_[AB]\.weight$/, '');
      const e = lora.get(mod) ?? { A: [], B: [], r: RANK, scaling: ALPHA / RANK };
      lora.set(mod, { ...e, [p.name.includes('lora_A') ? 'A' : 'B']: values });
    }
    const dir = mkdtempSync(join(tmpdir(), 'granite4-trained-'));
    writeFileSync(join(dir, 'adapter_model.safetensors'), await fresh.safetensors());
    writeFileSync(join(dir, 'adapter_config.json'), fresh.configJson(null));
    fresh.release();
    model.release();

    const ids = [randomIds(rng, 12)];
    const out = mkdtempSync(join(tmpdir(), 'granite4-merged-'));
    await exportModel(configFromObject({ model_name_or_path: base, adapter_name_or_path: dir, export_dir: out }).config, {});
    const merged = await Model.load(gpu, dirFiles(out));
    expect(relErr(await engineLogits(gpu, merged, batchOf(ids, ids)), refGraniteLogits(config, weights, ids, lora)), `merged model ${at}`).toBeLessThan(TOL);
    merged.release();

    // LLaMA Pro: a zeroed copy after each layer (out_proj / o_proj and output_linear zero) computes the same
    const expanded = mkdtempSync(join(tmpdir(), 'granite4-expanded-'));
    await expandBlocks(dirFiles(base), 2, async (f, data) => writeFileSync(join(expanded, f), data), { maxBytes: 5e9 });
    const pro = await Model.load(gpu, dirFiles(expanded));
    expect(pro.layers.map((l) => l.mixer)).toEqual(['mamba', 'mamba', 'attention', 'attention']);
    expect(relErr(await engineLogits(gpu, pro, batchOf(ids, ids)), refGraniteLogits(config, weights, ids)), `expanded model ${at}`).toBeLessThan(TOL);
    pro.release();
  });
});

describe('Granite 4.0 H against transformers + PEFT (gen_new_archs.py fixtures)', () => {
  for (const name of ['granite4_h', 'granite4_h_long']) {
    it.skipIf(!existsSync(join(ROOT, name, 'case.json')))(`${name}: base logits and greedy tokens, LoRA loss and gradients, 5 AdamW steps, final adapter`,
      () => loraParity(name));
  }
});
