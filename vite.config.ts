import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { wgsl } from './tools/wgsl-plugin.ts';

export default defineConfig({
  plugins: [wgsl(), svelte()],
  base: './',
  worker: { format: 'es', plugins: () => [wgsl()] },
  build: { target: 'es2022', rollupOptions: { external: ['webgpu'] } },
  test: {
    include: ['tests/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
