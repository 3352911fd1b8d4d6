// What the end-to-end files share: headless Chromium with WebGPU on SwiftShader, the production
// build of the app served by a plain static server, and screenshots/logs.

import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { serveStatic, type StaticServer } from './static-server';

export const CHROMIUM = '/usr/bin/chromium';
export const ROOT = resolve(import.meta.dirname, '..');
/** Screenshots of the e2e files that use this harness (app.e2e.ts empties test-results/e2e). */
export const SHOTS = join(ROOT, 'test-results/e2e-hub');
export const hasChromium = () => existsSync(CHROMIUM);

export const CHROMIUM_FLAGS = [
  '--enable-unsafe-webgpu',
  '--use-webgpu-adapter=swiftshader',
  '--use-angle=swiftshader',
  '--enable-features=Vulkan',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

export function launchChromium(): Promise<Browser> {
  return import('playwright-core').then(({ chromium }) => chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS }));
}

/** A logger that prints seconds since `t0`, tagged. */
export function stopwatch(tag: string): (...a: unknown[]) => void {
  const t0 = performance.now();
  return (...a) => console.log(`[${tag} ${((performance.now() - t0) / 1000).toFixed(1)}s]`, ...a);
}

/** The production build of the app (as `npm run build` makes it; vitest runs with NODE_ENV=test) into `outDir`. */
export async function buildApp(outDir: string): Promise<void> {
  const { build } = await import('vite');
  const nodeEnv = process.env.NODE_ENV;
  process.env.NODE_ENV = 'production';
  try {
    await build({ root: ROOT, configFile: join(ROOT, 'vite.config.ts'), mode: 'production', logLevel: 'warn', build: { outDir, emptyOutDir: true } });
  } finally {
    process.env.NODE_ENV = nodeEnv;
  }
}

/** Build the app into `dir`/dist and serve it (with public/: the demo model and dataset, the service worker). */
export async function serveApp(dir: string): Promise<StaticServer> {
  await buildApp(join(dir, 'dist'));
  return serveStatic([join(dir, 'dist')]);
}

/**
 * A page that exposes the library (src/index.ts) as `globalThis.crucible`, built into `dir`/dist
 * and served: for what the UI cannot show (values on the GPU), through the same code the engine
 * worker runs.
 */
export async function serveLibraryPage(dir: string): Promise<StaticServer> {
  await writeFile(join(dir, 'index.html'), '<!doctype html><html><body><script type="module" src="./main.ts"></script></body></html>');
  await writeFile(join(dir, 'main.ts'), `import * as crucible from ${JSON.stringify(join(ROOT, 'src/index.ts'))};\n(globalThis as any).crucible = crucible;\n`);
  const { build } = await import('vite');
  const { wgsl } = await import('../tools/wgsl-plugin');
  await build({ root: dir, configFile: false, logLevel: 'warn', plugins: [wgsl()], build: { outDir: join(dir, 'dist'), target: 'es2022', rollupOptions: { external: ['webgpu'] } } });
  return serveStatic([join(dir, 'dist')]);
}

/**
 * The app's page in `context`, loaded from `url` until the GPU adapter is shown and the demo
 * dataset's preview marks its learned tokens; page errors and console errors go to `errors`.
 */
export async function openAppPage(context: BrowserContext, url: string, errors: string[]): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(m.text());
  });
  await page.goto(url);
  await page.getByTestId('gpu-adapter').waitFor({ timeout: 60_000 });
  await page.locator('.examples mark.learned').first().waitFor({ timeout: 120_000 });
  return page;
}
