// LoRA fine-tuning of a tiny random Qwen2-VL on a dataset of images (PNGs built here), through the
// path `crucible train` takes: Session.open reads preprocessor_config.json, buildDataset processes
// and expands the images (template qwen2_vl), makeBatch carries pixels and M-RoPE positions, the
// trainer runs the frozen vision tower and scatters its rows into the image tokens. Checked: the
// loss of a padded two-row batch against the f64 reference (tests/reference/qwen2vl.ts), so each
// row gets its own images and positions; a few LoRA steps lower the loss; a preprocessor config
// that does not fit the tower is refused. Weights from a seeded RNG (SEED=... replays).
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../src/cli/main';
import type { CliIO } from '../src/cli/io';
import { buildDataset, memoryFileAccess, padIdFor } from '../src/data/index.ts';
import type { LmExample } from '../src/data/processor.ts';
import { Session } from '../src/engine/session';
import { dirFiles, fileSource } from '../src/model/files-node';
import { Adapter } from '../src/model/adapter';
import { forwardBackward, Workspace } from '../src/model/forward';
import { encodeSafetensors, openSafetensors, type ByteSource } from '../src/model/safetensors';
import { specFromConfig } from '../src/model/spec';
import { makeBatch, rowPixels } from '../src/train/batches';
import { Trainer, type LogRecord, type TrainOptions } from '../src/train/trainer';
import { makeRng, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { encodePng } from './helpers/png-encode';
import { refQwen2VLLogits, refQwen2VLParameters, refQwen2VLVision } from './reference/qwen2vl';
import { refCausalLoss, type RefLora } from './reference/transformer';

type Json = Record<string, unknown>;
const FIX = join(import.meta.dirname, 'fixtures');
const config = JSON.parse(readFileSync(join(FIX, 'synthetic/qwen2_vl/config.json'), 'utf8')) as Json;
const V = Number((config.text_config as Json).vocab_size);
const RANK = 2;
const PREPROCESSOR = { patch_size: 2, merge_size: 2, temporal_patch_size: 2, min_pixels: 16, max_pixels: 64 * 64, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5] };

function synthesize(rng: Rng): Map<string, Float32Array> {
  const w = new Map<string, Float32Array>();
  for (const [name, shape] of refQwen2VLParameters(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let v: Float32Array;
    if (/norm[12]?\.weight$|ln_q\.weight$|layernorm\.weight$/.test(name)) v = Float32Array.from(rng.randn(n, 0.1), (x) => 1 + x);
    else if (name.endsWith('.bias')) v = rng.randn(n, 0.1);
    else if (name.endsWith('embed_tokens.weight')) v = rng.randn(n, 0.3);
    else v = rng.randn(n, 1 / Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1)));
    w.set(name, v);
  }
  return w;
}

/**
 * tiny-chat's byte-level tokenizer (ids 0-2 <|pad|> <|im_start|> <|im_end|>) with ids 250-253 (bytes
 * ASCII text never uses) made the config's image, video, vision start and end tokens.
 */
function tokenizerFiles(): { json: Json; config: Json } {
  const json = JSON.parse(readFileSync(join(FIX, 'tiny-chat/tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> }; added_tokens: Json[] };
  const cfg = JSON.parse(readFileSync(join(FIX, 'tiny-chat/tokenizer_config.json'), 'utf8')) as Json & { added_tokens_decoder: Record<string, Json> };
  const specials: [number, string][] = [[250, '<|image_pad|>'], [251, '<|video_pad|>'], [252, '<|vision_start|>'], [253, '<|vision_end|>']];
  for (const [id, content] of specials) {
    for (const [k, v] of Object.entries(json.model.vocab)) if (v === id) delete json.model.vocab[k];
    json.model.vocab[content] = id;
    const t = { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
    json.added_tokens.push(t);
    const { id: _, ...rest } = t;
    cfg.added_tokens_decoder[String(id)] = rest;
  }
  return { json, config: cfg };
}

function writeModel(weights: Map<string, Float32Array>, preprocessor: Json): string {
  const dir = mkdtempSync(join(tmpdir(), 'qwen2vl-train-'));
  const shapes = new Map(refQwen2VLParameters(config));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(Object.fromEntries([...weights].map(([n, data]) => [n, { dtype: 'F32' as const, shape: shapes.get(n)!, data }])), { format: 'pt' }));
  const tok = tokenizerFiles();
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tok.json));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tok.config));
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify(preprocessor));
  return dir;
}

