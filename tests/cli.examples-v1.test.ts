// LLaMA-Factory's v1 example configs (examples/v1) run through `crucible train` / `crucible export`
// from a folder laid out like its repository (data/ with the demo data and v1 data YAMLs), the
// model switched to a tiny local one (`model=` override, as v1's OmegaConf overrides) and the run
// cut to 2 steps of short sequences.
import { cpSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main';
import type { CliIO } from '../src/cli/io';

const FIX = join(import.meta.dirname, 'fixtures');
const V1 = join(FIX, 'llamafactory-examples', 'v1');
const MODEL = `model=${join(FIX, 'tiny-chat')}`;
const SHORT = ['max_steps=2', 'cutoff_len=64', 'max_samples=8'];
let cwd = '';

async function crucible(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const io: CliIO = { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: { ...process.env }, cwd, stdin: Readable.from([]), interactive: false };
  const code = await main(argv, io);
  return { code, out: out.join(''), err: err.join('') };
}

/** Pair records as HuggingFaceH4/orca_dpo_pairs has them (the v1 DPO example's Hub dataset), written here. */
const PAIRS = [
  ['What is 2+2?', '4.', 'Five.'],
  ['Name a primary colour.', 'Red.', 'Purple.'],
  ['Capital of France?', 'Paris.', 'Lyon.'],
  ['Opposite of hot?', 'Cold.', 'Warm.'],
].map(([q, good, bad]) => {
  const prompt = [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: q }];
  return { prompt: q, chosen: [...prompt, { role: 'assistant', content: good }], rejected: [...prompt, { role: 'assistant', content: bad }] };
});

describe("LLaMA-Factory's v1 example configs", () => {
  beforeAll(() => {
    cwd = mkdtempSync(join(tmpdir(), 'lf-v1-examples-'));
    cpSync(join(FIX, 'data/llamafactory'), join(cwd, 'data'), { recursive: true });
    writeFileSync(join(cwd, 'data/pairs.jsonl'), PAIRS.map((p) => JSON.stringify(p)).join('\n'));
    writeFileSync(join(cwd, 'data/v1_dpo_local.yaml'), 'pairs:\n  path: data/pairs.jsonl\n  source: local\n  converter: pair\n');
    process.chdir(cwd);
  });

  const TRAINS = [
    'train_lora/train_lora_sft.yaml',
    'train_lora/train_lora_sft_rank0.yaml',
    'train_freeze/train_freeze_sft.yaml',
    'train_qlora/quantization.yaml',
    'train_full/train_full_fsdp2.yaml',
    'train_full/train_full_deepspeed.yaml',
    'train_full/train_full_liger_kernel.yaml',
    'train_full/train_full_ulysses_cp.yaml',
    'train_batching_strategy/train_full_fsdp2_batching_normal.yaml',
    'train_batching_strategy/train_full_fsdp2_padding_free.yaml',
    'train_batching_strategy/train_full_fsdp2_dynamic_batching.yaml',
    'train_batching_strategy/train_full_fsdp2_dynamic_padding_free.yaml',
  ];
  for (const name of TRAINS) {
    it(`${name} trains 2 steps`, async () => {
      // several examples share an output_dir (which would resume); the sft one keeps its own for export_lora.yaml
      const out = name === 'train_lora/train_lora_sft.yaml' ? [] : [`output_dir=outputs/${name.replace(/\W/g, '_')}`];
      const r = await crucible(['train', join(V1, name), MODEL, ...SHORT, ...out]);
      expect(r.code, r.err).toBe(0);
      expect(r.err).toMatch(/is a LLaMA-Factory v1 config/);
      expect(r.out).toMatch(/^step 2\/2 /m);
    });
  }

  it('export_lora.yaml merges the adapter train_lora_sft.yaml trained', async () => {
    const r = await crucible(['export', join(V1, 'train_lora/export_lora.yaml'), MODEL]);
    expect(r.code, r.err).toBe(0);
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json']) expect(existsSync(join(cwd, 'merge_lora_model', f)), f).toBe(true);
  });

  it('train_lora_dpo.yaml trains DPO on pair data (a local copy of its Hub dataset)', async () => {
    const r = await crucible(['train', join(V1, 'train_lora/train_lora_dpo.yaml'), MODEL, ...SHORT, 'train_dataset=data/v1_dpo_local.yaml', 'output_dir=outputs/dpo']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/train: dpo · LoRA r=16 alpha=32/);
    expect(r.out).toMatch(/^step 2\/2 .*reward_acc/m);
  });

  it('train_full_muon.yaml is refused, naming the optimizer', async () => {
    const r = await crucible(['train', join(V1, 'train_full/train_full_muon.yaml'), MODEL, ...SHORT]);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/optim_config: name "muon": Crucible implements AdamW only/);
  });

  it('train_multimodal.yaml is refused, naming the data format', async () => {
    const r = await crucible(['train', join(V1, 'train_full/train_multimodal.yaml'), MODEL, ...SHORT]);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/multimodal_demo: no converter/);
  });
});
