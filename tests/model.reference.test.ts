// The engine against an independent f64 reference (tests/reference/transformer.ts, written from
// transformers' modeling code) for the architectures that have no transformers-made fixture: the
// Gemma family, Phi-3, llama3 rope scaling and SmolLM3 (tests/fixtures/models/generators/gen_fixtures.py
// defines them, but needs PyTorch). Each case is a synthetic tiny checkpoint: the generator's config
// in the form transformers 5 writes it (tests/fixtures/synthetic/<case>/config.json), random
// weights under HF names drawn here from a seeded RNG (SEED=... replays), written as
// model.safetensors. Checked: logits and HF's causal-LM loss, base and with a PEFT LoRA adapter on
// every linear module; the engine's LoRA gradients against central finite differences of the
// reference loss (a few elements and a random direction per tensor); that each case exercises the
// features it is meant to (switching one off in the config moves the reference logits well beyond
// the tolerance); and for Phi-3, that a PEFT adapter on the fused qkv_proj / gate_up_proj loads,
// trains with PEFT's shared lora_A, saves under PEFT's keys, and merges.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { exportModel } from '../src/engine/export-node';
import { Adapter, type TrainableTensor } from '../src/model/adapter';
import { dirFiles, fileSource } from '../src/model/files-node';
import { forwardBackward, fullLogits, shiftLabels, Workspace, type Batch } from '../src/model/forward';
import { Model } from '../src/model/model';
import { encodeSafetensors, openSafetensors, readF32 } from '../src/model/safetensors';
import type { Gpu } from '../src/gpu/runtime';
import { makeRng, relErr, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { refArch, refCausalLoss, refLinearModules, refLogits, refParameters, type RefLora, type RefWeights } from './reference/transformer';

type Json = Record<string, unknown>;
const SYN = join(import.meta.dirname, 'fixtures/synthetic');
const TOL = 1e-4;
const RANK = 4, ALPHA = 8;
const B = 2, S = 16;

interface Synthetic {
  name: string;
  dir: string;
  config: Json;
  weights: Map<string, Float32Array>;
  ids: number[][];
  labels: number[][];
  seed: number;
}

/**
 * Random weights with enough spread that every feature shows in the logits: linear weights
 * N(0, 1/fan_in) (q and k 2.5x larger, so attention scores reach the soft-cap's curved range),
 * embeddings and lm_head N(0, 0.3²), norms around their identity (w ~ 1 ± 0.1, Gemma's 1 + w with
 * w ~ ±0.1).
 */
function synthesize(name: string, rng: Rng): Synthetic {
  const config = JSON.parse(readFileSync(join(SYN, name, 'config.json'), 'utf8')) as Json;
  const gemma = refArch(config).name.startsWith('gemma');
  const weights = new Map<string, Float32Array>();
  for (const [n, shape] of refParameters(config)) {
    const size = shape.reduce((a, b) => a * b, 1);
    let w: Float32Array;
    if (n.endsWith('norm.weight')) w = Float32Array.from({ length: size }, () => (gemma ? 0 : 1) + 0.1 * rng.normal());
    else if (n.endsWith('.bias')) w = rng.randn(size, 0.1);
    else if (n === 'model.embed_tokens.weight' || n === 'lm_head.weight') w = rng.randn(size, 0.3);
    else {
      const gain = /q_proj|k_proj/.test(n) ? 2.5 : 1;
      w = rng.randn(size, gain / Math.sqrt(shape[1]!));
      if (n.includes('qkv_proj')) {
        // Phi-3: q and k rows get the same gain as the separate projections
        const qk = (refArch(config).heads + refArch(config).kvHeads) * refArch(config).headDim * shape[1]!;
        for (let i = 0; i < qk; i++) w[i]! *= 2.5;
      }
    }
    weights.set(n, w);
  }
  const dir = mkdtempSync(join(tmpdir(), `synthetic-${name}-`));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(
    Object.fromEntries([...weights].map(([n, data]) => [n, { dtype: 'F32' as const, shape: refParameters(config).find(([m]) => m === n)![1], data }])),
    { format: 'pt' },
  ));
  // as the generator's make_batch: ids in [3, V), some labels ignored
  const V = Number(config.vocab_size);
  const ids = Array.from({ length: B }, () => Array.from({ length: S }, () => 3 + Math.floor(rng.next() * (V - 3))));
  const labels = ids.map((row) => [...row]);
  for (let t = 0; t < 5; t++) labels[0]![t] = -100;
  for (let t = 0; t < 3; t++) labels[1]![t] = -100;
  labels[1]![S - 4] = -100;
  return { name, dir, config, weights, ids, labels, seed: rng.seed };
}

