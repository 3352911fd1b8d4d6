// do_predict with predict_with_generate on an eval set of records with images (Qwen2-VL, template
// qwen2_vl), through `crucible train`: each prediction in generated_predictions.jsonl must be the
// greedy answer Generator.generate gives directly for the same prompt (written out here as the
// template renders it) with that record's images processed here, and, to show the pictures are
// used, some answer must change when the prompt goes without its images. A tiny random Qwen2-VL
// (tests/helpers/qwen2vl.ts; SEED=... replays), one record with two images.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { expect, it } from 'vitest';
import { main } from '../src/cli/main';
import type { CliIO } from '../src/cli/io';
import { decodeImage } from '../src/data/image/decode';
import { LLAMAFACTORY_PIXEL_LIMITS, processQwen2VLImage } from '../src/data/image/qwen2vl';
import { Session } from '../src/engine/session';
import { dirFiles } from '../src/model/files-node';
import { Generator } from '../src/model/generate';
import type { PromptImage } from '../src/model/prompt-images';
import { makeRng, type Rng } from './helpers/check';
import { testGpu } from './helpers/gpu';
import { encodePng } from './helpers/png-encode';
import { qwen2vlConfig, synthesizeQwen2VL, writeQwen2VL } from './helpers/qwen2vl';

const MAX_NEW = 8;

function png(rng: Rng, width: number, height: number): Uint8Array {
  return encodePng({ width, height, colorType: 2, depth: 8, samples: Array.from({ length: width * height * 3 }, () => Math.floor(rng.next() * 256)) });
}

const RECORDS = [
  { user: '<image>What is it?', answer: 'red', images: ['a.png'] },
  { user: 'Compare <image> with <image>.', answer: 'the same', images: ['b.png', 'c.png'] },
  { user: 'Name <image>', answer: 'green', images: ['c.png'] },
];

it('crucible train do_predict on image records: predictions are Generator.generate with the records\' images', async () => {
  const rng = makeRng();
  const at = `(SEED=${rng.seed})`;
  const config = qwen2vlConfig(true);
  const model = writeQwen2VL(synthesizeQwen2VL(rng, config), config, true);
  const cwd = mkdtempSync(join(tmpdir(), 'qwen2vl-predict-'));
  const data = join(cwd, 'data');
  mkdirSync(data);
  // sizes the preprocessor (max 256 pixels, 2-pixel patches merged 2 x 2) turns into different grids
  const pngs: Record<string, Uint8Array> = { 'a.png': png(rng, 28, 28), 'b.png': png(rng, 36, 20), 'c.png': png(rng, 20, 32) };
  for (const [name, bytes] of Object.entries(pngs)) writeFileSync(join(data, name), bytes);
  writeFileSync(join(data, 'pics.json'), JSON.stringify(RECORDS.map((r) => ({ messages: [{ role: 'user', content: r.user }, { role: 'assistant', content: r.answer }], images: r.images }))));
  writeFileSync(join(data, 'dataset_info.json'), JSON.stringify({ pics: { file_name: 'pics.json', formatting: 'sharegpt', columns: { messages: 'messages', images: 'images' }, tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant' } } }));
  const out = join(cwd, 'out');
  const stdout: string[] = [], stderr: string[] = [];
  const io: CliIO = { stdout: (t) => void stdout.push(t), stderr: (t) => void stderr.push(t), env: { ...process.env }, cwd, stdin: Readable.from([]), interactive: false };
  const code = await main(['train', `model_name_or_path=${model}`, 'stage=sft', 'do_predict=true', 'predict_with_generate=true', 'eval_dataset=pics', `dataset_dir=${data}`,
    'template=qwen2_vl', 'cutoff_len=256', `max_new_tokens=${MAX_NEW}`, 'do_sample=false', 'per_device_eval_batch_size=2', `output_dir=${out}`], io);
  expect(code, stderr.join('')).toBe(0);
  const written = readFileSync(join(out, 'generated_predictions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { prompt: string; predict: string; label: string });
  expect(written).toHaveLength(RECORDS.length);

  const session = await Session.open(await testGpu(), dirFiles(model));
  const tok = session.tokenizer;
  const cfg = session.imageConfig!;
  const stop = [tok.requireTokenId('<|im_end|>')];
  const gen = new Generator(session.model);
  const greedy = async (prompt: number[], images: PromptImage[]) => {
    const ids: number[] = [];
    for await (const id of gen.generate(prompt, { maxNewTokens: MAX_NEW, temperature: 0, stopIds: stop }, images)) ids.push(id);
    return tok.decode(ids, { skipSpecialTokens: true });
  };
  const render = (user: string) => `<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n`;
  let changed = 0;
  try {
    for (const [i, r] of RECORDS.entries()) {
      const images: PromptImage[] = [];
      for (const name of r.images) {
        const p = processQwen2VLImage(await decodeImage(pngs[name]!), cfg, LLAMAFACTORY_PIXEL_LIMITS);
        images.push({ pixels: p.pixelValues, grid: p.grid });
      }
      let k = 0;
      const text = render(r.user.replace(/<image>/g, () => {
        const [t, h, w] = images[k++]!.grid;
        return `<|vision_start|>${'<|image_pad|>'.repeat((t * h * w) / 4)}<|vision_end|>`;
      }));
      expect(written[i]!.prompt, `record ${i}`).toBe(text);
      expect(written[i]!.label).toBe(`${r.answer}\n`);
      const want = await greedy(tok.encode(text), images);
      expect(written[i]!.predict, `record ${i}: predict vs Generator.generate with its images ${at}`).toBe(want);
      if ((await greedy(tok.encode(render(r.user.replace(/<image>/g, ''))), [])) !== want) changed++;
    }
  } finally {
    gen.release();
    session.release();
  }
  expect(changed, `answers that change without the images ${at}`).toBeGreaterThan(0);
  expect(JSON.parse(readFileSync(join(out, 'predict_results.json'), 'utf8'))).toHaveProperty('predict_bleu-4');
});
