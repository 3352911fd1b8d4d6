// A loaded model as a host shows it: architecture, size, the format its weights are in, and the
// sampling defaults of its generation_config.json.

import { modelTensors } from '../export/model-tensors';
import type { ModelFiles } from '../model/weights';
import type { Session } from './session';

export interface ModelInfo {
  id: string;
  arch: string;
  layers: number;
  hidden: number;
  vocab: number;
  /** Parameters of the base model. */
  params: number;
  /** Bytes the weights take on the GPU in the loaded format. */
  gpuBytes: number;
  format: string;
  chatTemplate: boolean;
  /** Default generation settings from generation_config.json. */
  generation: { temperature?: number; top_p?: number; top_k?: number; repetition_penalty?: number };
}

export async function describeModel(session: Session, files: ModelFiles, id: string): Promise<ModelInfo> {
  const spec = session.model.spec;
  let generation: ModelInfo['generation'] = {};
  if (await files.exists('generation_config.json')) {
    try {
      const gc = JSON.parse(await files.readText('generation_config.json')) as Record<string, number>;
      generation = { temperature: gc.temperature, top_p: gc.top_p, top_k: gc.top_k, repetition_penalty: gc.repetition_penalty };
    } catch {
      /* optional */
    }
  }
  return {
    id,
    arch: spec.arch,
    layers: spec.layers.length,
    hidden: spec.hidden,
    vocab: spec.vocab,
    params: modelTensors(session.model).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0),
    gpuBytes: session.gpu.allocated,
    format: session.model.format,
    chatTemplate: !!session.tokenizer.chatTemplate,
    generation,
  };
}
