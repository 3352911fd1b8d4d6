import { Model } from '../src/model/model';
import { dirFiles } from '../src/model/files-node';
import { forwardBackward, shiftLabels, Workspace } from '../src/model/forward';
import { nodeGpu } from '../src/gpu/node';
import { readFileSync } from 'node:fs';
const name = process.argv[2] ?? 'llama';
const dir = `tests/fixtures/models/${name}`;
const c = JSON.parse(readFileSync(`${dir}/case.json`, 'utf8'));
const t0 = performance.now();
const gpu = await nodeGpu({ warn: () => {} });
const model = await Model.load(gpu, dirFiles(dir));
const lap = (m: string) => console.log(m, ((performance.now() - t0) / 1000).toFixed(2));
lap('load');
const B = c.input_ids.length, S = c.input_ids[0].length;
const ws = new Workspace(model, B, S, false);
ws.load({ B, S, ids: Int32Array.from(c.input_ids.flat()), labels: shiftLabels(Int32Array.from(c.labels.flat()), B, S), positions: Int32Array.from({ length: B * S }, (_, i) => i % S) });
for (let i = 0; i < 3; i++) {
  forwardBackward(ws, { backward: false, gradScale: 1 });
  await gpu.sync(); lap(`fwd ${i} (dispatches ${gpu.counters.dispatches})`);
}
for (let i = 0; i < 3; i++) {
  forwardBackward(ws, { backward: true, gradScale: 1 });
  await gpu.sync(); lap(`fwd+bwd ${i} (dispatches ${gpu.counters.dispatches})`);
}
process.exit(0);
