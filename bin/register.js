// `node --import ./bin/register.js script.ts`: run TypeScript sources that import .wgsl files
// (scripts and benchmarks), the same way bin/crucible.js does.
import { register } from 'node:module';
import { register as registerTsx } from 'tsx/esm/api';

registerTsx();
register('./wgsl-hooks.js', import.meta.url);