function batchOf(s: Synthetic): Batch & { valid: number } {
  const labels = shiftLabels(Int32Array.from(s.labels.flat()), B, S);
  return {
    B, S, ids: Int32Array.from(s.ids.flat()), labels,
    positions: Int32Array.from({ length: B * S }, (_, i) => i % S),
    valid: labels.filter((l) => l !== -100).length,
  };
}

/** A PEFT adapter on every linear module (PEFT's A init, B ~ N(0, 0.05²) as the generator), written as PEFT saves it. */
function makeAdapter(s: Synthetic, rng: Rng, rank = RANK): { dir: string; lora: RefLora } {
  const dir = mkdtempSync(join(tmpdir(), `adapter-${s.name}-`));
  const shapes = new Map(refParameters(s.config));
  const kinds = refLinearModules(s.config);
  const lora: RefLora = new Map();
  const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const [n, shape] of shapes) {
    const module = n.replace(/\.weight$/, '');
    if (!kinds.includes(module.split('.').pop()!) || !n.endsWith('.weight')) continue;
    const [N, K] = shape as [number, number];
    const A = rng.uniform(rank * K, -1 / Math.sqrt(K), 1 / Math.sqrt(K));
    const Bm = rng.randn(N * rank, 0.05);
    lora.set(module, { A, B: Bm, r: rank, scaling: ALPHA / rank });
    tensors[`base_model.model.${module}.lora_A.weight`] = { dtype: 'F32', shape: [rank, K], data: A };
    tensors[`base_model.model.${module}.lora_B.weight`] = { dtype: 'F32', shape: [N, rank], data: Bm };
  }
  writeFileSync(join(dir, 'adapter_model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: null, r: rank, lora_alpha: ALPHA, lora_dropout: 0.0,
    target_modules: kinds, bias: 'none', use_rslora: false, use_dora: false, fan_in_fan_out: false, init_lora_weights: true,
    inference_mode: true, modules_to_save: null, layers_to_transform: null, revision: null,
  }, null, 2));
  return { dir, lora };
}

/** fullLogits: HF's logits (Gemma 2's final soft-cap included). */
async function engineLogits(gpu: Gpu, model: Model, ws: Workspace): Promise<Float32Array> {
  const out = gpu.tensor([B * S, model.spec.vocab]);
  fullLogits(ws, out);
  const z = await gpu.readF32(out);
  gpu.release(out);
  return z;
}

async function engineLoss(gpu: Gpu, ws: Workspace, valid: number, backward: boolean): Promise<number> {
  forwardBackward(ws, { backward, gradScale: 1 / valid });
  return (await gpu.readF32(ws.loss)).reduce((a, b) => a + b, 0) / valid;
}

const weightsOf = (s: Synthetic): RefWeights => s.weights;

/**
 * Engine gradient of each trainable tensor against central differences of the reference loss: the
 * element with the largest gradient, two random elements and one random unit direction, as one
 * small vector per tensor (relative error over it).
 */
