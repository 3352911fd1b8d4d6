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
import { dirFiles } from '../src/model/files-node';
import { Model } from '../src/model/model';
import { encodeSafetensors } from '../src/model/safetensors';
import { specFromConfig } from '../src/model/spec';
import { visionPositions } from '../src/model/vision';
import { expectClose, makeRng, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { refQwen2VLParameters, refQwen2VLVision, refRopeIndex } from './reference/qwen2vl';

type Json = Record<string, unknown>;
type Grid = [number, number, number];
const config = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/synthetic/qwen2_vl/config.json'), 'utf8')) as Json;
const vision = config.vision_config as Json;
const FEATURES = 3 * Number(vision.temporal_patch_size) * Number(vision.patch_size) ** 2;
const TOL = 1e-4;

/** Weights of every parameter transformers creates, around the values a trained model has. */
function synthesize(rng: Rng): Map<string, Float32Array> {
  const w = new Map<string, Float32Array>();
  for (const [name, shape] of refQwen2VLParameters(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let v: Float32Array;
    if (/norm[12]?\.weight$|ln_q\.weight$|layernorm\.weight$/.test(name)) v = Float32Array.from(rng.randn(n, 0.1), (x) => 1 + x);
    else if (name.endsWith('.bias')) v = rng.randn(n, 0.1);
    else if (name.endsWith('embed_tokens.weight')) v = rng.randn(n, 0.3);
    else v = rng.randn(n, (/q_proj|k_proj|attn\.qkv/.test(name) ? 2 : 1) / Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1)));
    w.set(name, v);
  }
  return w;
}

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
