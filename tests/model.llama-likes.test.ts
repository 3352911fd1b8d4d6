// Llama-likes that need only small switches (issue 19, item 3), each a tiny random checkpoint in the
// engine against the independent f64 reference (tests/reference/transformer.ts, written from
// transformers' modeling_*.py): Granite 3 (GraniteForCausalLM: embedding/attention/residual
// multipliers and logits_scaling), OLMo 2 (Olmo2ForCausalLM: norms only after attention and the MLP,
// q/k RMSNorm over the whole projection), Falcon 3 (LlamaForCausalLM with its head_dim and rope base),
// Phi-4-mini's shape (Phi3ForCausalLM, partial_rotary_factor 0.75, tied embeddings, GQA). Checked:
// logits and loss, base and with a PEFT LoRA on every linear module; Granite 3's and OLMo 2's LoRA
// gradients vs central differences, OLMo 2's full fine-tuning gradients of its norms, and their
// cached decode vs the full forward. The families checked and refused (Cohere, Qwen3-Next, Falcon
// Mamba, longrope Phi models) say so by name. SEED=... replays. With gen_new_archs.py's fixtures
// (granite, olmo2, phi4_mini), the transformers + PEFT parity steps run too.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Gpu } from '../src/gpu/runtime';
import { logitsForRows } from '../src/kernels/loss';
import { Adapter } from '../src/model/adapter';
import { dirFiles, fileSource } from '../src/model/files-node';
import { allocKVCache, cacheTensors, forwardBackward, forwardCached, Workspace, type Batch } from '../src/model/forward';
import { Model } from '../src/model/model';
import { encodeSafetensors } from '../src/model/safetensors';
import { specFromConfig } from '../src/model/spec';
import { configFromObject } from '../src/config';
import { expandBlocks } from '../src/export/block-expansion';
import { exportModel } from '../src/engine/export-node';
import { makeTrainable } from '../src/model/trainable';
import { syntheticModelFiles } from '../src/bench/synthetic';
import { countParams } from '../src/ui/lib/estimate';
import { makeRng, relErr, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { batchOf, engineLogits, writeRefAdapter } from './helpers/ref-model';
import { loraParity, ROOT } from './helpers/parity';
import { refCausalLoss, refLinearModules, refLogits, refParameters } from './reference/transformer';

type Json = Record<string, unknown>;
const TOL = 1e-4;
const RANK = 4, ALPHA = 8;
const V = 64;
const small = { vocab_size: V, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, hidden_act: 'silu' };

// Granite 3.x's multipliers at granite-3.3-2b's kind of values (embedding 12, attention 1/head_dim, residual 0.22, logits 8)
const granite3: Json = {
  ...small, architectures: ['GraniteForCausalLM'], model_type: 'granite', rope_theta: 10000, tie_word_embeddings: true,
  embedding_multiplier: 12, attention_multiplier: 0.125, residual_multiplier: 0.22, logits_scaling: 8,
};
// OLMo-2-0425-1B's layout (no pre-norms, whole-projection q/k norms), GQA here to tell q_norm's width from k_norm's
const olmo2: Json = { ...small, architectures: ['Olmo2ForCausalLM'], model_type: 'olmo2', rope_theta: 500000, tie_word_embeddings: false };
// Falcon3-1B: a Llama with head_dim given, rope_theta 1000042 and untied embeddings (here head_dim 16 over hidden 32 / 4 heads)
const falcon3: Json = { ...small, architectures: ['LlamaForCausalLM'], model_type: 'llama', head_dim: 16, rope_theta: 1000042, tie_word_embeddings: false };
// Phi-4-mini: partial_rotary_factor 0.75, GQA, tied embeddings, longrope (its real one: original 4096 of 131072
// positions; here 64, and 3 rotated pairs)
const phi4mini: Json = {
  ...small, architectures: ['Phi3ForCausalLM'], model_type: 'phi3', head_dim: 8, partial_rotary_factor: 0.75, rope_theta: 10000,
  tie_word_embeddings: true, sliding_window: null, max_position_embeddings: 131072, original_max_position_embeddings: 64,
  rope_scaling: { type: 'longrope', short_factor: [1, 1.7, 3.9], long_factor: [1, 9, 40] },
};

function synthesize(cfg: Json, rng: Rng): Map<string, Float32Array> {
  const w = new Map<string, Float32Array>();
  for (const [name, shape] of refParameters(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (name.endsWith('norm.weight')) w.set(name, rng.uniform(n, 0.8, 1.2));
    else if (name === 'model.embed_tokens.weight') w.set(name, rng.randn(n, 0.3));
    else w.set(name, rng.randn(n, (/q_proj|k_proj|qkv_proj/.test(name) ? 2.5 : 1) / Math.sqrt(shape[1]!)));
  }
  return w;
}

function writeCheckpoint(cfg: Json, weights: Map<string, Float32Array>): string {
  const dir = mkdtempSync(join(tmpdir(), 'llama-like-'));
  const shapes = new Map(refParameters(cfg));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(
    Object.fromEntries([...weights].map(([n, data]) => [n, { dtype: 'F32' as const, shape: shapes.get(n)!, data }])), { format: 'pt' },
  ));
  return dir;
}

/** A PEFT adapter on every linear module (B ~ N(0, 0.05²) so it shows), written as PEFT saves it. */
const writeAdapter = (cfg: Json, rng: Rng) => writeRefAdapter(refParameters(cfg), refLinearModules(cfg), rng, { rank: RANK, alpha: ALPHA });

const randomIds = (rng: Rng, n: number) => Array.from({ length: n }, () => 3 + Math.floor(rng.next() * (V - 3)));

async function engineLoss(gpu: Gpu, model: Model, batch: Batch & { valid: number }, backward: boolean, recompute = false): Promise<number> {
  const ws = new Workspace(model, batch.B, batch.S, recompute);
  ws.load(batch);
  forwardBackward(ws, { backward, gradScale: 1 / batch.valid });
  const loss = (await gpu.readF32(ws.loss)).reduce((a, b) => a + b, 0) / batch.valid;
  ws.release();
  return loss;
}

/**
 * Base logits and loss, then LoRA logits and loss (recomputed layers); with `gradients`, every LoRA
 * tensor's gradient along its largest element and a random direction vs central differences.
 */
async function checkFamily(cfg: Json, gradients: boolean): Promise<void> {
  const gpu = await testGpu();
  const rng = makeRng();
  const at = `(SEED=${rng.seed})`;
  const weights = synthesize(cfg, rng);
  const model = await Model.load(gpu, dirFiles(writeCheckpoint(cfg, weights)));
  const S = 11;
  const ids = [randomIds(rng, S), randomIds(rng, S)];
  const labels = ids.map((r) => [...r]);
  for (let t = 0; t < 3; t++) labels[1]![t] = -100;
  const batch = batchOf(ids, labels);

  const ref = refLogits(cfg, weights, ids);
  expect(relErr(await engineLogits(gpu, model, batch), ref), `base logits ${at}`).toBeLessThan(TOL);
  const refLoss = refCausalLoss(ref, labels, V);
  expect(Math.abs(await engineLoss(gpu, model, batch, false) - refLoss) / refLoss, `base loss ${at}`).toBeLessThan(TOL);

  const { dir, lora } = writeAdapter(cfg, rng);
  const adapter = await Adapter.load(model, readFileSync(join(dir, 'adapter_config.json'), 'utf8'), await fileSource(join(dir, 'adapter_model.safetensors')));
  const refL = refLogits(cfg, weights, ids, lora);
  expect(relErr(await engineLogits(gpu, model, batch, true), refL), `LoRA logits ${at}`).toBeLessThan(TOL);
  const params = adapter.params();
  expect(params.length).toBe(2 * lora.size);
  for (const p of params) gpu.zero(p.grad);
  const refLossL = refCausalLoss(refL, labels, V);
  expect(Math.abs(await engineLoss(gpu, model, batch, true, true) - refLossL) / refLossL, `LoRA loss ${at}`).toBeLessThan(TOL);
  if (gradients) {
    const h = 1e-4;
    for (const p of params) {
      const m = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(p.name)!;
      const mod = lora.get(m[1]!)!, which = m[2] as 'A' | 'B', g = await gpu.readF32(p.grad);
      const base = Float64Array.from(mod[which]);
      const along = (u: Float64Array) => {
        const f = (eps: number) => refCausalLoss(refLogits(cfg, weights, ids, new Map(lora).set(m[1]!, { ...mod, [which]: base.map((v, i) => v + eps * u[i]!) })), labels, V);
        return (f(h) - f(-h)) / (2 * h);
      };
      let arg = 0;
      for (let i = 1; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[arg]!)) arg = i;
      const unit = Float64Array.from({ length: g.length }, (_, i) => (i === arg ? 1 : 0));
      const dir2 = Float64Array.from({ length: g.length }, () => rng.normal());
      const got = [g[arg]!, g.reduce((a, v, i) => a + v * dir2[i]!, 0)];
      const want = [along(unit), along(dir2)];
      expect(relErr(got, want), `gradient of ${p.name}: ${got} vs ${want} ${at}`).toBeLessThan(1e-3);
    }
  }
  adapter.release();
  model.release();
}

