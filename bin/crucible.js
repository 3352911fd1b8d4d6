#!/usr/bin/env node
// The `crucible` command. Runs the TypeScript sources directly (no build step): registers tsx's
// ESM loader and the `.wgsl` text-module hooks, then hands the arguments to src/cli/main.ts.
import { register } from 'node:module';
import { register as registerTsx } from 'tsx/esm/api';

const debug = /^(1|true|yes)$/i.test(process.env.CRUCIBLE_DEBUG ?? '');
let code;
try {
  registerTsx();
  register('./wgsl-hooks.js', import.meta.url);
  const { main } = await import('../src/cli/main.ts');
  code = await main(process.argv.slice(2));
} catch (e) {
  // only failures to start get here; main() reports its own errors
  process.stderr.write(`error: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}\n`);
  if (debug && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  code = 1;
}
// Dawn keeps handles open after GPU use: leave explicitly once the command is done.
process.exit(code);
