// Qwen2-VL in the engine against the independent f64 reference (tests/reference/qwen2vl.ts, with the
// text model through tests/reference/transformer.ts) on a tiny random checkpoint built here
// (tests/fixtures/synthetic/qwen2_vl/config.json; weights drawn from a seeded RNG, SEED=... replays,
// written under transformers 5's names, or the older visual.* / model.* layout).
// Checked: the spec read from config.json; the vision tower's image embeddings (two images, one of
// two frames: attention stays within each frame); M-RoPE position ids; logits of a whole image +
// text example, base and with a PEFT LoRA on the language model; LoRA gradients against central
// differences of the reference loss.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { modelTensors } from '../src/export/model-tensors';
import { Adapter } from '../src/model/adapter';
import { dirFiles, fileSource } from '../src/model/files-node';
import { forwardBackward, shiftLabels, Workspace, type Batch } from '../src/model/forward';
import { Model } from '../src/model/model';
import { mropeBatchPositions, mropePositions } from '../src/model/mrope';
import { encodeSafetensors } from '../src/model/safetensors';
import { specFromConfig } from '../src/model/spec';
import { visionPositions } from '../src/model/vision';
import { expectClose, makeRng, relErr, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { synthesizeQwen2VL } from './helpers/qwen2vl';
import { engineLogits, writeRefAdapter } from './helpers/ref-model';
import { refQwen2VLLogits, refQwen2VLParameters, refQwen2VLVision, refRopeIndex } from './reference/qwen2vl';
import { refCausalLoss, type RefLora } from './reference/transformer';

type Json = Record<string, unknown>;
type Grid = [number, number, number];
const config = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/synthetic/qwen2_vl/config.json'), 'utf8')) as Json;
const vision = config.vision_config as Json;
const FEATURES = 3 * Number(vision.temporal_patch_size) * Number(vision.patch_size) ** 2;
const TOL = 1e-4;
const V = Number((config.text_config as Json).vocab_size);
const RANK = 4, ALPHA = 8;
const [IMAGE, START, END] = [250, 252, 253];

const synthesize = (rng: Rng) => synthesizeQwen2VL(rng, config);

/** A checkpoint folder; `legacy` writes the pre-4.52 names (visual.*, model.layers.*). */
function writeCheckpoint(weights: Map<string, Float32Array>, legacy = false): string {
  const dir = mkdtempSync(join(tmpdir(), 'qwen2vl-'));
  const shapes = new Map(refQwen2VLParameters(config));
  const stored = (n: string) => (legacy ? n.replace(/^model\.visual\./, 'visual.').replace(/^model\.language_model\./, 'model.') : n);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(
    Object.fromEntries([...weights].map(([n, data]) => [stored(n), { dtype: 'F32' as const, shape: shapes.get(n)!, data }])),
    { format: 'pt' },
  ));
  return dir;
}

const patchesOf = (grids: Grid[]) => grids.reduce((s, [t, h, w]) => s + t * h * w, 0);

describe('Qwen2-VL spec', () => {
  it('reads the text config, M-RoPE sections and the vision config', () => {
    const s = specFromConfig(config);
    expect([s.arch, s.hidden, s.heads, s.kvHeads, s.headDim, s.qkvBias, s.textPrefix, s.tiedEmbeddings]).toEqual(
      ['qwen2_vl', 64, 4, 2, 16, true, 'model.language_model', false],
    );
    expect(s.mrope).toEqual([2, 3, 3]);
    expect(s.vision).toMatchObject({ depth: 2, embedDim: 32, heads: 2, mlpHidden: 64, act: 'quick_gelu', patchSize: 2, mergeSize: 2, outHidden: 64, imageTokenId: 250 });
    const text = config.text_config as Json;
    expect(() => specFromConfig({ ...config, text_config: { ...text, rope_parameters: { rope_theta: 1e4, mrope_section: [2, 3] } } })).toThrow(/mrope_section/);
    expect(() => specFromConfig({ ...config, vision_config: undefined })).toThrow(/vision_config/);
  });

  it('vision positions follow the processor\'s patch order (2 x 2 windows, row-major)', () => {
    // a 2 x 4 grid: windows (0,0) (0,1); inside each, (r, c) row-major
    expect(Array.from(visionPositions([[1, 2, 4]], 2))).toEqual([0, 0, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1, 2, 3, 2, 3]);
  });
});

