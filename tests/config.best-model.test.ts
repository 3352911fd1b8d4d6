// load_best_model_at_end, metric_for_best_model, greater_is_better, early_stopping_steps,
// eval_on_start / eval_delay as config keys: HF's defaults and its refusals of schedules that do
// not line up; and `no` / `none` values of string keys on the command line (YAML reads no as false).
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config';
import { bestModelSettings } from '../src/config/best-model';
import { parseArgs } from '../src/cli/args';
import { runOptions } from '../src/engine/options';

function problem(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
}

const base = 'dataset: identity\nval_size: 0.1\n';

describe('best-model keys', () => {
  it('default as HF: loss with load_best_model_at_end, the eval_ prefix, greater_is_better from the name', () => {
    const settings = (yaml: string) => bestModelSettings(parseConfig(base + yaml).config);
    expect(settings('')).toBeNull();
    expect(settings('load_best_model_at_end: true\neval_strategy: steps\neval_steps: 2\nsave_steps: 4')).toEqual({ metric: 'eval_loss', greaterIsBetter: false, loadAtEnd: true, patience: null });
    expect(settings('metric_for_best_model: eval_accuracy')).toEqual({ metric: 'eval_accuracy', greaterIsBetter: true, loadAtEnd: false, patience: null });
    expect(settings('metric_for_best_model: rewards/accuracies')?.metric).toBe('eval_rewards/accuracies');
    expect(settings('metric_for_best_model: my_loss\ngreater_is_better: true')).toMatchObject({ metric: 'eval_my_loss', greaterIsBetter: true });
    expect(settings('metric_for_best_model: loss\nearly_stopping_steps: 3\neval_strategy: steps')).toMatchObject({ patience: 3, loadAtEnd: false });
  });

  it('refuses load_best_model_at_end when saves do not follow evaluations, naming the key and the values', () => {
    const err = (yaml: string) => problem(() => parseConfig(base + yaml, [], { fileName: 'run.yaml' }));
    expect(err('load_best_model_at_end: true\neval_strategy: steps\nsave_strategy: epoch')).toBe('run.yaml:3: load_best_model_at_end requires the save and eval strategy to match, but found eval_strategy: steps, save_strategy: epoch');
    expect(err('load_best_model_at_end: true\neval_strategy: no\nsave_strategy: steps')).toMatch(/^run\.yaml:3: load_best_model_at_end requires the save and eval strategy to match, but found eval_strategy: no, save_strategy: steps$/);
    expect(err('load_best_model_at_end: true\neval_strategy: steps\neval_steps: 3\nsave_steps: 4')).toBe('run.yaml:3: load_best_model_at_end requires save_steps to be a round multiple of eval_steps, but found save_steps 4, eval_steps 3');
    expect(err('load_best_model_at_end: true\neval_strategy: steps\nlogging_steps: 3\nsave_steps: 4')).toMatch(/eval_steps 3 \(eval_steps defaults to logging_steps\)$/);
    expect(err('load_best_model_at_end: true\neval_strategy: steps\neval_steps: 0.1\nsave_steps: 4')).toMatch(/cannot be guaranteed when mixing a ratio and absolute steps \(save_steps 4, eval_steps 0.1\)$/);
    expect(err('load_best_model_at_end: true\neval_strategy: steps\neval_steps: 0.1\nsave_steps: 0.25')).toMatch(/round multiple of eval_steps, but found save_steps 0.25, eval_steps 0.1$/);
    expect(err('early_stopping_steps: 2\neval_strategy: steps')).toBe('run.yaml:3: early_stopping_steps needs metric_for_best_model (or load_best_model_at_end: true, which makes it loss)');
    expect(err('early_stopping_steps: 2\nmetric_for_best_model: loss')).toBe('run.yaml:3: early_stopping_steps counts evaluations: set eval_strategy to steps or epoch');
    expect(err('early_stopping_steps: 0\nmetric_for_best_model: loss\neval_strategy: steps')).toMatch(/early_stopping_steps/);
  });

  it('accepts schedules that line up', () => {
    for (const yaml of [
      'load_best_model_at_end: true\neval_strategy: steps\neval_steps: 2\nsave_steps: 6',
      'load_best_model_at_end: true\neval_strategy: steps\nlogging_steps: 5\nsave_steps: 10',
      'load_best_model_at_end: true\neval_strategy: steps\neval_steps: 0.1\nsave_steps: 0.3',
      'load_best_model_at_end: true\neval_strategy: epoch\nsave_strategy: epoch',
      'load_best_model_at_end: true\neval_strategy: no\nsave_strategy: no',
    ]) expect(() => parseConfig(base + yaml), yaml).not.toThrow();
  });

  it('eval_on_start and eval_delay reach the run options (eval_delay in epochs becomes steps)', () => {
    const { config } = parseConfig(`${base}eval_strategy: epoch\nsave_strategy: epoch\nper_device_train_batch_size: 2\nnum_train_epochs: 4\neval_on_start: true\neval_delay: 2`);
    const o = runOptions(config, 10); // 5 steps an epoch
    expect([o.evalSteps, o.evalDelay, o.evalOnStart]).toEqual([5, 10, true]);
    expect(runOptions(parseConfig(`${base}eval_strategy: steps\neval_steps: 3\neval_delay: 7`).config, 10).evalDelay).toBe(7);
  });
});

describe('no and none as values of string keys', () => {
  const cli = (argv: string[]) => parseConfig(base, parseArgs(argv, { name: 'train', flags: [], config: true }).overrides).config;

  it('save_strategy=no on the command line is the strategy "no", as OmegaConf reads it', () => {
    expect(cli(['save_strategy=no']).save_strategy).toBe('no');
    expect(cli(['--save_strategy', 'no']).save_strategy).toBe('no');
    expect(cli(['--eval_strategy=no', 'report_to=none']).report_to).toEqual(['none']);
    expect(runOptions(cli(['save_strategy=no']), 10).saveSteps).toBe(0);
    // boolean keys keep YAML's words
    expect(cli(['plot_loss=no', 'overwrite_output_dir=yes'])).toMatchObject({ plot_loss: false, overwrite_output_dir: true });
    expect(cli(['plot_loss=true']).plot_loss).toBe(true);
    expect(problem(() => cli(['save_strategy=never']))).toMatch(/^override save_strategy=never: save_strategy: expected one of no, steps, epoch, got "never"/);
  });

  it('a file\'s unquoted save_strategy: no is the strategy "no" too', () => {
    expect(parseConfig(`${base}save_strategy: no\neval_strategy: no`).config).toMatchObject({ save_strategy: 'no', eval_strategy: 'no' });
    expect(parseConfig(`${base}report_to: none`).config.report_to).toEqual(['none']);
  });
});
