// A LLaMA-Factory dataset_info entry with hf_hub_url: `crucible preview` (and train) read the
// dataset repo's files from the Hub (HF_ENDPOINT, here a local server).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { configFromObject } from '../src/config';
import { previewDataset } from '../src/engine/preview-node';

const rows = [{ instruction: 'Hi', input: '', output: 'From the Hub!' }, { instruction: 'Color?', input: '', output: 'Blue.' }];
const files: Record<string, string> = { 'data/train-00000.jsonl': rows.map((r) => JSON.stringify(r)).join('\n') + '\n', 'README.md': '# ds' };
let server: Server;
const seen: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    seen.push(url.pathname);
    if (url.pathname === '/api/datasets/org/ds/tree/main') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(Object.entries(files).map(([path, c]) => ({ type: 'file', path, size: c.length, oid: '0'.repeat(40) }))));
    } else if (url.pathname.startsWith('/datasets/org/ds/resolve/main/')) {
      const f = files[decodeURIComponent(url.pathname.slice('/datasets/org/ds/resolve/main/'.length))];
      if (f === undefined) { res.statusCode = 404; res.end(); } else res.end(f);
    } else { res.statusCode = 404; res.end(); }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.env.HF_ENDPOINT = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => server.close());

it('reads an hf_hub_url dataset from the Hub repo\'s files', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hubdata-'));
  writeFileSync(join(dir, 'dataset_info.json'), JSON.stringify({ hubbed: { hf_hub_url: 'org/ds' } }));
  const { config } = configFromObject({ model_name_or_path: join(import.meta.dirname, 'fixtures/tiny-chat'), dataset: 'hubbed', dataset_dir: dir });
  const { examples } = await previewDataset(config, { count: 2, offset: 0 });
  expect(examples).toHaveLength(2);
  const first = examples[0]!;
  if ('chosen' in first) throw new Error('expected sft rows');
  expect(first.segments.find((s) => s.learned)?.text).toMatch(/^From the Hub!/);
  expect(seen).toContain('/datasets/org/ds/resolve/main/data/train-00000.jsonl');
});
