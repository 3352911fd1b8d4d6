// The preference stages (rm, dpo, kto) as the rest of the project uses them: settings, metrics,
// losses and the objective the trainer runs.

export { preferenceOptions, usesReference, type PreferenceExample, type PreferenceOptions, type PreferenceStage, type PrefLoss } from './options';
export { chartKeys, type PreferenceLogFields, type PreferenceMetric } from './metrics';
export { ktoLoss, pairwiseLoss, rewardLoss, type KtoInputs, type KtoResult, type PairInputs, type PairResult, type RewardResult } from './loss';
export { PreferenceObjective } from './objective';
export type { PairwiseOutcome } from './dpo';
export type { MicroResult } from './stage';
