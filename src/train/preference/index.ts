// The preference stages (rm, dpo, kto): settings, metrics, losses and the objective the trainer runs.

export { checkExamples, preferenceOptions, usesReference, averagesLogps, type PreferenceExample, type PreferenceOptions, type PreferenceStage, type PrefLoss } from './options';
export { chartKeys, PREFERENCE_METRICS, type PreferenceLogFields, type PreferenceMetric } from './metrics';
export { ktoLoss, pairwiseLoss, rewardLoss, type KtoInputs, type KtoResult, type PairInputs, type PairResult, type RewardResult } from './loss';
export { PreferenceObjective } from './objective';
export type { PairwiseOutcome } from './dpo';
export type { MicroResult } from './stage';
