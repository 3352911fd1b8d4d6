// The app's methods beyond LoRA (OFT, QOFT), its optimizer choice (GaLore, APOLLO, BAdam, Adam-mini,
// Muon), half precision as the engine decides it, the OFT memory estimate, and the merged model as
// one zip: each form state the settings produce is one the config reader (the worker's) accepts.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { stagePanels } from '../src/ui/lib/charts';
import { loadRunYaml } from '../src/ui/lib/llamafactory';
import { countParams, estimateMemory } from '../src/ui/lib/estimate';
import { mergedFolder, zipMerged } from '../src/ui/lib/merged-zip';
import type { RunRecord } from '../src/train/store-browser';
import { rewardRunsFor } from '../src/ui/lib/run-names';
import { DEFAULT_SETTINGS, METHODS, rewardRunId, withStageKeys, OPTIMIZERS, halfPrecision, methodOf, modelFormat, optimizerOf, optimizersFor, trainsAdapter, withMethod, withOptimizer, type Settings } from '../src/ui/lib/settings';
import { checkSettings } from '../src/ui/lib/validate';
import { makeRng } from './helpers/check';

const read = (s: Settings) => configFromObject({ dataset: 'app_dataset', ...s }, { source: 'settings' }).config;
const DEMO_CONFIG = JSON.parse(readFileSync(join(import.meta.dirname, '../public/demo/model/config.json'), 'utf8')) as Record<string, unknown>;

describe('methods', () => {
  it('every method round-trips through methodOf and passes the config reader, from every other method', () => {
    for (const from of METHODS) {
      for (const to of METHODS) {
        const s = withMethod(withMethod(DEFAULT_SETTINGS, from.value), to.value);
        expect(methodOf(s), `${from.value} -> ${to.value}`).toBe(to.value);
        expect(checkSettings(s).problems, `${from.value} -> ${to.value}`).toEqual([]);
      }
    }
  });

  it('OFT and QOFT carry PEFT OFT keys (block size 32, all layers); the others none', () => {
    const oft = withMethod(DEFAULT_SETTINGS, 'oft');
    expect(read(oft)).toMatchObject({ finetuning_type: 'oft', oft_block_size: 32, oft_rank: 0, oft_target: ['all'], quantization_bit: null });
    expect(read(withMethod(DEFAULT_SETTINGS, 'qoft'))).toMatchObject({ finetuning_type: 'oft', quantization_bit: 4 });
    expect(trainsAdapter(oft)).toBe(true);
    // a value set in OFT survives QOFT, and leaves with LoRA
    const tuned = withMethod({ ...oft, oft_block_size: 0, oft_rank: 4 }, 'qoft');
    expect([tuned.oft_block_size, tuned.oft_rank]).toEqual([0, 4]);
    const back = withMethod(tuned, 'lora');
    expect(Object.keys(back).filter((k) => k.startsWith('oft_') || k === 'module_dropout')).toEqual([]);
    expect(trainsAdapter(withMethod(DEFAULT_SETTINGS, 'full'))).toBe(false);
  });

  it('an OFT config loads into the form, and the form writes it back', () => {
    const loaded = loadRunYaml('finetuning_type: oft\noft_rank: 8\noft_block_size: 0\nmodule_dropout: 0.1\nquantization_bit: 4\n', 'qoft.yaml');
    expect(loaded.skipped).toEqual([]);
    expect(methodOf(loaded.settings)).toBe('qoft');
    expect(loaded.settings).toMatchObject({ oft_rank: 8, oft_block_size: 0, module_dropout: 0.1, oft_target: 'all' });
    expect(read(loaded.settings)).toMatchObject({ finetuning_type: 'oft', oft_rank: 8, oft_block_size: 0, module_dropout: 0.1 });
    // left out of the YAML: the form holds the config's defaults, so its fields are not empty
    expect(loadRunYaml('finetuning_type: oft\n').settings).toMatchObject({ oft_block_size: 32, oft_rank: 0, oft_target: 'all' });
  });

  it("estimates OFT's trainable parameters as PEFT's oft_R holds them (k / b blocks of b(b-1)/2 per layer)", () => {
    const rng = makeRng();
    const b = [4, 12, 32][Math.floor(rng.next() * 3)]!;
    const e = estimateMemory(DEMO_CONFIG, { ...withMethod(DEFAULT_SETTINGS, 'oft'), oft_block_size: b, oft_target: 'q_proj,down_proj' });
    // q_proj takes hidden 64 inputs; down_proj 176, whose block is the divisor of 176 nearest to b, the lower on a tie (PEFT)
    const near = (k: number) => [...Array(k).keys()].map((i) => i + 1).filter((d) => k % d === 0).sort((x, y) => Math.abs(x - b) - Math.abs(y - b) || x - y)[0]!;
    const per = (k: number) => (k * (near(k) - 1)) / 2;
    expect(e.trainable).toBe(2 * (per(64) + per(176)));
  });
});

