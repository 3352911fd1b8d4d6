// LLaMA-Factory's own example configs (examples/train_lora, inference, merge_lora, and the
// extras for GaLore, APOLLO and BAdam) run through
// `crucible` with their relative paths (data/, saves/...), the model path switched to a tiny
// local model, and the run shortened for a software GPU (one step, short sequences).
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main';
import type { CliIO } from '../src/cli/io';

const FIX = join(import.meta.dirname, 'fixtures');
const EXAMPLES = join(FIX, 'llamafactory-examples');
const MODEL = `model_name_or_path=${join(FIX, 'tiny-chat')}`;
const SHORT = ['max_steps=1', 'cutoff_len=64', 'gradient_accumulation_steps=1', 'max_samples=8', 'logging_steps=1'];
let cwd = '';

async function crucible(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const io: CliIO = { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: { ...process.env }, cwd, stdin: Readable.from([]), interactive: false };
  const code = await main(argv, io);
  return { code, out: out.join(''), err: err.join('') };
}

describe("LLaMA-Factory's example configs", () => {
  beforeAll(() => {
    cwd = mkdtempSync(join(tmpdir(), 'lf-examples-'));
    cpSync(join(FIX, 'data/llamafactory'), join(cwd, 'data'), { recursive: true });
    process.chdir(cwd);
  });

  for (const name of readdirSync(join(EXAMPLES, 'train_lora')).sort()) {
    it(`train_lora/${name} trains`, async () => {
      const r = await crucible(['train', join(EXAMPLES, 'train_lora', name), MODEL, ...SHORT]);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/^step 1\/1 /m);
    });
  }

  // full fine-tuning of Llama 3 8B: on the tiny (Qwen-style) model, its template, and a rank within
  // its dimensions (APOLLO's channel factors need rank < min(rows, cols), as apollo_torch's broadcasting does)
  for (const [method, extra] of [['galore', []], ['apollo', ['apollo_rank=4']], ['badam', ['badam_switch_interval=1']]] as const) {
    it(`extras/${method}/llama3_full_sft.yaml trains`, async () => {
      const r = await crucible(['train', join(EXAMPLES, 'extras', method, 'llama3_full_sft.yaml'), MODEL, 'template=qwen3_nothink', ...SHORT, 'max_steps=2', ...extra]);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/^step 2\/2 /m);
    });
  }

  it('ppo/llama3_lora_ppo.yaml trains 2 PPO steps against the reward model the rm example trains first, checkpoints and resumes', async () => {
    const rm = await crucible(['train', join(EXAMPLES, 'train_lora', 'qwen3_lora_reward.yaml'), MODEL, ...SHORT, 'output_dir=saves/llama3-8b/lora/reward']);
    expect(rm.code, rm.err).toBe(0);
    // the tiny model's vocabulary has no Llama 3 special tokens: its own template
    const ppo = [join(EXAMPLES, 'ppo', 'llama3_lora_ppo.yaml'), MODEL, 'template=qwen3_nothink', ...SHORT, 'max_new_tokens=8', 'save_steps=1'];
    const r = await crucible(['train', ...ppo, 'max_steps=2']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^step 2\/2 .*reward /m);
    const out = join(cwd, 'saves/llama3-8b/lora/ppo');
    for (const f of ['adapter_model.safetensors', 'value_head.safetensors', 'checkpoint-1/ppo_state.json']) expect(existsSync(join(out, f)), f).toBe(true);
    const log = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(log).toHaveLength(2);
    for (const k of ['loss', 'reward', 'lr', 'epoch', 'objective/kl', 'objective/kl_coef', 'ppo/loss/policy', 'ppo/loss/value', 'ppo/mean_scores']) expect(log[1][k], k).toBeTypeOf('number');
    const resumed = await crucible(['train', ...ppo, 'max_steps=3', 'overwrite_output_dir=false']);
    expect(resumed.code, resumed.err).toBe(0);
    expect(resumed.err).toMatch(/resuming from checkpoint-2/);
    expect(resumed.out).toMatch(/^step 3\/3 /m);
    const api = await crucible(['train', ...ppo, 'reward_model_type=api']);
    expect(api.code).not.toBe(0);
    expect(api.err).toMatch(/reward_model_type: api .* not supported/);
  });

  it('ppo/llama3_lora_ppo.yaml with reward_model_type: full scores with a full rm run; a folder without a value head is refused', async () => {
    const rm = await crucible(['train', join(EXAMPLES, 'train_lora', 'qwen3_lora_reward.yaml'), MODEL, ...SHORT, 'finetuning_type=full', 'output_dir=saves/rm-full']);
    expect(rm.code, rm.err).toBe(0);
    const ppo = [join(EXAMPLES, 'ppo', 'llama3_lora_ppo.yaml'), MODEL, 'template=qwen3_nothink', ...SHORT, 'max_new_tokens=4', 'output_dir=saves/ppo-full'];
    const r = await crucible(['train', ...ppo, 'reward_model=saves/rm-full', 'reward_model_type=full']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/loading the reward model saves\/rm-full/);
    expect(r.out).toMatch(/^step 1\/1 .*reward /m);
    const bare = await crucible(['train', ...ppo, `reward_model=${join(FIX, 'tiny-chat')}`, 'reward_model_type=full']);
    expect(bare.code).not.toBe(0);
    expect(bare.err).toMatch(/no value_head\.safetensors; a reward model is the output of a `crucible train` run with stage: rm/);
    const noisy = await crucible(['train', ...ppo, 'reward_model=saves/rm-full', 'reward_model_type=full', 'neftune_noise_alpha=5']);
    expect(noisy.err).toMatch(/neftune_noise_alpha is not supported with stage ppo/);
  });

  const STAGE: Record<string, string> = { c4_demo: 'pt', dpo_en_demo: 'dpo', kto_en_demo: 'kto' };
  for (const dataset of ['alpaca_en_demo', 'identity', 'glaive_toolcall_en_demo', 'c4_demo', 'dpo_en_demo', 'kto_en_demo']) {
    it(`crucible preview --json shows ${dataset} as training sees it`, async () => {
      const stage = STAGE[dataset] ?? 'sft';
      const r = await crucible(['preview', MODEL, `dataset=${dataset}`, `stage=${stage}`, 'template=qwen3_nothink', 'cutoff_len=256', '-n', '2', '--json']);
      expect(r.code, r.err).toBe(0);
      const lines = r.out.trim().split('\n').map((l) => JSON.parse(l));
      expect(lines).toHaveLength(2);
      for (const e of lines) {
        const sides = stage === 'dpo' ? [e.chosen, e.rejected] : [e];
        for (const side of sides) {
          expect(side.labels).toHaveLength(side.input_ids.length);
          expect(side.labels.some((l: number) => l !== -100), 'something is learned').toBe(true);
          if (stage !== 'pt') expect(side.labels[0], 'the prompt is masked').toBe(-100);
        }
      }
    });
  }

  it('inference/qwen3_lora_sft.yaml chats with the adapter the sft example trained', async () => {
    const r = await crucible(['chat', join(EXAMPLES, 'inference/qwen3_lora_sft.yaml'), MODEL, 'max_new_tokens=4', '-p', 'Who are you?']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/adapter: saves\/qwen3-4b\/lora\/sft/);
  });

  it('merge_lora/qwen3_lora_sft.yaml merges that adapter into a model folder', async () => {
    const r = await crucible(['export', join(EXAMPLES, 'merge_lora/qwen3_lora_sft.yaml'), MODEL]);
    expect(r.code, r.err).toBe(0);
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json']) expect(existsSync(join(cwd, 'saves/qwen3_sft_merged', f)), f).toBe(true);
  });
});
