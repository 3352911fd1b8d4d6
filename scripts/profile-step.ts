// Per-kernel GPU time of one LoRA training step (timestamp queries):
//   node --import ./bin/register.js scripts/profile-step.ts [modelDir | bench shape] [batch] [seq]
// A bench shape (src/bench/shapes.ts: qwen2.5-0.5b, smollm2-135m ...) is a random-init model of that
// real shape, so the device script needs no download.
import { BENCH_MODELS } from '../src/bench/shapes';
import { syntheticModelFiles } from '../src/bench/synthetic';
import { nodeGpu } from '../src/gpu/node';
import { Profiler } from '../src/gpu/profiler';
import { dirFiles } from '../src/model/files-node';
import { Model } from '../src/model/model';
import { Trainer } from '../src/train/trainer';

const [dir = 'tests/fixtures/tiny-chat', b = '4', s = '128'] = process.argv.slice(2);
const B = Number(b), S = Number(s);
const gpu = await nodeGpu();
const shape = BENCH_MODELS[dir];
const model = await Model.load(gpu, shape ? syntheticModelFiles(shape, dir) : dirFiles(dir));
const examples = Array.from({ length: B * 4 }, (_, i) => {
  const ids = Array.from({ length: S }, (_, t) => (i * 31 + t * 7) % model.spec.vocab);
  return { input_ids: ids, labels: ids };
});
const trainer = await Trainer.create(model, examples, [], {
  finetuningType: 'lora', lora: { rank: 8, alpha: 16, targets: 'all' }, learningRate: 1e-3, scheduler: 'constant', warmupSteps: 0,
  warmupRatio: 0, epochs: 1, maxSteps: 3, batchSize: B, gradAccum: 1, maxGradNorm: 1, weightDecay: 0, beta1: 0.9, beta2: 0.999,
  eps: 1e-8, neftuneAlpha: 0, seed: 1, loggingSteps: 100, saveSteps: 0, evalSteps: 0, cutoffLen: S, recompute: process.env.RECOMPUTE !== '0',
}, 0);
const t0 = performance.now();
(trainer as unknown as { opts: { maxSteps: number } }).opts.maxSteps = 1;
await trainer.run(null);
console.log(`warm-up step: ${((performance.now() - t0) / 1000).toFixed(2)} s`);
gpu.profiler = new Profiler(gpu.device);
const t1 = performance.now();
trainer.state.global_step = 0;
await trainer.run(null);
await gpu.profiler.collect();
console.log(`profiled step: ${((performance.now() - t1) / 1000).toFixed(2)} s, ${gpu.counters.dispatches} dispatches so far`);
for (const r of gpu.profiler.report().slice(0, 15)) console.log(`${r.ms.toFixed(1).padStart(9)} ms ${(100 * r.share).toFixed(1).padStart(5)}% ${String(r.count).padStart(4)}x  ${r.label}`);
process.exit(0);
