// The optimizer a run asks for: AdamW (torch's), or LLaMA-Factory's use_muon / use_adam_mini. Each
// moves the parameters into its arena (arena.ts) when it is made.

import type { Gpu } from '../../gpu/runtime';
import type { TrainableTensor } from '../../model/adapter';
import { AdamMini, type AdamMiniDims } from './adam-mini';
import { AdamW } from './adamw';
import { Muon } from './muon';
import type { Optimizer, OptimizerSettings } from './optimizer';

export type { Optimizer, OptimizerSettings } from './optimizer';
export type OptimizerKind = 'adamw' | 'muon' | 'adam_mini';

export function createOptimizer(gpu: Gpu, params: TrainableTensor[], settings: OptimizerSettings, kind: OptimizerKind, dims: AdamMiniDims): Optimizer {
  switch (kind) {
    case 'adamw':
      return new AdamW(gpu, params, settings);
    case 'muon':
      return new Muon(gpu, params, settings);
    case 'adam_mini':
      return new AdamMini(gpu, params, settings, dims);
  }
}
