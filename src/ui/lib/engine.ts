// The page's handle on the engine worker: one comlink-wrapped EngineApi.

import * as Comlink from 'comlink';
import type { EngineApi } from '../../../workers/api';

export type Engine = Comlink.Remote<EngineApi>;

let engine: Engine | null = null;
let worker: Worker | null = null;

export function getEngine(): Engine {
  if (!engine) {
    worker = new Worker(new URL('../../../workers/engine.worker.ts', import.meta.url), { type: 'module', name: 'crucible-engine' });
    engine = Comlink.wrap<EngineApi>(worker);
  }
  return engine;
}

/** A callback the worker may call (comlink proxy). */
export const cb = Comlink.proxy;
