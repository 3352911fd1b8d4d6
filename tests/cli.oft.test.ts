// LLaMA-Factory's OFT examples (examples/extras/oft, extras/qoft's bitsandbytes one) train through
// `crucible train` on a tiny local model (the GPTQ / AWQ ones start from pre-quantized
// checkpoints): the adapter is PEFT's OFT format, and a run resumed from a checkpoint continues
// the same loss curve.
import { cpSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main';
import type { CliIO } from '../src/cli/io';
import { openSafetensors, readF32 } from '../src/model/safetensors';
import { fileSource } from '../src/model/files-node';

const FIX = join(import.meta.dirname, 'fixtures');
const EXAMPLES = join(FIX, 'llamafactory-examples', 'extras');
const MODEL = `model_name_or_path=${join(FIX, 'tiny-chat')}`;
const SHORT = ['cutoff_len=64', 'gradient_accumulation_steps=1', 'max_samples=8', 'logging_steps=1', 'template=qwen3_nothink', 'overwrite_output_dir=true'];
let cwd = '';

async function crucible(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const io: CliIO = { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: { ...process.env }, cwd, stdin: Readable.from([]), interactive: false };
  const code = await main(argv, io);
  return { code, out: out.join(''), err: err.join('') };
}

const losses = (dir: string): number[] =>
  readFileSync(join(cwd, dir, 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.loss !== undefined).map((r) => r.loss);

describe("LLaMA-Factory's OFT example configs", () => {
  beforeAll(() => {
    cwd = mkdtempSync(join(tmpdir(), 'lf-oft-'));
    cpSync(join(FIX, 'data/llamafactory'), join(cwd, 'data'), { recursive: true });
    process.chdir(cwd);
  });

  it('extras/oft/llama3_oft_sft.yaml trains a PEFT OFT adapter, a resumed run continues its loss curve, chat loads it, export merges it', async () => {
    const yaml = join(EXAMPLES, 'oft', 'llama3_oft_sft.yaml');
    const r = await crucible(['train', yaml, MODEL, ...SHORT, 'max_steps=2', 'save_steps=1', 'output_dir=saves/oft']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^step 2\/2 /m);
    const cfg = JSON.parse(readFileSync(join(cwd, 'saves/oft/adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'OFT', r: 0, oft_block_size: 32, use_cayley_neumann: true, num_cayley_neumann_terms: 5, coft: false, block_share: false });
    const file = await openSafetensors(await fileSource(join(cwd, 'saves/oft/adapter_model.safetensors')));
    // hidden 64 and intermediate 128 in blocks of 32: [2, 496] and [4, 496]
    expect(file.tensors.get('base_model.model.model.layers.0.self_attn.q_proj.oft_R.weight')?.shape).toEqual([2, 496]);
    expect(file.tensors.get('base_model.model.model.layers.1.mlp.down_proj.oft_R.weight')?.shape).toEqual([4, 496]);
    const full = losses('saves/oft');
    expect(full).toHaveLength(2);
    expect(full[1]).not.toBe(full[0]);

    // only the first checkpoint: the resumed run's second step is its own
    cpSync(join(cwd, 'saves/oft/checkpoint-1'), join(cwd, 'saves/oft-resumed/checkpoint-1'), { recursive: true });
    const resumed = await crucible(['train', yaml, MODEL, ...SHORT.filter((a) => !a.startsWith('overwrite')), 'max_steps=2', 'save_steps=1',
      'output_dir=saves/oft-resumed', 'resume_from_checkpoint=checkpoint-1']);
    expect(resumed.code, resumed.err).toBe(0);
    expect(losses('saves/oft-resumed').at(-1)).toBeCloseTo(full[1]!, 5);

    const chat = await crucible(['chat', MODEL, 'adapter_name_or_path=saves/oft', 'template=qwen3_nothink', 'max_new_tokens=4', '-p', 'Who are you?']);
    expect(chat.code, chat.err).toBe(0);
    expect(chat.err).toMatch(/adapter: saves\/oft/);

    const merged = await crucible(['export', MODEL, 'adapter_name_or_path=saves/oft', 'export_dir=saves/oft-merged', 'template=qwen3_nothink']);
    expect(merged.code, merged.err).toBe(0);
    const base = await openSafetensors(await fileSource(join(FIX, 'tiny-chat/model.safetensors')));
    const out = await openSafetensors(await fileSource(join(cwd, 'saves/oft-merged/model.safetensors')));
    const q = 'model.layers.0.self_attn.q_proj.weight';
    expect(await readF32(out, q)).not.toEqual(await readF32(base, q));
    expect(await readF32(out, 'model.embed_tokens.weight')).toEqual(await readF32(base, 'model.embed_tokens.weight'));
  });

  it('extras/qoft/llama3_oft_sft_bnb_npu.yaml trains OFT on a 4-bit base (QOFT)', async () => {
    const r = await crucible(['train', join(EXAMPLES, 'qoft', 'llama3_oft_sft_bnb_npu.yaml'), MODEL, ...SHORT, 'max_steps=2', 'output_dir=saves/qoft']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^step 2\/2 /m);
    expect(JSON.parse(readFileSync(join(cwd, 'saves/qoft/adapter_config.json'), 'utf8')).peft_type).toBe('OFT');
  });
});
