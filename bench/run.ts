// `npm run bench` / `crucible bench --models ...`: kernel throughput, LoRA training tokens/s and
// peak memory on random-init models of real shapes, prefill/decode at batch 1. Writes
// bench/results/<date>-<gpu>.json; with --anchor PATH it also runs PyTorch+PEFT's script
// (../shared/device/torch_lora_baseline.py) in the same command and records its lines.
// --memory-target measures only the engine's peak memory of the target (LoRA on
// Qwen2.5-0.5B, 4-bit base, sequence 1024, micro-batch 4, activation recomputation): on a software
// adapter the step's kernels are not run (Gpu.allocationOnly), its allocations are the same.
//
//   node --import ./bin/register.js bench/run.ts [--models a,b] [--batch 8] [--seq 512] [--rank 16]
//        [--steps 5] [--no-kernels] [--anchor path/to/torch_lora_baseline.py] [--out file.json]
//        [--memory-target]

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { benchKernels } from '../src/bench/kernels';
import { BENCH_MODELS } from '../src/bench/shapes';
import { syntheticModelFiles } from '../src/bench/synthetic';
import { benchDecode, benchTraining } from '../src/bench/train';
import { nodeGemmTuning } from '../src/engine/gemm-tuning-node';
import { gemmChoices } from '../src/kernels/gemm-tuner';
import { nodeGpu } from '../src/gpu/node';
import type { GpuCounters } from '../src/gpu/runtime';
import { Model } from '../src/model/model';

const { values: a } = parseArgs({
  options: {
    models: { type: 'string' }, batch: { type: 'string', default: '8' }, seq: { type: 'string', default: '512' },
    rank: { type: 'string', default: '16' }, steps: { type: 'string', default: '5' }, 'no-kernels': { type: 'boolean', default: false },
    anchor: { type: 'string' }, out: { type: 'string' }, decode: { type: 'string', default: '64' },
    'memory-target': { type: 'boolean', default: false },
  },
});
const gpu = await nodeGpu();
// GEMM tiles tuned per device where $CRUCIBLE_GEMM_TUNING allows (auto: real GPUs), cached per adapter
await nodeGemmTuning(gpu, { notice: (m) => console.error(m) });
const device = gpu.caps.adapter;
const date = new Date().toISOString().slice(0, 10);
const software = gpu.caps.software;
// software adapters (SwiftShader) run only the tiny shape and small kernels: real shapes take hours there
const models = (a.models ?? (software ? 'tiny' : 'smollm2-135m,qwen2.5-0.5b,llama3.2-1b')).split(',');
const [batch, seq, rank, steps] = software && !a.models ? [2, 64, 8, 2] : [Number(a.batch), Number(a.seq), Number(a.rank), Number(a.steps)];
const records: Record<string, unknown>[] = [];
const log = (r: Record<string, unknown>) => {
  records.push(r);
  console.log(JSON.stringify(r));
};
console.error(`bench on ${device}${software ? ' (software adapter: tiny shapes)' : ''}`);

if (a['memory-target']) {
  // LLaMA-Factory's defaults for the rest: lora_rank 8 on all linear layers, gradient checkpointing on
  const [name, batch, seq, rank] = ['qwen2.5-0.5b', 4, 1024, 8];
  gpu.allocationOnly = software;
  const model = await Model.load(gpu, syntheticModelFiles(BENCH_MODELS[name]!, name), { format: 'q4' });
  const train = await benchTraining(model, { batch, seq, rank, steps: 1, warmup: 0 });
  log({
    system: 'crucible', kind: 'memory-target', model: name, base: model.format, batch, seq, rank, peak_gib: train.peakBytes / 2 ** 30,
    activations_gib: train.activations.total / 2 ** 30, recompute: train.recompute.recompute, target_gib: 3,
    measured: software ? 'allocations of one training step, kernels not run (software adapter)' : 'allocations of one training step',
    ...(software ? {} : { step_s: train.stepSeconds }), device, date,
  });
  models.length = 0;
} else if (!a['no-kernels']) for (const k of await benchKernels(gpu, { small: software })) log({ system: 'crucible', kind: 'kernel', ...k, device, date });

for (const name of models) {
  const config = BENCH_MODELS[name];
  if (!config) throw new Error(`unknown model shape ${name}; known: ${Object.keys(BENCH_MODELS).join(', ')}`);
  for (const format of ['f32', 'q4'] as const) {
    const model = await Model.load(gpu, syntheticModelFiles(config, name), { format: format === 'f32' && gpu.caps.f16 ? 'f16' : format });
    const base = model.format;
    const train = format === 'f32' ? await benchTraining(model, { batch, seq, rank, steps, warmup: 1 }) : null;
    const dec = await benchDecode(model, software ? 16 : 128, software ? 4 : Number(a.decode));
    log({
      system: 'crucible', model: name, base, batch, seq, rank,
      ...(train ? { train_tokens_per_s: Math.round(train.tokensPerSecond), step_s: train.stepSeconds, peak_gib: train.peakBytes / 2 ** 30, activations_gib: train.activations.total / 2 ** 30, recompute: train.recompute.recompute, per_step: train.perStep.map(stepFigures) } : {}),
      prefill_tokens_per_s: Math.round(dec.prefillTokensPerSecond), decode_tokens_per_s: Math.round(dec.decodeTokensPerSecond * 10) / 10,
      gemm_tiles: Object.fromEntries(gemmChoices(gpu)), device, date,
    });
  }
}

/** One step's host figures, encode time rounded to 0.01 ms. */
function stepFigures(c: GpuCounters) {
  return { dispatches: c.dispatches, passes: c.passes, submits: c.submits, encode_ms: Math.round(c.encodeMs * 100) / 100 };
}

if (a.anchor) {
  const out = execFileSync('python3', [a.anchor, '--models', models.join(','), '--batch', String(batch), '--seq', String(seq), '--rank', String(rank)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  for (const line of out.split('\n').filter((l) => l.startsWith('{'))) log({ system: 'pytorch+peft', ...JSON.parse(line), device, date });
}

const file = a.out ?? join('bench/results', `${date}-${device.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40)}.json`);
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, `${JSON.stringify(records, null, 1)}\n`);
console.error(`wrote ${file}`);
process.exit(0);