function checkGradients(s: Synthetic, lora: RefLora, params: TrainableTensor[], grads: Map<string, Float32Array>, rng: Rng): { worst: number; where: string } {
  const loss = (l: RefLora) => refCausalLoss(refLogits(s.config, weightsOf(s), s.ids, l), s.labels, Number(s.config.vocab_size));
  const h = 1e-4;
  let worst = 0, where = '';
  for (const p of params) {
    const m = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(p.name);
    if (!m) throw new Error(`unexpected trainable ${p.name}`);
    const mod = lora.get(m[1]!)!;
    const which = m[2] as 'A' | 'B';
    const g = grads.get(p.name)!;
    const base = Float64Array.from(mod[which]);
    const along = (u: Float64Array) => {
      const at = (eps: number) => {
        const t = base.map((v, i) => v + eps * u[i]!);
        return loss(new Map(lora).set(m[1]!, { ...mod, [which]: t }));
      };
      return (at(h) - at(-h)) / (2 * h);
    };
    let arg = 0;
    for (let i = 1; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[arg]!)) arg = i;
    const picks = [arg, Math.floor(rng.next() * g.length), Math.floor(rng.next() * g.length)];
    const got: number[] = [], want: number[] = [];
    for (const i of picks) {
      const u = new Float64Array(g.length);
      u[i] = 1;
      got.push(g[i]!);
      want.push(along(u));
    }
    const dir = Float64Array.from({ length: g.length }, () => rng.normal());
    const norm = Math.hypot(...dir);
    dir.forEach((v, i) => (dir[i] = v / norm));
    got.push(g.reduce((a, v, i) => a + v * dir[i]!, 0));
    want.push(along(dir));
    const err = relErr(got, want);
    if (err > worst) [worst, where] = [err, p.name];
  }
  return { worst, where };
}

const CASES = ['gemma', 'gemma2', 'gemma3', 'phi3', 'phi3_partial_window', 'llama_tied_rope3', 'smollm3'];