describe('optimizers', () => {
  it('each optimizer the method takes passes the config reader with its switch set, and reads back', () => {
    for (const method of ['lora', 'oft', 'full', 'freeze'] as const) {
      const base = withMethod(DEFAULT_SETTINGS, method);
      for (const o of optimizersFor(base)) {
        const s = withOptimizer(base, o.value);
        expect(optimizerOf(s), `${method} ${o.value}`).toBe(o.value);
        expect(checkSettings(s).problems, `${method} ${o.value}`).toEqual([]);
        const c = read(s) as unknown as Record<string, unknown>;
        for (const x of OPTIMIZERS) if (x.key) expect(c[x.key], `${method} ${o.value}: ${x.key}`).toBe(x.value === o.value);
      }
    }
    expect(optimizersFor(withMethod(DEFAULT_SETTINGS, 'lora')).map((o) => o.value)).toEqual(['adamw', 'adam_mini', 'muon']);
  });

  it("switching drops the previous optimizer's keys; a LoRA method takes a full run's GaLore back to AdamW", () => {
    const galore = withOptimizer({ ...withMethod(DEFAULT_SETTINGS, 'full'), galore_rank: 4 }, 'galore');
    expect(galore).toMatchObject({ use_galore: true, galore_rank: 4, galore_update_interval: 200 });
    const badam = withOptimizer(galore, 'badam');
    expect(Object.keys(badam).filter((k) => k.startsWith('galore') || k === 'use_galore')).toEqual([]);
    expect(badam).toMatchObject({ use_badam: true, badam_mode: 'layer' });
    const lora = withMethod(badam, 'lora');
    expect(optimizerOf(lora)).toBe('adamw');
    expect(checkSettings(lora).problems).toEqual([]);
    expect(optimizerOf(withMethod(withOptimizer(DEFAULT_SETTINGS, 'muon'), 'oft'))).toBe('muon');
  });
});

describe('stage ppo', () => {
  it("takes PPO's keys at LLaMA-Factory's defaults (short rollouts), and drops them for another stage", () => {
    const ppo = withStageKeys({ ...DEFAULT_SETTINGS, stage: 'ppo' });
    expect(ppo).toMatchObject({ reward_model: null, reward_model_type: 'lora', ppo_epochs: 4, ppo_buffer_size: 1, ppo_target: 6, ppo_score_norm: false, ppo_whiten_rewards: false, max_new_tokens: 32 });
    const back = withStageKeys({ ...ppo, stage: 'sft' });
    expect(Object.keys(back).filter((k) => k.startsWith('ppo_') || k.startsWith('reward_model') || k === 'max_new_tokens')).toEqual([]);
  });

  it('blocks Start until a reward model is chosen, with LoRA and without an eval split, as the engine would refuse', () => {
    const ppo = withStageKeys({ ...DEFAULT_SETTINGS, stage: 'ppo' });
    expect(checkSettings(ppo).problems.map((p) => p.key)).toEqual(['reward_model']);
    const chosen = { ...ppo, reward_model: 'run:run-7' };
    expect(rewardRunId(chosen)).toBe('run-7');
    expect(checkSettings(chosen).problems).toEqual([]);
    expect(read(chosen)).toMatchObject({ stage: 'ppo', reward_model: 'run:run-7', max_new_tokens: 32 });
    expect(checkSettings({ ...withMethod(chosen, 'full'), val_size: 0.2 }).problems.map((p) => p.key).sort()).toEqual(['finetuning_type', 'val_size']);
    expect(checkSettings({ ...withMethod(DEFAULT_SETTINGS, 'full'), val_size: 0.2 }).problems).toEqual([]);
  });

  it("charts LLaMA-Factory's PPO keys (loss, reward) and the KL", () => {
    expect(stagePanels({ stage: 'ppo' }).map((p) => p.title)).toEqual(['loss', 'reward', 'objective/kl', 'lr']);
  });

  it("offers this model's LoRA rm runs with a checkpoint as reward models", () => {
    const run = (id: string, stage: string, extra: Partial<RunRecord> = {}): RunRecord => ({
      id, name: id, createdAt: 0, updatedAt: 0, status: 'done', model: { kind: 'url', id: 'crucible-demo' }, dataset: { kind: 'demo', name: 'd' },
      settings: { ...DEFAULT_SETTINGS, stage }, log: [], checkpoints: [{ dir: 'checkpoint-2', step: 2 }], totalSteps: 2, step: 2, ...extra,
    } as RunRecord);
    const runs = [
      run('rm-ok', 'rm'),
      run('sft', 'sft'),
      run('rm-no-ck', 'rm', { checkpoints: [] }),
      run('rm-other-model', 'rm', { model: { kind: 'hub', id: 'Qwen/Qwen3-0.6B' } }),
      run('rm-full', 'rm', { settings: { ...withMethod(DEFAULT_SETTINGS, 'full'), stage: 'rm' } }),
    ];
    expect(rewardRunsFor(runs, { kind: 'url', id: 'crucible-demo' }).map((r) => r.id)).toEqual(['rm-ok']);
  });
});

