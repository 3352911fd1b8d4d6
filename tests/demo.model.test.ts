// The embedded demo model (public/demo/model) and dataset (public/demo/data): they load through
// the engine, the tokenizer round-trips and chats in ChatML, chat produces text, and a few LoRA
// steps on the demo dataset lower the loss. Sized for SwiftShader.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildDataset, getTemplate } from '../src/data';
import { loadTokenizerFromDir, nodeFileAccess } from '../src/data/node';
import { Session } from '../src/engine/session';
import { dirFiles } from '../src/model/files-node';
import { saveModelSafetensors } from '../src/export/save';
import { specFromConfig } from '../src/model/spec';
import type { TrainOptions } from '../src/train/trainer';
import { testGpu } from './helpers/gpu';

const MODEL = join(import.meta.dirname, '../public/demo/model');
const DATA = join(import.meta.dirname, '../public/demo/data');

describe('demo model files', () => {
  it('is a small Llama checkpoint with a ChatML tokenizer', async () => {
    const config = JSON.parse(readFileSync(join(MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config.architectures).toEqual(['LlamaForCausalLM']);
    const spec = specFromConfig(config);
    const tok = await loadTokenizerFromDir(MODEL);
    expect(tok.vocabSize).toBe(spec.vocab);
    expect(tok.eosToken).toBe('<|im_end|>');
    expect(tok.padId).toBe(tok.tokenToId('<|endoftext|>'));
    let bytes = 0;
    for (const f of ['model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'config.json', 'generation_config.json']) bytes += statSync(join(MODEL, f)).size;
    expect(bytes).toBeLessThan(8 * 2 ** 20);
  });

  it('tokenizer round-trips text and encodes the special tokens as one id each', async () => {
    const tok = await loadTokenizerFromDir(MODEL);
    const texts = [
      'Hello world! The quick brown fox jumps over the lazy dog.',
      'Crucible fine-tunes LLMs on WebGPU: 3.14 ≈ π, naïve café, 日本語, emoji 🙂\n\ttabs  and   spaces',
      '',
    ];
    for (const t of texts) expect(tok.decode(tok.encode(t))).toBe(t);
    const ids = tok.encode('<|im_start|>user\nhi<|im_end|>\n');
    expect(ids[0]).toBe(tok.tokenToId('<|im_start|>'));
    expect(ids).toContain(tok.eosId);
    // the model's own template (template unset) is ChatML, as LLaMA-Factory's `chatml`
    const messages = [{ role: 'user' as const, content: 'Who are you?' }];
    const own = getTemplate(undefined, tok).renderForGeneration(messages, {});
    expect(tok.decode(own)).toBe('<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n');
    expect(getTemplate('chatml', tok).renderForGeneration(messages, {})).toEqual(own);
  });
});

describe('demo model on the engine', () => {
  it('saves back to the same model.safetensors, chats, and a few LoRA steps on the demo dataset reduce the loss', async () => {
    const gpu = await testGpu();
    const session = await Session.open(gpu, dirFiles(MODEL));
    try {
      // the file was written by saveModelSafetensors: loading and saving again gives the same bytes
      const saved = await saveModelSafetensors(session.model);
      expect(Buffer.compare(Buffer.from(saved), readFileSync(join(MODEL, 'model.safetensors')))).toBe(0);

      const reply = await session.chat([{ role: 'user', content: 'Who are you?' }], { maxNewTokens: 6, temperature: 0 }, () => {});
      expect(reply.completionTokens).toBeGreaterThan(0);
      expect(reply.text.length).toBeGreaterThan(0);

      const data = await buildDataset(
        { stage: 'sft', dataset: 'identity', dataset_dir: DATA, cutoff_len: 48, seed: 42 },
        { tokenizer: session.tokenizer, ...nodeFileAccess() },
      );
      expect(data.train.length).toBeGreaterThanOrEqual(16);
      const opts: TrainOptions = {
        finetuningType: 'lora', lora: { rank: 8, alpha: 16, targets: 'all', dropout: 0 },
        learningRate: 2e-2, scheduler: 'constant', warmupSteps: 0, warmupRatio: 0, epochs: 0, maxSteps: 6,
        batchSize: 4, gradAccum: 1, maxGradNorm: 1, weightDecay: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8,
        neftuneAlpha: 0, seed: 1, loggingSteps: 1, saveSteps: 0, evalSteps: 0, cutoffLen: 48, recompute: false,
      };
      // the same four examples every step: the loss must fall
      const losses: number[] = [];
      await session.train(opts, data.train.slice(0, 4), [], null, { onLog: (r) => r.loss !== undefined && losses.push(r.loss) });
      expect(losses).toHaveLength(6);
      expect(losses[5]!, `losses ${losses.join(', ')}`).toBeLessThan(losses[0]! - 0.05);
    } finally {
      session.release();
    }
  }, 240_000);
});
