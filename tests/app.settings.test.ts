// The app's settings checks (the config reader's problems mapped to fields), the SFT loss and
// best-checkpoint settings as the engine reads them, the Quick demo's defaults, the ETA from
// measured steps, run names and the adapter a fresh page offers.
import { describe, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { bestModelProblems } from '../src/config/best-model';
import { trainOptionsFromConfig } from '../src/engine/options';
import type { TokenLoss } from '../src/kernels/loss';
import { TEMPLATE_NAMES } from '../src/data/templates/catalog';
import type { RunRecord } from '../src/train/store-browser';
import { etaSeconds } from '../src/ui/lib/eta';
import { adapterLabel, adapterRunFor, cleanRunName, modelShortName, runName, shortTime } from '../src/ui/lib/run-names';
import { BEST_MODEL_KEYS, DEFAULT_SETTINGS, PRESETS, SFT_LOSSES, epochSteps, hasEvalSplit, sftLossOf, sftLossesFor, showsBestModel, withMethod, withSetting, withSftLoss, withStageKeys, type SftLoss } from '../src/ui/lib/settings';
import { asksForTemplate, checkSettings, problemFor } from '../src/ui/lib/validate';

describe('checkSettings', () => {
  it('passes the defaults and every preset', () => {
    expect(checkSettings(DEFAULT_SETTINGS).problems).toEqual([]);
    for (const p of PRESETS) expect(checkSettings(p.settings).problems, p.name).toEqual([]);
  });

  it('names the field of each problem: a negative learning rate, rank 0', () => {
    const c = checkSettings({ ...DEFAULT_SETTINGS, learning_rate: -0.5, lora_rank: 0 });
    expect(c.problems.map((p) => p.key).sort()).toEqual(['learning_rate', 'lora_rank']);
    expect(problemFor(c, 'learning_rate')).toBe('learning_rate: must be >= 0, got -0.5');
    expect(problemFor(c, 'lora_rank')).toBe('lora_rank: must be >= 1, got 0');
    expect(problemFor(c, 'seed')).toBeUndefined();
  });

  it('reports cross-field problems against their key (rsLoRA without LoRA)', () => {
    const c = checkSettings({ ...DEFAULT_SETTINGS, finetuning_type: 'full', use_rslora: true });
    expect(c.problems).toEqual([{ key: 'use_rslora', message: 'use_rslora is only valid for LoRA training (finetuning_type: lora)' }]);
  });

  it('says that max_steps 0 trains by epochs', () => {
    const c = checkSettings({ ...DEFAULT_SETTINGS, max_steps: 0, num_train_epochs: 2 });
    expect(c.problems).toEqual([]);
    expect(c.notices.join('\n')).toMatch(/max_steps: 0 sets no step limit.*num_train_epochs \(2\)/);
  });

  it('accepts every key of the Advanced group as the worker reads it', () => {
    const advanced = { template: TEMPLATE_NAMES[0], lora_dropout: 0.05, use_rslora: true, use_dora: true, loraplus_lr_ratio: 16, neftune_noise_alpha: 5, max_grad_norm: 0.5, max_samples: 10, train_on_prompt: true, seed: 7, logging_steps: 2 };
    expect(checkSettings({ ...DEFAULT_SETTINGS, ...advanced }).problems).toEqual([]);
    const { config } = configFromObject({ dataset: 'x', ...DEFAULT_SETTINGS, ...advanced });
    for (const [k, v] of Object.entries(advanced)) expect(config[k as keyof typeof config], k).toBe(v);
    expect(checkSettings({ ...DEFAULT_SETTINGS, pissa_init: true }).problems).toEqual([]);
  });

  it('switching to full or freeze drops the LoRA-only keys the reader would refuse', () => {
    const s = withMethod({ ...DEFAULT_SETTINGS, use_rslora: true, pissa_init: true, loraplus_lr_ratio: 8 }, 'full');
    expect(checkSettings(s).problems).toEqual([]);
    expect(s).not.toHaveProperty('use_rslora');
  });

  it('recognises errors that ask for a template', () => {
    expect(asksForTemplate("the model's chat template does not render the tools; set `template` to a named template")).toBe(true);
    expect(asksForTemplate('learning_rate: must be >= 0, got -1')).toBe(false);
  });
});

it('the Quick demo is the check-sft recipe on identity: LoRA r 8, lr 1e-2, 30 steps of 8, seeded', () => {
  const demo = PRESETS.find((p) => p.name === 'Quick demo')!;
  expect(demo.demoDataset).toBe('identity');
  expect(demo.settings).toBe(DEFAULT_SETTINGS);
  expect(demo.settings).toMatchObject({ finetuning_type: 'lora', lora_rank: 8, lora_alpha: 16, learning_rate: 1e-2, max_steps: 30, per_device_train_batch_size: 8, cutoff_len: 64, warmup_ratio: 0, seed: 42 });
});

it('epochSteps counts optimizer steps as the trainer does', () => {
  expect(epochSteps({ per_device_train_batch_size: 8, gradient_accumulation_steps: 1, num_train_epochs: 1 }, 24)).toBe(3);
  expect(epochSteps({ per_device_train_batch_size: 5, gradient_accumulation_steps: 2, num_train_epochs: 3 }, 24)).toBe(9);
  expect(epochSteps({ per_device_train_batch_size: 4, gradient_accumulation_steps: 1, num_train_epochs: 0.5 }, 24)).toBe(3);
});

describe('etaSeconds', () => {
  it('waits for two timed steps, then ignores the slow first (compile) step', () => {
    expect(etaSeconds([], 30)).toBeUndefined();
    expect(etaSeconds([{ step: 1, at: 60_000 }], 30)).toBeUndefined();
    // step 1 took 60 s (compile), then 2 s per step: 27 steps left after step 3
    expect(etaSeconds([{ step: 1, at: 60_000 }, { step: 2, at: 62_000 }, { step: 3, at: 64_000 }], 30)).toBeCloseTo(54);
  });

  it('starts over from the first step of a resumed run and counts logged steps apart', () => {
    expect(etaSeconds([{ step: 10, at: 0 }, { step: 15, at: 5000 }], 20)).toBeCloseTo(5);
    expect(etaSeconds([{ step: 19, at: 0 }, { step: 20, at: 1000 }], 20)).toBe(0);
  });
});

describe('run names', () => {
  const at = new Date(2026, 11, 5, 7, 21).getTime();
  it('say dataset, stage, method, model and time', () => {
    expect(shortTime(at)).toBe('Dec 5 07:21');
    expect(runName({ dataset: 'identity', model: modelShortName({ kind: 'demo' }), settings: DEFAULT_SETTINGS, at })).toBe('identity · LoRA · Demo model · Dec 5 07:21');
    expect(runName({ dataset: 'dpo_en_demo', model: modelShortName({ kind: 'hub', id: 'Qwen/Qwen3-0.6B' }), settings: { ...DEFAULT_SETTINGS, stage: 'dpo', pref_loss: 'orpo', quantization_bit: 4 }, at })).toBe('dpo_en_demo · dpo (orpo) QLoRA · Qwen3-0.6B · Dec 5 07:21');
    expect(cleanRunName('  my\n  run  ')).toBe('my run');
  });

  const run = (id: string, o: Partial<RunRecord> = {}): RunRecord => ({
    id, name: `name of ${id}`, createdAt: 0, updatedAt: 0, status: 'done', model: { kind: 'url', id: 'crucible-demo' }, dataset: { kind: 'url', name: 'identity' },
    settings: { finetuning_type: 'lora' }, log: [], checkpoints: [{ dir: 'checkpoint-2', step: 2 }], totalSteps: 2, step: 2, ...o,
  });

  it('label an adapter by its run name', () => {
    const runs = [run('run-a'), run('run-b')];
    expect(adapterLabel('run run-b', runs)).toBe('name of run-b');
    expect(adapterLabel('run run-a (checkpoint-30)', runs)).toBe('name of run-a (checkpoint-30)');
    expect(adapterLabel('run run-gone (checkpoint-30)', runs)).toBe('run run-gone (checkpoint-30)');
    expect(adapterLabel('adapter_model.safetensors', runs)).toBe('adapter_model.safetensors');
    expect(adapterLabel(null, runs)).toBe('trained in this session');
  });

  it('offer the chosen run after a reload, else the newest LoRA run of the model with a checkpoint', () => {
    const demo = { kind: 'url', id: 'crucible-demo' };
    const runs = [run('full', { settings: { finetuning_type: 'full' } }), run('none', { checkpoints: [] }), run('hub', { model: { kind: 'hub', id: 'x/y' } }), run('new'), run('old')];
    expect(adapterRunFor(runs, 'old', demo)?.id).toBe('old');
    expect(adapterRunFor(runs, 'gone', demo)?.id).toBe('new');
    expect(adapterRunFor(runs, null, { kind: 'hub', id: 'x/y' })?.id).toBe('hub');
    expect(adapterRunFor(runs, null, { kind: 'hub', id: 'other' })).toBeUndefined();
  });
});

describe('SFT loss and the best checkpoint in the form', () => {
  /** The engine's options for settings read as the worker reads them (configFromObject, as `crucible train`). */
  const engineOptions = (s: Record<string, unknown>) => trainOptionsFromConfig(configFromObject({ dataset: 'x', ...s }).config);

  it('each SFT loss sets its switch and its own keys, and the engine trains with that token loss', () => {
    const alpha = Math.round(Math.random() * 100) / 50;
    const expected: Record<SftLoss, TokenLoss> = { ce: { kind: 'ce' }, dft: { kind: 'dft' }, eaft: { kind: 'eaft', alpha: 1 }, asft: { kind: 'asft', alpha: 0.1 } };
    for (const method of ['lora', 'qlora', 'oft', 'full', 'freeze'] as const) {
      for (const { value } of SFT_LOSSES) {
        const s = withSftLoss(withSftLoss(withMethod(DEFAULT_SETTINGS, method), 'eaft'), value);
        expect(sftLossOf(s)).toBe(value);
        expect(checkSettings(s).problems, `${method} ${value}`).toEqual([]);
        expect(engineOptions(s).tokenLoss, `${method} ${value}`).toEqual(expected[value]);
      }
    }
    // the other losses' keys go, so the YAML holds none without effect
    expect(withSftLoss(withSftLoss(DEFAULT_SETTINGS, 'eaft'), 'dft')).not.toHaveProperty('eaft_alpha');
    expect(Object.keys(withSftLoss(withSftLoss(DEFAULT_SETTINGS, 'asft'), 'ce')).sort()).toEqual(Object.keys(DEFAULT_SETTINGS).sort());
    const tuned = { ...withSftLoss(DEFAULT_SETTINGS, 'asft'), asft_alpha: alpha };
    expect(engineOptions(tuned).tokenLoss).toEqual({ kind: 'asft', alpha });
    expect(withSftLoss(tuned, 'asft').asft_alpha).toBe(alpha);
  });

  it('the SFT losses are stage sft\'s: another stage drops them', () => {
    const s = { ...withSftLoss(DEFAULT_SETTINGS, 'eaft'), eaft_alpha: 2 };
    for (const stage of ['pt', 'dpo', 'kto', 'rm']) {
      const other = withStageKeys({ ...s, stage });
      expect(Object.keys(other).filter((k) => /dft|eaft|asft/.test(k)), stage).toEqual([]);
      expect(checkSettings(other).notices.join('\n'), stage).not.toMatch(/eaft/);
    }
    expect(withStageKeys({ ...s, stage: 'sft' })).toEqual(s);
  });

  it('offers ASFT only without a separate ref_model, which the reader refuses with it', () => {
    expect(sftLossesFor(DEFAULT_SETTINGS).map((l) => l.value)).toEqual(['ce', 'dft', 'eaft', 'asft']);
    const ref = { ...DEFAULT_SETTINGS, ref_model: 'some/model' };
    expect(sftLossesFor(ref).map((l) => l.value)).toEqual(['ce', 'dft', 'eaft']);
    const c = checkSettings(withSftLoss(ref, 'asft'));
    expect(problemFor(c, 'use_asft_loss')).toMatch(/^use_asft_loss with a separate ref_model is not supported/);
  });

  it('an eval split evaluates at each checkpoint, so keeping the best checkpoint is valid as it is', () => {
    const s = withSetting(withSetting(DEFAULT_SETTINGS, 'val_size', 0.2), 'load_best_model_at_end', true);
    expect(hasEvalSplit(s)).toBe(true);
    expect(showsBestModel(DEFAULT_SETTINGS)).toBe(false);
    expect(showsBestModel(withSetting(DEFAULT_SETTINGS, 'val_size', 0.2))).toBe(true);
    expect(showsBestModel({ ...DEFAULT_SETTINGS, early_stopping_steps: 2 })).toBe(true); // a loaded config's, to be fixed
    expect(s).toMatchObject({ eval_strategy: 'steps', eval_steps: 10, save_steps: 10 });
    expect(checkSettings(s).problems).toEqual([]);
    const saved = withSetting(s, 'save_steps', 7);
    expect(saved.eval_steps).toBe(7);
    expect(checkSettings(saved).problems).toEqual([]);
    const patience = withSetting(withSetting(saved, 'metric_for_best_model', 'loss'), 'early_stopping_steps', 3);
    expect(engineOptions(patience)).toMatchObject({ evalSteps: 7, saveSteps: 7, bestModel: { metric: 'eval_loss', greaterIsBetter: false, loadAtEnd: true, patience: 3 } });
    // no split: no evaluation, and the best-model keys go with it
    const none = withSetting(patience, 'val_size', 0);
    expect(none.eval_strategy).toBe('no');
    expect(BEST_MODEL_KEYS.filter((k) => k in none)).toEqual([]);
    expect(checkSettings(none).problems).toEqual([]);
  });

  it('blocks Start with best-model.ts\'s own messages, each on its field', () => {
    const split = withSetting(DEFAULT_SETTINGS, 'val_size', 0.2);
    const cases: [Record<string, unknown>, string][] = [
      [{ ...split, load_best_model_at_end: true, eval_steps: 3 }, 'load_best_model_at_end'],
      [{ ...split, early_stopping_steps: 2 }, 'early_stopping_steps'],
      [{ ...DEFAULT_SETTINGS, load_best_model_at_end: true }, 'load_best_model_at_end'],
      [{ ...DEFAULT_SETTINGS, metric_for_best_model: 'loss', early_stopping_steps: 2 }, 'early_stopping_steps'],
    ];
    for (const [s, key] of cases) {
      const { config } = configFromObject({ dataset: 'x', ...s, load_best_model_at_end: false, early_stopping_steps: null });
      const expected = bestModelProblems({ ...config, load_best_model_at_end: s.load_best_model_at_end === true, early_stopping_steps: (s.early_stopping_steps as number | undefined) ?? null, metric_for_best_model: (s.metric_for_best_model as string | undefined) ?? null });
      expect(expected.length, key).toBeGreaterThan(0);
      const c = checkSettings(s);
      expect(c.problems).toEqual(expected.map((p) => ({ key: p.key, message: p.message })));
      expect(problemFor(c, key)).toBe(expected[0]!.message);
    }
  });
});