describe('half precision', () => {
  const caps = (f16: boolean) => ({ f16, adapter: 'Test GPU' });
  it('is the f16 tier for LoRA on a device with shader-f16, and says why not otherwise', () => {
    const lora = { ...DEFAULT_SETTINGS, bf16: true };
    expect(halfPrecision(lora, caps(true))).toEqual({ f16: true, note: null });
    expect(modelFormat(lora, caps(true))).toEqual({ quantizationBit: null, f16: true });
    expect(halfPrecision(lora, caps(false))).toEqual({ f16: false, note: 'bf16: Test GPU has no shader-f16; training runs in f32' });
    expect(halfPrecision({ ...withMethod(DEFAULT_SETTINGS, 'oft'), fp16: true }, caps(true)).note).toMatch(/^fp16: OFT trains in f32/);
    expect(halfPrecision({ ...withMethod(DEFAULT_SETTINGS, 'qlora'), bf16: true }, caps(true)).note).toMatch(/^bf16: the base is quantized/);
    expect(modelFormat(withMethod(DEFAULT_SETTINGS, 'qoft'), caps(true))).toEqual({ quantizationBit: 4, f16: false });
    expect(halfPrecision(DEFAULT_SETTINGS, caps(true))).toEqual({ f16: false, note: null });
    expect(checkSettings(lora).problems).toEqual([]);
  });

  it('halves the estimate of the base linear weights in the f16 tier', () => {
    const f32 = estimateMemory(DEMO_CONFIG, DEFAULT_SETTINGS);
    const f16 = estimateMemory(DEMO_CONFIG, { ...DEFAULT_SETTINGS, f16: true });
    const { linear } = countParams(f32.spec);
    expect(f32.weights - f16.weights).toBe(linear * 2);
  });
});

describe('merged model zip', () => {
  it('holds every file of the export in one folder, byte for byte (checked with unzip)', () => {
    const rng = makeRng();
    const files: Record<string, Uint8Array> = {
      'config.json': new TextEncoder().encode('{"model_type": "llama"}'),
      'model-00001-of-00002.safetensors': Uint8Array.from({ length: 300 + Math.floor(rng.next() * 100) }, () => Math.floor(rng.next() * 256)),
      'model-00002-of-00002.safetensors': Uint8Array.from({ length: 50 }, () => Math.floor(rng.next() * 256)),
      'model.safetensors.index.json': new TextEncoder().encode('{"weight_map": {}}'),
    };
    const folder = mergedFolder('Qwen/Qwen3-0.6B', 'run-20261205-170825-gme6');
    expect(folder).toBe('Qwen3-0.6B-run-20261205-170825-gme6-merged');
    expect(mergedFolder('crucible-demo', null)).toBe('crucible-demo-merged');
    const dir = mkdtempSync(join(tmpdir(), 'crucible-merged-zip-'));
    writeFileSync(join(dir, 'm.zip'), zipMerged(files, folder));
    expect(execFileSync('unzip', ['-t', join(dir, 'm.zip')], { encoding: 'utf8' })).toMatch(/No errors detected/);
    execFileSync('unzip', ['-q', join(dir, 'm.zip'), '-d', join(dir, 'out')]);
    for (const [name, bytes] of Object.entries(files)) expect(new Uint8Array(readFileSync(join(dir, 'out', folder, name)))).toEqual(bytes);
    expect(() => zipMerged({}, folder)).toThrow('the merged model has no files');
  });
});