describe('Llama-likes: specs', () => {
  it("Granite 3 reads its multipliers (GraniteConfig's defaults: 1.0, attention_multiplier included)", () => {
    const s = specFromConfig(granite3);
    expect([s.arch, s.embedScale, s.attnScale, s.residualScale, s.logitsScale, s.tiedEmbeddings]).toEqual(['granite', 12, 0.125, 0.22, 8, true]);
    const { embedding_multiplier: _, attention_multiplier: __, residual_multiplier: ___, logits_scaling: ____, ...plain } = granite3;
    const d = specFromConfig(plain);
    expect([d.embedScale, d.attnScale, d.residualScale, d.logitsScale]).toEqual([1, 1, 1, 1]);
    // Granite 4's config class has the same default
    expect(specFromConfig({ ...plain, architectures: ['GraniteMoeHybridForCausalLM'], num_local_experts: 0, shared_intermediate_size: 48, layer_types: ['attention', 'attention'] }).attnScale).toBe(1);
  });

  it('OLMo 2: post-norms only, q/k norms over the whole projection', async () => {
    const s = specFromConfig(olmo2);
    expect([s.arch, s.postNormsOnly, s.qkNormWhole, s.qkNorm, s.rmsEps]).toEqual(['olmo2', true, true, true, 1e-5]);
    const model = await Model.load(await testGpu(), syntheticModelFiles(olmo2));
    const l = model.layers[0]!;
    expect([l.attnNorm, l.mlpNorm, l.qNorm!.value.shape, l.kNorm!.value.shape]).toEqual([null, null, [32], [16]]);
    const norms = (names: string[]) => names.filter((n) => /norm/.test(n)).sort();
    expect(norms(model.params().map((p) => p.name))).toEqual(norms(refParameters(olmo2).map(([n]) => n)));
    model.release();
  });

  it('Falcon 3 is a Llama: head_dim from config, rope base 1000042; Phi-4-mini: partial rotary, tied', () => {
    const f = specFromConfig(falcon3);
    expect([f.arch, f.headDim, f.layers[0]!.rope.theta, f.tiedEmbeddings, f.attnScale]).toEqual(['llama', 16, 1000042, false, 0.25]);
    const p = specFromConfig(phi4mini);
    expect([p.arch, p.fusedProjections, p.layers[0]!.rope.partialRotaryFactor, p.tiedEmbeddings, p.layers[0]!.window]).toEqual(['phi3', true, 0.75, true, null]);
    // longrope: factor 131072 / 64, attention_factor sqrt(1 + ln(2048) / ln(64)); its short range bounds positions
    expect(p.layers[0]!.rope.attentionScaling).toBeCloseTo(Math.sqrt(1 + Math.log(2048) / Math.log(64)), 12);
    expect([p.maxPositions, p.positionLimit, p.layers[0]!.rope.scaling.short_factor]).toEqual([64, 64, [1, 1.7, 3.9]]);
    expect(specFromConfig({ ...phi4mini, rope_scaling: { type: 'longrope', short_factor: [1, 1, 1], long_factor: [1, 1, 1], attention_factor: 1.5 } }).layers[0]!.rope.attentionScaling).toBe(1.5);
    expect(() => specFromConfig({ ...phi4mini, rope_scaling: { type: 'longrope', short_factor: [1, 2], long_factor: [1, 2] } })).toThrow(/"short_factor" must list 3 positive numbers/);
    const { original_max_position_embeddings: _, ...noOriginal } = phi4mini;
    expect(() => specFromConfig(noOriginal)).toThrow(/longrope needs "original_max_position_embeddings"/);
  });

  it("the app's parameter count matches every tensor transformers creates (q/k norms aside, as for every family)", () => {
    for (const cfg of [granite3, olmo2, falcon3, phi4mini]) {
      const params = refParameters(cfg);
      const size = (sh: number[]) => sh.reduce((a, b) => a * b, 1);
      const qk = params.filter(([n]) => /[qk]_norm/.test(n)).reduce((a, [, sh]) => a + size(sh), 0);
      const p = countParams(specFromConfig(cfg));
      expect(p.linear + p.embed + p.head + p.norms + qk, String((cfg.architectures as string[])[0])).toBe(params.reduce((a, [, sh]) => a + size(sh), 0));
    }
  });

  it('the families checked and refused say so by name', () => {
    const refused = (arch: string, extra: Json = {}) => () => specFromConfig({ ...small, architectures: [arch], ...extra });
    expect(refused('CohereForCausalLM')).toThrow(/CohereForCausalLM: Cohere \/ Command R .* is not supported/);
    expect(refused('Cohere2ForCausalLM')).toThrow(/Cohere2ForCausalLM: Cohere 2/);
    expect(refused('Qwen3NextForCausalLM')).toThrow(/Qwen3-Next is a mixture-of-experts model .* Qwen3\.5/);
    expect(refused('FalconMambaForCausalLM')).toThrow(/Falcon Mamba/);
    expect(refused('LlamaForCausalLM', { rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow(/rope scaling "yarn" is not supported/);
    expect(refused('SomethingElseForCausalLM')).toThrow(/unsupported architecture "SomethingElseForCausalLM"\. Supported: .*GraniteForCausalLM/);
  });
});

describe('Llama-likes in the engine vs the f64 reference', () => {
  it('Granite 3: the reference exercises each multiplier (switching one off moves the logits by > 10x the tolerance)', () => {
    const rng = makeRng();
    const weights = synthesize(granite3, rng);
    const ids = [randomIds(rng, 9)];
    const base = refLogits(granite3, weights, ids);
    for (const [key, off] of [['embedding_multiplier', 1], ['attention_multiplier', 0.25], ['residual_multiplier', 1], ['logits_scaling', 1]] as const) {
      expect(relErr(refLogits({ ...granite3, [key]: off }, weights, ids), base), `${key} (SEED=${rng.seed})`).toBeGreaterThan(10 * TOL);
    }
  });

  it('Granite 3: logits and loss, base and with LoRA (recomputed); LoRA gradients vs finite differences', () => checkFamily(granite3, true));

  it('OLMo 2: logits and loss, base and with LoRA (recomputed); LoRA gradients vs finite differences', () => checkFamily(olmo2, true));

  it("OLMo 2: full fine-tuning gradients of the post-norms, and the whole-projection q/k norms vs finite differences", async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const weights = synthesize(olmo2, rng);
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(olmo2, weights)));
    const ids = [randomIds(rng, 9), randomIds(rng, 9)];
    const batch = batchOf(ids, ids);
    const trainable = makeTrainable(model, [0, 1], false).filter((t) => /norm/.test(t.name));
    expect(trainable.length).toBe(2 * 4);
    for (const t of trainable) gpu.zero(t.grad);
    const ws = new Workspace(model, 2, 9, false);
    ws.load(batch);
    forwardBackward(ws, { backward: true, gradScale: 1 / batch.valid });
    const loss = (w: Map<string, ArrayLike<number>>) => refCausalLoss(refLogits(olmo2, w, ids), ids, V);
    const h = 1e-4;
    for (const t of trainable) {
      const g = await gpu.readF32(t.grad);
      const base = Float64Array.from(weights.get(t.name)!);
      const dir = Float64Array.from({ length: g.length }, () => rng.normal());
      const along = (eps: number) => loss(new Map<string, ArrayLike<number>>(weights).set(t.name, base.map((v, i) => v + eps * dir[i]!)));
      const got = g.reduce((a, v, i) => a + v * dir[i]!, 0), want = (along(h) - along(-h)) / (2 * h);
      expect(Math.abs(got - want) / Math.max(Math.abs(want), 1e-6), `gradient of ${t.name}: ${got} vs ${want} (SEED=${rng.seed})`).toBeLessThan(1e-3);
    }
    ws.release();
    model.release();
  });

  it.each([['Granite 3', granite3], ['OLMo 2', olmo2]] as const)('%s: prefill then decode with the KV cache equal the full forward', async (_, cfg) => {
    const gpu = await testGpu();
    const rng = makeRng();
    const weights = synthesize(cfg, rng);
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(cfg, weights)));
    const seq = randomIds(rng, 12);
    const want = refLogits(cfg, weights, [seq]);
    const cache = allocKVCache(model, 16);
    for (const [t0, t1] of [[0, 9], [9, 10], [10, 12]] as const) {
      const L = t1 - t0;
      const ws = new Workspace(model, 1, L, true);
      ws.load({ B: 1, S: L, ids: Int32Array.from(seq.slice(t0, t1)), labels: new Int32Array(L).fill(-100), positions: Int32Array.from({ length: L }, (_, j) => t0 + j) });
      forwardCached(ws, cache);
      const out = gpu.tensor([L, V]);
      logitsForRows(gpu, ws.final, model.lmHead.weight, out, {});
      expect(relErr(await gpu.readF32(out), want.subarray(t0 * V, t1 * V)), `cached logits ${t0}..${t1 - 1} (SEED=${rng.seed})`).toBeLessThan(TOL);
      gpu.release(out);
      ws.release();
    }
    gpu.release(...cacheTensors(cache));
    model.release();
  });

  it.each([['Granite 3', granite3], ['OLMo 2', olmo2]] as const)('%s: a PEFT adapter merged by export computes the LoRA model; LLaMA Pro expansion computes the base', async (_, cfg) => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(cfg, rng);
    const base = writeCheckpoint(cfg, weights);
    const { dir, lora } = writeAdapter(cfg, rng);
    const ids = [randomIds(rng, 8)];
    const batch = batchOf(ids, ids);
    const out = mkdtempSync(join(tmpdir(), 'llama-like-merged-'));
    await exportModel(configFromObject({ model_name_or_path: base, adapter_name_or_path: dir, export_dir: out }).config, {});
    const merged = await Model.load(gpu, dirFiles(out));
    expect(relErr(await engineLogits(gpu, merged, batch), refLogits(cfg, weights, ids, lora)), `merged model ${at}`).toBeLessThan(TOL);
    merged.release();
    // LLaMA Pro: a copy after each layer with o_proj and down_proj zero (OLMo 2's post-norms of zero are zero)
    const expanded = mkdtempSync(join(tmpdir(), 'llama-like-expanded-'));
    await expandBlocks(dirFiles(base), 2, async (f, data) => writeFileSync(join(expanded, f), data), { maxBytes: 5e9 });
    const pro = await Model.load(gpu, dirFiles(expanded));
    expect(pro.layers.length).toBe(4);
    expect(relErr(await engineLogits(gpu, pro, batch), refLogits(cfg, weights, ids)), `expanded model ${at}`).toBeLessThan(TOL);
    pro.release();
  });

  it('Falcon 3 (a Llama with its own head_dim): logits and loss, base and with LoRA', () => checkFamily(falcon3, false));

  it("Phi-4-mini's shape (longrope, partial rotary 0.75, tied, GQA, fused qkv/gate_up): logits and loss, base and with LoRA; LoRA gradients", () => checkFamily(phi4mini, true));

  it('Phi-4-mini: the reference exercises longrope (short factors, attention factor); positions past its short range are refused', async () => {
    const rng = makeRng();
    const weights = synthesize(phi4mini, rng);
    const ids = [randomIds(rng, 9)];
    const base = refLogits(phi4mini, weights, ids);
    const plain = { type: 'longrope', short_factor: [1, 1, 1], long_factor: [1, 1, 1] };
    for (const [what, cfg] of [['short_factor', { ...phi4mini, rope_scaling: { ...plain, attention_factor: Math.sqrt(1 + Math.log(2048) / Math.log(64)) } }],
      ['attention_factor', { ...phi4mini, rope_scaling: { ...(phi4mini.rope_scaling as Json), attention_factor: 1 } }]] as const) {
      expect(relErr(refLogits(cfg, weights, ids), base), `${what} (SEED=${rng.seed})`).toBeGreaterThan(10 * TOL);
    }
    const model = await Model.load(await testGpu(), dirFiles(writeCheckpoint(phi4mini, weights)));
    const ws = new Workspace(model, 1, 2, false);
    expect(() => ws.load({ B: 1, S: 2, ids: Int32Array.from([5, 6]), labels: Int32Array.from([-100, -100]), positions: Int32Array.from([63, 64]) }))
      .toThrow(/position 64 \(batch position 1\) is beyond 64: this model's longrope runs its short range/);
    ws.release();
    model.release();
  });
});

// Once the GPU server has run gen_new_archs.py into tests/fixtures/models, the same parity steps as
// the other architectures run against transformers + PEFT; until then they are skipped.
describe('Llama-likes against transformers + PEFT (gen_new_archs.py fixtures)', () => {
  for (const name of ['granite', 'olmo2', 'phi4_mini']) {
    it.skipIf(!existsSync(join(ROOT, name, 'case.json')))(`${name}: base logits and greedy tokens, LoRA loss and gradients, 5 AdamW steps, final adapter`,
      () => loraParity(name));
  }
});
