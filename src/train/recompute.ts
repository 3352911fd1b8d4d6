// Whether a run recomputes each layer's activations in backward (activation checkpointing). The
// user decides with disable_gradient_checkpointing (true: off, false: on); left unset, the step's
// peak is estimated from the activation table (model/activations.ts) plus what is already
// resident (weights, adapter, gradients, optimizer state) and recomputation is turned off when the
// step fits the memory budget without it: keeping every layer's activations saves one layer
// forward per layer in each backward.

import { bufferSize } from '../gpu/tensor';
import { activationBytes, gradientShapes, layerActivationShapes, streamShapes, type ActivationSpec, type ActivationOptions } from '../model/activations';

/** true: always recompute; false: never; 'auto': decide from memory. */
export type RecomputeSetting = boolean | 'auto';

/** Where no budget is configured or reported: what a browser tab can usually count on. */
export const DEFAULT_MEMORY_BUDGET = 2 * 2 ** 30;

/** Share of the budget the estimate may use: pipelines, staging and scratch buffers are not in the table. */
const HEADROOM = 0.9;

export interface MemoryBudget {
  bytes: number;
  /** Where the figure came from, for the log line. */
  source: string;
}

/** The configured budget (memory_budget, GiB), else the device's reported memory, else the default. */
export function memoryBudget(configuredGiB: number | null | undefined, deviceBytes: number | null | undefined): MemoryBudget {
  if (configuredGiB != null) {
    if (!(configuredGiB > 0)) throw new Error(`memory_budget = ${configuredGiB} must be a positive number of GiB`);
    return { bytes: configuredGiB * 2 ** 30, source: 'memory_budget' };
  }
  if (deviceBytes) return { bytes: deviceBytes, source: 'the device\'s reported memory' };
  return { bytes: DEFAULT_MEMORY_BUDGET, source: 'the default budget; set memory_budget' };
}

export interface RecomputeInput {
  setting: RecomputeSetting;
  spec: ActivationSpec;
  /** The largest micro-batch: rows and tokens per row (cutoff_len). */
  B: number;
  S: number;
  packed?: boolean;
  lora?: ActivationOptions['lora'];
  /** Bytes already on the GPU: weights, adapter, gradients, optimizer state. */
  residentBytes: number;
  /** The adapter's per-buffer limits. */
  limits: { maxBufferSize: number; maxStorageBufferBindingSize: number };
  budget: MemoryBudget;
}

export interface RecomputeChoice {
  recompute: boolean;
  /** One line: what was chosen and why. */
  reason: string;
}

const gib = (n: number): string => `${(n / 2 ** 30).toFixed(2)} GiB`;

/** The largest single training buffer of the shape (the same with or without recomputation). */
function largestBuffer(s: ActivationSpec, B: number, S: number, packed: boolean): number {
  const stream = streamShapes(s, B, S, packed);
  const shapes = [
    ...[...new Set(s.layers.map((l) => l.mixer ?? 'attention'))].flatMap((m) => Object.values(layerActivationShapes(s, B, S, m))),
    ...Object.values(gradientShapes(s, B * S)), ...Object.values(stream.f32), stream.resid[0]!,
  ];
  return Math.max(...shapes.map((shape) => (shape ? bufferSize(shape, 'f32') : 0)));
}

export function chooseRecompute(o: RecomputeInput): RecomputeChoice {
  if (o.setting === true) return { recompute: true, reason: 'activation recomputation on: disable_gradient_checkpointing is false' };
  if (o.setting === false) return { recompute: false, reason: 'activation recomputation off: disable_gradient_checkpointing is true' };
  const acts = (recompute: boolean) => activationBytes(o.spec, { B: o.B, S: o.S, recompute, packed: o.packed ?? false, ...(o.lora ? { lora: o.lora } : {}) }).total;
  const largest = largestBuffer(o.spec, o.B, o.S, o.packed ?? false);
  const bindingLimit = Math.min(o.limits.maxBufferSize, o.limits.maxStorageBufferBindingSize);
  if (largest > bindingLimit) {
    return { recompute: true, reason: `activation recomputation on: a ${gib(largest)} activation buffer is over this GPU's ${gib(bindingLimit)} buffer limit` };
  }
  const without = o.residentBytes + acts(false);
  const within = o.residentBytes + acts(true);
  const budget = `${gib(o.budget.bytes)} budget (${o.budget.source})`;
  if (without <= HEADROOM * o.budget.bytes) {
    return { recompute: false, reason: `activation recomputation off: the step needs about ${gib(without)} keeping every layer's activations, within the ${budget}` };
  }
  return {
    recompute: true,
    reason: `activation recomputation on: keeping every layer's activations needs about ${gib(without)}, over ${Math.round(HEADROOM * 100)}% of the ${budget}; `
      + `with it about ${gib(within)}`,
  };
}
