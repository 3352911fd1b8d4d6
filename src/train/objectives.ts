// The objective a run trains with, from its preference or PPO options (neither: pt / sft).

import type { Objective, ObjectiveContext } from './objective';
import { PpoObjective, type PpoRun } from './ppo/objective';
import { PreferenceObjective } from './preference/objective';
import { checkExamples, usesReference, type PreferenceOptions } from './preference/options';
import { ReferenceTable } from './reference';
import { SftObjective } from './sft';

/**
 * `ctx.reference`: log-probabilities scored beforehand on a separate model (ref_model). Without
 * one, a LoRA run's reference is its base with the adapter switched off, and full / freeze runs
 * score their initial weights before the first step.
 */
export function createObjective(ctx: ObjectiveContext, preference: PreferenceOptions | null | undefined, ppo?: PpoRun | null): Objective {
  if (ppo) {
    if (preference) throw new Error(`stage ppo cannot take the preference options of stage ${preference.stage}`);
    // TRL's PPOTrainer keeps the model's dropout; Crucible's PPO passes run without lora_dropout
    const { loraDropout: _, ...withoutDropout } = ctx;
    return new PpoObjective(withoutDropout, ppo);
  }
  if (!preference) return new SftObjective(ctx);
  const reference = usesReference(preference) ? ctx.reference ?? (ctx.adapter ? null : new ReferenceTable()) : null;
  // LLaMA-Factory's CustomDPOTrainer / CustomKTOTrainer (disable_dropout=True) call TRL's
  // disable_dropout_in_model: stages dpo and kto train without lora_dropout; its reward-model trainer keeps it
  const { loraDropout, ...withoutDropout } = ctx;
  return new PreferenceObjective({ ...(preference.stage === 'rm' ? { loraDropout } : {}), ...withoutDropout, reference }, preference);
}

/** Refuses data the run's objective cannot train on (pairs for kto, token rows for dpo, ...), naming `where`. */
export function checkTrainingData(preference: PreferenceOptions | null | undefined, examples: readonly unknown[], where: string, ppo?: PpoRun | null): void {
  if (preference) checkExamples(preference.stage, examples, where);
  const e = examples[0] as Record<string, unknown> | undefined;
  if (ppo && e && !('input_ids' in e && !('kl_input_ids' in e))) throw new Error(`${where}: stage ppo needs prompts (a supervised dataset without ranking or kto_tag)`);
}