describe('Qwen2-VL vision tower vs the f64 reference', () => {
  it('image embeddings of two images (one of two frames), from both checkpoint layouts', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const weights = synthesize(rng);
    const grids: Grid[] = [[1, 4, 6], [2, 2, 4]];
    const pixels = rng.randn(patchesOf(grids) * FEATURES);
    const ref = refQwen2VLVision(config, weights, pixels, grids);
    for (const legacy of [false, true]) {
      const model = await Model.load(gpu, dirFiles(writeCheckpoint(weights, legacy)));
      const out = model.vision!.forward(pixels, grids);
      expect(out.shape).toEqual([patchesOf(grids) / 4, 64]);
      expectClose(await gpu.readF32(out), ref, TOL, `image embeddings${legacy ? ' (legacy layout)' : ''}`, rng.seed);
      gpu.release(out);
      if (!legacy) {
        // a merged export writes every tensor of the checkpoint back, the tower's included, under transformers 5's names
        const exported = modelTensors(model);
        expect(exported.map((t) => t.name).sort()).toEqual([...weights.keys()].sort());
        const conv = exported.find((t) => t.name === 'model.visual.patch_embed.proj.weight')!;
        expect(conv.shape).toEqual([32, 3, 2, 2, 2]);
        expect(Array.from(await conv.read())).toEqual(Array.from(weights.get(conv.name)!));
      }
      model.release();
    }
  });

  it('refuses pixel values that do not fit the grids', async () => {
    const gpu = await testGpu();
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(synthesize(makeRng()))));
    expect(() => model.vision!.forward(new Float32Array(FEATURES * 3), [[1, 2, 2]])).toThrow(/need 4 patches of 24/);
    expect(() => model.vision!.forward(new Float32Array(FEATURES * 6), [[1, 2, 3]])).toThrow(/multiples of the merge size 2/);
    model.release();
  });
});

describe('M-RoPE position ids', () => {
  it('text, then an image\'s (t, h, w) grid offset by the text before it, then text from the largest + 1', () => {
    // ids: a b <vision_start> <image_pad> x 6 (grid 1 x 4 x 6 merged to 1 x 2 x 3) <vision_end> c
    const ids = [1, 2, 252, 250, 250, 250, 250, 250, 250, 253, 3];
    const pos = refRopeIndex(config, ids, [[1, 4, 6]]);
    expect(pos).toEqual([
      [0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7],
      [0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7],
      [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7],
    ]);
  });
});

describe('M-RoPE in the engine', () => {
  it('mropePositions is get_rope_index (two images between text), and a padded batch continues each row', () => {
    const rng = makeRng();
    const grids: Grid[] = [[1, 4, 6], [2, 2, 4]];
    const ids = exampleIds(rng, grids);
    const v = specFromConfig(config).vision!;
    const ref = refRopeIndex(config, ids, grids);
    expect(Array.from(mropePositions(ids, ids.length, grids, v))).toEqual(ref.flat());
    const S = ids.length + 3;
    const padded = Int32Array.from([...ids, 0, 0, 0]);
    const batch = mropeBatchPositions(padded, 1, S, [ids.length], [grids], v);
    for (let c = 0; c < 3; c++) expect(Array.from(batch.subarray(c * S, c * S + ids.length))).toEqual(ref[c]);
    expect(() => mropePositions(ids, ids.length, grids.slice(0, 1), v)).toThrow(/image 2 .* has no image grid/);
  });
});

/** Random text around each image's <|vision_start|> <|image_pad|> x tokens <|vision_end|>. */
function exampleIds(rng: Rng, grids: Grid[]): number[] {
  const text = (n: number) => Array.from({ length: n }, () => Math.floor(rng.next() * 240));
  const ids = text(3);
  for (const [t, h, w] of grids) ids.push(START, ...Array.from({ length: (t * h * w) / 4 }, () => IMAGE), END, ...text(4));
  return ids;
}

/** A PEFT adapter on every linear module of the language model, as LLaMA-Factory targets it (the tower frozen). */
const writeAdapter = (rng: Rng) => writeRefAdapter(refQwen2VLParameters(config), ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], rng, { rank: RANK, alpha: ALPHA, under: 'model.language_model.' });

