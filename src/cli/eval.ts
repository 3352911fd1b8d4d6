// `crucible eval <config.yaml>`: a multiple-choice benchmark in LLaMA-Factory's `eval` format
// (MMLU / C-Eval / CMMLU task folders under task_dir), as `llamafactory-cli eval`
// (examples/train_lora/llama3_lora_eval.yaml): n-shot prompts, the answer letter with the largest
// logit, accuracy per category; results.json and results.log in save_dir when set.

import { commandConfig, type CommandDef } from './args';
import { loadEngine } from './engines';
import { interruptSignal } from './io';
import { keysHelp } from './keys';

export const evalCommand: CommandDef = {
  name: 'eval',
  summary: 'Score a model on a multiple-choice benchmark (MMLU, C-Eval, CMMLU format)',
  usage: '<config.yaml> [key=value ...]',
  details: [
    'Reads LLaMA-Factory eval YAMLs: model_name_or_path, adapter_name_or_path, template, task, task_dir, lang, n_shot, batch_size, save_dir.',
    'Prints the accuracy per category (Average, STEM, Social Sciences, Humanities, Other) as LLaMA-Factory does.',
  ],
  flags: [{ name: 'keys', help: 'list the config keys eval reads, with defaults' }],
  config: true,
  async run(args, io) {
    if (args.flags.keys) {
      io.stdout(keysHelp('eval'));
      return 0;
    }
    const config = await commandConfig(args, io, 'eval');
    const runChoiceEval = await loadEngine('runChoiceEval', 'eval', io);
    const stop = interruptSignal(io);
    try {
      const result = await runChoiceEval({ ...config, task: config.task! }, {
        signal: stop.signal, onStatus: (m) => io.stderr(`${m}\n`),
      });
      io.stdout(`${result.scoreInfo}\n`);
      if (config.save_dir) io.stderr(`wrote results.json and results.log to ${config.save_dir}\n`);
      return 0;
    } finally {
      stop.dispose();
    }
  },
};
