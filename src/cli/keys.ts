// `crucible <command> --keys`: the config keys a command reads, grouped, with type and default.

import { CONFIG_KEYS, SCHEMA, formatFloat, type ArgSpec, type Command, type Group } from '../config';

const GROUP_TITLES: Record<Group, string> = {
  model: 'model',
  method: 'method',
  lora: 'LoRA (finetuning_type: lora)',
  oft: 'OFT (finetuning_type: oft)',
  freeze: 'freeze (finetuning_type: freeze)',
  quantization: 'quantization',
  dataset: 'dataset',
  train: 'training',
  output: 'output',
  eval: 'evaluation',
  preference: 'preference (stage: dpo / kto)',
  export: 'export',
  generation: 'generation',
};

function typeName(spec: ArgSpec): string {
  const t = spec.type === 'enum' ? spec.choices!.join('|') : spec.type === 'checkpoint' ? 'path|true' : spec.type;
  return spec.nullable && spec.type !== 'checkpoint' ? `${t}?` : t;
}

function defaultText(key: string, spec: ArgSpec): string {
  if (key === 'lora_alpha') return '2*lora_rank';
  const d = spec.default;
  if (d === null) return 'null';
  if (Array.isArray(d)) return d.join(',');
  if (typeof d === 'number' && spec.type === 'float') return formatFloat(d);
  return String(d);
}

export function keysHelp(command: Command): string {
  const groups = new Map<Group, string[]>();
  for (const key of CONFIG_KEYS) {
    const spec: ArgSpec = SCHEMA[key];
    if (!spec.commands.includes(command)) continue;
    const scope = spec.stages ? ` [${spec.stages.join(',')}]` : '';
    const line = `  ${key} (${typeName(spec)}, default ${defaultText(key, spec)})${scope}\n      ${spec.help}`;
    const list = groups.get(spec.group) ?? [];
    list.push(line);
    groups.set(spec.group, list);
  }
  const out: string[] = [`Config keys read by crucible ${command} (LLaMA-Factory names and defaults):`];
  for (const [group, lines] of groups) out.push('', `${GROUP_TITLES[group]}:`, ...lines);
  out.push(
    '',
    'PyTorch-only settings (tf32, deepspeed, logging_dir, ...) are accepted and ignored with a note;',
    'LLaMA-Factory features Crucible lacks (PPO, OFT, ...) are accepted only at their default.',
  );
  return `${out.join('\n')}\n`;
}
