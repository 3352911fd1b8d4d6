// The mock Hub as a process, for tests that need it outside their own process (a Playwright
// webServer, a CLI run by hand):
//
//   npx tsx tests/mockhub/serve.ts [--port 8123] [--token hf_x ...] org/name=path/to/folder ...
//
// Each folder's files (recursively) become the repo's files at one commit. It prints
// "mock hub listening on <url>" when ready; use HF_ENDPOINT=<url>.

import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { startMockHub, type MockRepo } from './server';

async function folderFiles(dir: string): Promise<Record<string, Uint8Array>> {
  const out: Record<string, Uint8Array> = {};
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out[relative(dir, p).split('\\').join('/')] = new Uint8Array(await readFile(p));
    }
  };
  await walk(dir);
  return out;
}

const args = process.argv.slice(2);
let port = 0;
const tokens: string[] = [];
const repos: Record<string, MockRepo> = {};
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === '--port') port = Number(args[++i]);
  else if (a === '--token') tokens.push(args[++i]!);
  else if (a.includes('=')) {
    const [id, dir] = a.split('=') as [string, string];
    repos[id] = { files: await folderFiles(dir) };
  } else {
    console.error(`usage: serve.ts [--port N] [--token hf_x] org/name=folder ...   (unknown argument ${a})`);
    process.exit(2);
  }
}
const hub = await startMockHub({ repos, port, ...(tokens.length ? { tokens } : {}) });
console.log(`mock hub listening on ${hub.url}`);
const stop = () => void hub.close().then(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