function bytes(b: Uint8Array): ByteSource {
  return { name: 'adapter_model.safetensors', size: b.length, read: async (off, len) => b.slice(off, off + len) };
}

function png(rng: Rng, width: number, height: number): Uint8Array {
  return encodePng({ width, height, colorType: 2, depth: 8, samples: Array.from({ length: width * height * 3 }, () => Math.floor(rng.next() * 256)) });
}

/** Three conversations about three pictures (28 x 28 and larger: image_min_pixels keeps them small). */
function dataFiles(rng: Rng) {
  const rows = [
    { messages: [{ role: 'user', content: '<image>What is it?' }, { role: 'assistant', content: 'red' }], images: ['a.png'] },
    { messages: [{ role: 'user', content: 'And <image>?' }, { role: 'assistant', content: 'blue sky' }], images: ['b.png'] },
    { messages: [{ role: 'user', content: '<image>Name it.' }, { role: 'assistant', content: 'green' }], images: ['c.png'] },
  ];
  return memoryFileAccess({
    'data/dataset_info.json': JSON.stringify({ pics: { file_name: 'pics.json', formatting: 'sharegpt', columns: { messages: 'messages', images: 'images' }, tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant' } } }),
    'data/pics.json': JSON.stringify(rows),
    'data/a.png': png(rng, 28, 28),
    'data/b.png': png(rng, 36, 28),
    'data/c.png': png(rng, 28, 32),
  });
}

describe('batches with images', () => {
  it("M-RoPE positions are get_rope_index's, worked by hand (text, an image's t/h/w, text from max + 1, padding continuing); pixels in row order", async () => {
    const vision = specFromConfig(config).vision!;
    const F = 3 * 2 * 2 * 2;
    const pix = (n: number, v: number) => new Float32Array(n * F).fill(v);
    const rows = [
      // grid 1 x 2 x 4 merged 2 x 2: one row of two image tokens
      { input_ids: [5, 252, 250, 250, 253, 6], labels: [-100, -100, -100, -100, -100, 6], images: { grids: [[1, 2, 4]] as [number, number, number][], load: async () => pix(8, 1) } },
      { input_ids: [9, 8], labels: [9, 8] },
      // grid 1 x 4 x 4: two rows of two
      { input_ids: [252, 250, 250, 250, 250, 253, 7], labels: [-100, -100, -100, -100, -100, -100, 7], images: { grids: [[1, 4, 4]] as [number, number, number][], load: async () => pix(16, 2) } },
    ];
    const b = makeBatch(rows, 0, 8, vision, await rowPixels(rows));
    expect([b.B, b.S]).toEqual([3, 8]);
    const t = [[0, 1, 2, 2, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 1, 1, 1, 3, 4, 5]];
    const h = [[0, 1, 2, 2, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 1, 2, 2, 3, 4, 5]];
    const w = [[0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 1, 2, 3, 4, 5]];
    expect(Array.from(b.positions)).toEqual([...t.flat(), ...h.flat(), ...w.flat()]);
    expect(b.images!.grids).toEqual([[1, 2, 4], [1, 4, 4]]);
    expect(Array.from(b.images!.pixels)).toEqual([...pix(8, 1), ...pix(16, 2)]);
    // text-only batches keep 1-D positions (the workspace repeats them for M-RoPE)
    expect(makeBatch([rows[1]!], 0, 8, vision).positions).toHaveLength(8);
  });
});

describe('Qwen2-VL LoRA fine-tuning on images', () => {
  it('a padded batch of two image rows matches the f64 reference; a few LoRA steps lower the loss', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const session = await Session.open(gpu, dirFiles(writeModel(weights, PREPROCESSOR)));
    expect(session.imageConfig).toMatchObject({ patchSize: 2, mergeSize: 2, temporalPatchSize: 2, minPixels: 16, maxPixels: 4096, mean: [0.5, 0.5, 0.5] });
    const data = await buildDataset(
      { dataset: 'pics', template: 'qwen2_vl', cutoff_len: 256, image_min_pixels: 16, image_max_pixels: 32 * 32, shuffle: false },
      { tokenizer: session.tokenizer, imageProcessor: session.imageConfig, ...dataFiles(rng) },
    );
    const rows = data.train as LmExample[];
    expect(rows.map((r) => r.images!.grids)).toEqual([[[1, 14, 14]], [[1, 14, 18]], [[1, 16, 14]]]);
    const model = session.model;

    // rows 1 and 0 (different lengths: row 0 is padded), loss against the reference row by row
    const pair = [rows[1]!, rows[0]!];
    const pixels = await rowPixels(pair);
    expect(() => makeBatch(pair, 0, 256, model.spec.vision)).toThrow(/needs their pixel values/);
    const batch = makeBatch(pair, padIdFor(session.tokenizer, data.template), 256, model.spec.vision, pixels);
    expect(batch.images!.grids).toEqual([[1, 14, 18], [1, 14, 14]]);
    const ws = new Workspace(model, batch.B, batch.S, false);
    ws.load(batch);
    forwardBackward(ws, { backward: false, gradScale: 1 });
    const loss = (await gpu.readF32(ws.loss)).reduce((a, b) => a + b, 0);
    ws.release();
    let ref = 0;
    for (const [i, r] of pair.entries()) {
      const grids = r.images!.grids;
      const logits = refQwen2VLLogits(config, weights, r.input_ids, refQwen2VLVision(config, weights, pixels[i]!, grids), grids);
      const learned = r.labels.slice(1).filter((l) => l !== -100).length;
      ref += refCausalLoss(logits, [r.labels], V) * learned;
    }
    expect(Math.abs(loss - ref) / ref, `batch loss ${loss} vs reference ${ref} ${at}`).toBeLessThan(1e-4);

    const opts: TrainOptions = {
      finetuningType: 'lora', lora: { rank: 4, alpha: 8, targets: 'all' }, learningRate: 5e-2, scheduler: 'constant', warmupSteps: 0,
      warmupRatio: 0, epochs: 4, maxSteps: 4, batchSize: 3, gradAccum: 1, maxGradNorm: 1, weightDecay: 0, beta1: 0.9, beta2: 0.999,
      eps: 1e-8, neftuneAlpha: 0, seed: 1, loggingSteps: 1, saveSteps: 0, evalSteps: 0, cutoffLen: 256, recompute: false,
    };
    const trainer = await Trainer.create(model, rows, [], opts, padIdFor(session.tokenizer, data.template));
    const logs: number[] = [];
    await trainer.run(null, { onLog: (r: LogRecord) => r.loss !== undefined && logs.push(r.loss) });
    trainer.release();
    expect(logs).toHaveLength(4);
    expect(logs.every(Number.isFinite), `losses ${logs} ${at}`).toBe(true);
    expect(logs[3]!, `losses ${logs} ${at}`).toBeLessThan(logs[0]! * 0.8);
    session.release();
  });

  it('LoRA gradients of a padded two-row image batch match central differences of the f64 reference loss', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const session = await Session.open(gpu, dirFiles(writeModel(weights, PREPROCESSOR)));
    const data = await buildDataset(
      { dataset: 'pics', template: 'qwen2_vl', cutoff_len: 256, image_min_pixels: 16, image_max_pixels: 32 * 32, shuffle: false },
      { tokenizer: session.tokenizer, imageProcessor: session.imageConfig, ...dataFiles(rng) },
    );
    const pair = [data.train[2], data.train[1]] as LmExample[];
    const model = session.model;
    // a PEFT LoRA on q_proj and down_proj of every layer, B non-zero so every factor has a gradient
    const kinds = ['q_proj', 'down_proj'];
    const lora: RefLora = new Map();
    const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (const [n, shape] of refQwen2VLParameters(config)) {
      const module = n.replace(/\.weight$/, '');
      if (!n.startsWith('model.language_model.') || !kinds.includes(module.split('.').pop()!)) continue;
      const [N, K] = shape as [number, number];
      const A = rng.randn(RANK * K, 1 / Math.sqrt(K)), B = rng.randn(N * RANK, 0.05);
      lora.set(module, { A, B, r: RANK, scaling: 2 });
      tensors[`base_model.model.${module}.lora_A.weight`] = { dtype: 'F32', shape: [RANK, K], data: A };
      tensors[`base_model.model.${module}.lora_B.weight`] = { dtype: 'F32', shape: [N, RANK], data: B };
    }
    const adapterConfig = JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: RANK, lora_alpha: 2 * RANK, lora_dropout: 0, target_modules: kinds, bias: 'none' });
    const adapter = await Adapter.load(model, adapterConfig, bytes(encodeSafetensors(tensors, { format: 'pt' })));
    const pixels = await rowPixels(pair);
    const batch = makeBatch(pair, padIdFor(session.tokenizer, data.template), 256, model.spec.vision, pixels);
    const params = adapter.params();
    for (const p of params) gpu.zero(p.grad);
    const ws = new Workspace(model, batch.B, batch.S, false);
    ws.load(batch);
    forwardBackward(ws, { backward: true, gradScale: 1 });
    const images = pair.map((r, i) => refQwen2VLVision(config, weights, pixels[i]!, r.images!.grids));
    // the summed token loss of both rows, as the GPU's with gradScale 1
    const refLoss = (l: RefLora) =>
      pair.reduce((s, r, i) => s + refCausalLoss(refQwen2VLLogits(config, weights, r.input_ids, images[i]!, r.images!.grids, l), [r.labels], V) * r.labels.slice(1).filter((y) => y !== -100).length, 0);
    const h = 1e-4;
    for (const p of [params[0]!, params[params.length - 1]!]) {
      const m = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(p.name)!;
      const mod = lora.get(m[1]!)!, which = m[2] as 'A' | 'B';
      const g = await gpu.readF32(p.grad);
      const u = Float64Array.from({ length: g.length }, () => rng.normal());
      const got = g.reduce((a, x, i) => a + x * u[i]!, 0);
      const along = (eps: number) => refLoss(new Map(lora).set(m[1]!, { ...mod, [which]: Float64Array.from(mod[which], (x, i) => x + eps * u[i]!) }));
      const want = (along(h) - along(-h)) / (2 * h);
      expect(Math.abs(got - want) / Math.abs(want), `gradient of ${p.name} along a random direction: ${got} vs ${want} ${at}`).toBeLessThan(1e-3);
    }
    ws.release();
    adapter.release();
    session.release();
  });

  it('`crucible train` runs LoRA SFT on the image dataset and saves a PEFT adapter of the language model', async () => {
    const rng = makeRng();
    const model = writeModel(synthesize(rng), PREPROCESSOR);
    const cwd = mkdtempSync(join(tmpdir(), 'qwen2vl-cli-'));
    mkdirSync(join(cwd, 'data'));
    const access = dataFiles(rng);
    for (const f of ['dataset_info.json', 'pics.json', 'a.png', 'b.png', 'c.png']) writeFileSync(join(cwd, 'data', f), await access.readFile(`data/${f}`));
    const out: string[] = [], err: string[] = [];
    const io: CliIO = { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: { ...process.env }, cwd, stdin: Readable.from([]), interactive: false };
    const code = await main(['train', `model_name_or_path=${model}`, 'stage=sft', 'do_train=true', 'finetuning_type=lora', 'lora_target=all', 'dataset=pics',
      `dataset_dir=${join(cwd, 'data')}`, 'template=qwen2_vl', 'cutoff_len=256', 'image_min_pixels=16', 'image_max_pixels=1024', 'per_device_train_batch_size=3',
      'gradient_accumulation_steps=1', 'max_steps=2', 'logging_steps=1', 'learning_rate=1e-3', `output_dir=${join(cwd, 'out')}`], io);
    expect(code, err.join('')).toBe(0);
    expect(out.join('')).toMatch(/^step 2\/2 /m);
    const adapter = await openSafetensors(await fileSource(join(cwd, 'out', 'adapter_model.safetensors')));
    const names = [...adapter.tensors.keys()];
    expect(names).toContain('base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight');
    expect(names.some((n) => n.includes('visual'))).toBe(false);
  });

  it("a preprocessor_config.json whose patches are not the tower's is refused", async () => {
    const dir = writeModel(synthesize(makeRng()), { ...PREPROCESSOR, patch_size: 14 });
    await expect(Session.open(await testGpu(), dirFiles(dir))).rejects.toThrow(/preprocessor_config.json: patch_size 14 does not match the vision tower's 2 \(config.json vision_config\)/);
  });
});