describe('engine vs the independent f64 reference (synthetic checkpoints)', () => {
  for (const name of CASES) {
    it(`${name}: logits and loss, base and with LoRA on every linear module; LoRA gradients vs finite differences`, async () => {
      const gpu = await testGpu();
      const rng = makeRng();
      const s = synthesize(name, rng);
      const at = `(${name}, SEED=${s.seed})`;
      const V = Number(s.config.vocab_size);
      const model = await Model.load(gpu, dirFiles(s.dir));
      const batch = batchOf(s);
      const ws = new Workspace(model, B, S, false);
      ws.load(batch);

      const ref = refLogits(s.config, s.weights, s.ids);
      const errLogits = relErr(await engineLogits(gpu, model, ws), ref);
      expect(errLogits, `base logits ${at}`).toBeLessThan(TOL);
      const refLoss = refCausalLoss(ref, s.labels, V);
      const loss = await engineLoss(gpu, ws, batch.valid, false);
      expect(Math.abs(loss - refLoss) / refLoss, `base loss ${loss} vs ${refLoss} ${at}`).toBeLessThan(TOL);

      const { dir, lora } = makeAdapter(s, rng);
      const adapter = await Adapter.load(model, readFileSync(join(dir, 'adapter_config.json'), 'utf8'), await fileSource(join(dir, 'adapter_model.safetensors')));
      const ws2 = new Workspace(model, B, S, true);
      ws2.load(batch);
      const refL = refLogits(s.config, s.weights, s.ids, lora);
      expect(relErr(await engineLogits(gpu, model, ws2), refL), `LoRA logits ${at}`).toBeLessThan(TOL);
      const params = adapter.params();
      expect(params.length).toBe(2 * lora.size);
      for (const p of params) gpu.zero(p.grad);
      const lossL = await engineLoss(gpu, ws2, batch.valid, true);
      const refLossL = refCausalLoss(refL, s.labels, V);
      expect(Math.abs(lossL - refLossL) / refLossL, `LoRA loss ${lossL} vs ${refLossL} ${at}`).toBeLessThan(TOL);
      const grads = new Map(await Promise.all(params.map(async (p) => [p.name, await gpu.readF32(p.grad)] as const)));
      const { worst, where } = checkGradients(s, lora, params, grads, rng);
      expect(worst, `LoRA gradient ${where} vs finite differences ${at}`).toBeLessThan(TOL);
      console.log(`${name}: logits ${errLogits.toExponential(1)}, LoRA gradients (worst ${where.replace('base_model.model.model.', '')}) ${worst.toExponential(1)}`);
      adapter.release();
      ws.release();
      ws2.release();
    });
  }

  it('each case exercises its features: switching one off in the config moves the reference logits by > 10x the tolerance', () => {
    const rng = makeRng();
    const off: [string, string, Json][] = [
      ['gemma', 'GeGLU (gelu_pytorch_tanh)', { hidden_act: 'silu' }],
      ['gemma2', 'attention soft-cap', { attn_logit_softcapping: null }],
      ['gemma2', 'final logit soft-cap', { final_logit_softcapping: null }],
      ['gemma2', 'sliding window on layer 0', { sliding_window: 1024 }],
      ['gemma3', 'rope_theta 1e6 on full-attention layers', { rope_parameters: { full_attention: { rope_theta: 10000.0, rope_type: 'default' }, sliding_attention: { rope_theta: 10000.0, rope_type: 'default' } } }],
      ['gemma3', 'rope_theta 1e4 on sliding layers', { rope_parameters: { full_attention: { rope_theta: 1e6, rope_type: 'default' }, sliding_attention: { rope_theta: 1e6, rope_type: 'default' } } }],
      ['gemma3', 'sliding window on layer 0', { sliding_window: 1024 }],
      ['phi3_partial_window', 'partial_rotary_factor 0.75', { rope_parameters: { partial_rotary_factor: 1.0, rope_theta: 10000.0, rope_type: 'default' } }],
      ['phi3_partial_window', 'sliding window', { sliding_window: null }],
      ['llama_tied_rope3', 'llama3 rope scaling', { rope_parameters: { rope_theta: 500000.0, rope_type: 'default' } }],
      ['smollm3', 'no rope on layer 1', { no_rope_layers: [1, 1] }],
    ];
    const made = new Map<string, Synthetic>();
    for (const [name, feature, change] of off) {
      const s = made.get(name) ?? synthesize(name, rng);
      made.set(name, s);
      const d = relErr(refLogits({ ...s.config, ...change }, s.weights, s.ids), refLogits(s.config, s.weights, s.ids));
      expect(d, `${name}: without ${feature} the logits move by only ${d.toExponential(1)} (SEED=${s.seed})`).toBeGreaterThan(10 * TOL);
    }
  });

  it('phi3: a fresh adapter has one lora_A per fused module (PEFT keys); save, reload and merge give the same logits', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const s = synthesize('phi3', rng);
    const at = `(SEED=${s.seed})`;
    const model = await Model.load(gpu, dirFiles(s.dir));
    expect(model.modules().map((m) => m.kind).slice(0, 4)).toEqual(['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj']);
    await expect(Adapter.create(model, { rank: RANK, alpha: ALPHA, targets: ['q_proj'] }, rng.next)).rejects.toThrow(/"q_proj" is not a linear layer of phi3; valid: all, qkv_proj/);

    // trained here: PEFT's tensors, with A shared by q/k/v (and by gate/up)
    const fresh = await Adapter.create(model, { rank: RANK, alpha: ALPHA, targets: 'all' }, rng.next);
    const params = fresh.params();
    const keys = refParameters(s.config).map(([n]) => n).filter((n) => /(qkv|o|gate_up|down)_proj\.weight$/.test(n))
      .flatMap((n) => ['A', 'B'].map((w) => `base_model.model.${n.replace(/\.weight$/, '')}.lora_${w}.weight`));
    expect(params.map((p) => p.name).sort()).toEqual(keys.sort());
    expect(JSON.parse(fresh.configJson(null)).target_modules).toEqual(['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj']);
    const qkv = model.layers[0]!.sites;
    expect(qkv.q_proj!.lora!.A).toBe(qkv.v_proj!.lora!.A);
    expect(qkv.gate_proj!.loraGrads!.dA).toBe(qkv.up_proj!.loraGrads!.dA);
    // give B values (fresh B is 0) through the optimizer's tensors, as training would
    for (const p of params) if (p.name.includes('lora_B')) gpu.write(p.value, rng.randn(p.value.shape[0]! * p.value.shape[1]!, 0.05));
    const dir = mkdtempSync(join(tmpdir(), 'phi3-adapter-'));
    writeFileSync(join(dir, 'adapter_model.safetensors'), await fresh.safetensors());
    writeFileSync(join(dir, 'adapter_config.json'), fresh.configJson(null));
    const saved = await openSafetensors(await fileSource(join(dir, 'adapter_model.safetensors')));
    const lora: RefLora = new Map();
    for (const k of saved.tensors.keys()) {
      const mod = k.replace(/^base_model\.model\./, '').replace(/\.lora_[AB]\.weight$/, '');
      const e = lora.get(mod) ?? { A: [], B: [], r: RANK, scaling: ALPHA / RANK };
      lora.set(mod, { ...e, [k.includes('lora_A') ? 'A' : 'B']: await readF32(saved, k) });
    }

    const batch = batchOf(s);
    const ws = new Workspace(model, B, S, false);
    ws.load(batch);
    const want = refLogits(s.config, s.weights, s.ids, lora);
    const trained = await engineLogits(gpu, model, ws);
    expect(relErr(trained, want), `logits with the engine-made adapter ${at}`).toBeLessThan(TOL);
    // the shared A's gradient is the sum over q, k, v: checked against the reference loss
    for (const p of params) gpu.zero(p.grad);
    await engineLoss(gpu, ws, batch.valid, true);
    const grads = new Map(await Promise.all(params.map(async (p) => [p.name, await gpu.readF32(p.grad)] as const)));
    const { worst, where } = checkGradients(s, lora, params, grads, rng);
    expect(worst, `gradient of ${where} ${at}`).toBeLessThan(TOL);
    fresh.release();

    const reloaded = await Adapter.load(model, readFileSync(join(dir, 'adapter_config.json'), 'utf8'), await fileSource(join(dir, 'adapter_model.safetensors')));
    expect(relErr(await engineLogits(gpu, model, ws), want), `reloaded adapter ${at}`).toBeLessThan(TOL);
    reloaded.release();
    ws.release();

    const out = mkdtempSync(join(tmpdir(), 'phi3-merged-'));
    const { config } = configFromObject({ model_name_or_path: s.dir, adapter_name_or_path: dir, export_dir: out });
    await exportModel(config, {});
    const merged = await Model.load(gpu, dirFiles(out));
    const ws3 = new Workspace(merged, B, S, false);
    ws3.load(batch);
    expect(relErr(await engineLogits(gpu, merged, ws3), want), `merged model ${at}`).toBeLessThan(TOL);
    ws3.release();

    // rank 1: k starts at row 64 (256 bytes of lora_B), v at row 96 (384 bytes), not a view
    // boundary: the parts get their own B; inference works, training is refused with the reason
    const one = makeAdapter(s, rng, 1);
    const odd = await Adapter.load(model, readFileSync(join(one.dir, 'adapter_config.json'), 'utf8'), await fileSource(join(one.dir, 'adapter_model.safetensors')));
    const ws4 = new Workspace(model, B, S, false);
    ws4.load(batch);
    expect(relErr(await engineLogits(gpu, model, ws4), refLogits(s.config, s.weights, s.ids, one.lora)), `rank-1 adapter ${at}`).toBeLessThan(TOL);
    expect(() => odd.params()).toThrow(/qkv_proj: training LoRA on a fused qkv_proj needs .* 256-byte boundary/);
    const bytes = await odd.safetensors();
    const file = await openSafetensors({ name: 'saved', size: bytes.length, read: async (o: number, n: number) => bytes.subarray(o, o + n) });
    for (const [mod, l] of one.lora) expect(await readF32(file, `base_model.model.${mod}.lora_B.weight`)).toEqual(l.B);
    odd.release();
    ws4.release();
  });
});