describe('Qwen2-VL image + text in the engine vs the f64 reference', () => {
  it('logits and loss, base and with LoRA on the language model (recomputed); LoRA gradients vs finite differences', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const at = `(SEED=${rng.seed})`;
    const weights = synthesize(rng);
    const model = await Model.load(gpu, dirFiles(writeCheckpoint(weights)));
    const grids: Grid[] = [[1, 4, 6], [1, 2, 2]];
    const ids = exampleIds(rng, grids);
    const S = ids.length;
    const labels = ids.map((id, t) => (t < S - 6 ? -100 : id));
    const pixels = rng.randn(patchesOf(grids) * FEATURES);
    const v = model.spec.vision!;
    const batch: Batch = {
      B: 1, S, ids: Int32Array.from(ids), labels: shiftLabels(Int32Array.from(labels), 1, S),
      positions: mropeBatchPositions(Int32Array.from(ids), 1, S, [S], [grids], v), images: { pixels, grids },
    };
    const valid = batch.labels.filter((l) => l !== -100).length;
    const image = refQwen2VLVision(config, weights, pixels, grids);

    const ref = refQwen2VLLogits(config, weights, ids, image, grids);
    expect(relErr(await engineLogits(gpu, model, batch), ref), `base logits ${at}`).toBeLessThan(TOL);
    // the image changes the text's logits: the embeddings are really placed
    const blank = { ...batch, images: { pixels: rng.randn(pixels.length), grids } };
    expect(relErr(await engineLogits(gpu, model, blank), ref), `other pixels ${at}`).toBeGreaterThan(1e-2);
    expect(() => new Workspace(model, 1, S, false).load({ ...batch, images: { pixels, grids: grids.slice(0, 1) } })).toThrow(/7 image tokens but its 1 image\(s\) give 6/);

    // text only (no images): 1-D positions are get_rope_index's three equal components
    const text = exampleIds(rng, []);
    const plain: Batch = { B: 1, S: text.length, ids: Int32Array.from(text), labels: new Int32Array(text.length).fill(-100), positions: Int32Array.from(text, (_, t) => t) };
    const triple = { ...plain, positions: mropeBatchPositions(plain.ids, 1, text.length, [text.length], [[]], v) };
    expect(Array.from(await engineLogits(gpu, model, plain))).toEqual(Array.from(await engineLogits(gpu, model, triple)));
    expect(() => new Workspace(model, 1, S, false).load({ ...batch, positions: batch.positions.subarray(0, S) })).toThrow(/needs 66 \(\[3, B \* S\]/);

    const { dir, lora } = writeAdapter(rng);
    // LoRA targets only the language model (the tower is not adaptable), named as PEFT names the HF class's modules
    expect(model.modules().map((m) => m.name)).toEqual([...lora.keys()]);
    const adapter = await Adapter.load(model, readFileSync(join(dir, 'adapter_config.json'), 'utf8'), await fileSource(join(dir, 'adapter_model.safetensors')));
    const refL = refQwen2VLLogits(config, weights, ids, image, grids, lora);
    expect(relErr(await engineLogits(gpu, model, batch, true), refL), `LoRA logits ${at}`).toBeLessThan(TOL);
    const params = adapter.params();
    expect(params.length).toBe(2 * lora.size);
    for (const p of params) gpu.zero(p.grad);
    const ws = new Workspace(model, 1, S, true);
    ws.load(batch);
    forwardBackward(ws, { backward: true, gradScale: 1 / valid });
    const loss = (await gpu.readF32(ws.loss)).reduce((a, b) => a + b, 0) / valid;
    const refLoss = refCausalLoss(refL, [labels], V);
    expect(Math.abs(loss - refLoss) / refLoss, `LoRA loss ${loss} vs ${refLoss} ${at}`).toBeLessThan(TOL);
    // gradients: the largest element and a random direction of a few tensors, against central differences
    const h = 1e-4;
    const refLossOf = (l: RefLora) => refCausalLoss(refQwen2VLLogits(config, weights, ids, image, grids, l), [labels], V);
    for (const p of params.filter((_, i) => i % 5 === 0)) {
      const m = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(p.name)!;
      const mod = lora.get(m[1]!)!, which = m[2] as 'A' | 'B';
      const g = await gpu.readF32(p.grad);
      const base = Float64Array.from(mod[which]);
      let arg = 0;
      for (let i = 1; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[arg]!)) arg = i;
      const units = [Float64Array.from({ length: g.length }, (_, i) => (i === arg ? 1 : 0)), Float64Array.from({ length: g.length }, () => rng.normal())];
      const got = units.map((u) => g.reduce((a, x, i) => a + x * u[i]!, 0));
      const want = units.map((u) => {
        const along = (eps: number) => refLossOf(new Map(lora).set(m[1]!, { ...mod, [which]: base.map((x, i) => x + eps * u[i]!) }));
        return (along(h) - along(-h)) / (2 * h);
      });
      expect(relErr(got, want), `gradient of ${p.name}: ${got} vs ${want} ${at}`).toBeLessThan(1e-3);
    }
    ws.release();
    adapter.release();
    model.release();
  });
});
