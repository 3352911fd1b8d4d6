// Vite/Vitest plugin: `import src from '.../x.wgsl'` yields the shader text as a string.
// bin/wgsl-hooks.js does the same for plain Node (the CLI), so both hosts share one import form.
import type { Plugin } from 'vite';

export function wgsl(): Plugin {
  return {
    name: 'crucible-wgsl',
    enforce: 'pre',
    transform(code, id) {
      if (!id.endsWith('.wgsl')) return null;
      return { code: `export default ${JSON.stringify(code)};`, map: null };
    },
  };
}
