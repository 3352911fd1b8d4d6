// The optimizer a run asks for: AdamW (torch's), or LLaMA-Factory's use_muon / use_adam_mini /
// use_galore / use_apollo / use_badam. Each moves the parameters into its arena (arena.ts) when it
// is made.

import type { Gpu } from '../../gpu/runtime';
import type { TrainableTensor } from '../../model/adapter';
import { AdamMini, type AdamMiniDims } from './adam-mini';
import { AdamW } from './adamw';
import { Apollo, type ApolloSettings } from './apollo';
import { BadamLayer, BadamRatio, type BadamSettings } from './badam';
import { Galore, type GaloreSettings } from './galore';
import { Muon } from './muon';
import type { Optimizer, OptimizerSettings } from './optimizer';

export type { Optimizer, OptimizerSettings } from './optimizer';
export type OptimizerChoice =
  | { kind: 'adamw' | 'muon' | 'adam_mini' }
  | { kind: 'galore'; galore: GaloreSettings }
  | { kind: 'apollo'; apollo: ApolloSettings }
  | { kind: 'badam'; badam: BadamSettings };

export function createOptimizer(gpu: Gpu, params: TrainableTensor[], settings: OptimizerSettings, choice: OptimizerChoice, dims: AdamMiniDims, seed: number): Optimizer {
  switch (choice.kind) {
    case 'adamw':
      return new AdamW(gpu, params, settings);
    case 'muon':
      return new Muon(gpu, params, settings);
    case 'adam_mini':
      return new AdamMini(gpu, params, settings, dims);
    case 'galore':
      return new Galore(gpu, params, settings, choice.galore, seed);
    case 'apollo':
      return new Apollo(gpu, params, settings, choice.apollo, seed);
    case 'badam':
      return choice.badam.mode === 'layer' ? new BadamLayer(gpu, params, settings, choice.badam) : new BadamRatio(gpu, params, settings, choice.badam);
  }
}
