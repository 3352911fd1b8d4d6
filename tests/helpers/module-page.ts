// A headless Chromium page with some of the project's modules bundled by Vite and exposed as
// globals, served from its own origin: for tests that run src/ code in a real browser.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';

export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM);

type Page = import('playwright-core').Page;
type Browser = import('playwright-core').Browser;

export interface ModulePage {
  page: Page;
  url: string;
  close(): Promise<void>;
}

/**
 * Opens a page where `globalThis[name]` holds every export of the listed modules (paths relative
 * to the repository root), merged in order. Resolves once the globals exist.
 */
export async function openModulePage(name: string, modules: readonly string[]): Promise<ModulePage> {
  const dir = await mkdtemp(join(tmpdir(), 'crucible-page-'));
  let site: Server | undefined;
  let browser: Browser | undefined;
  const close = async () => {
    await browser?.close();
    await new Promise<void>((r) => (site ? site.close(() => r()) : r()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const imports = modules.map((m, i) => `import * as m${i} from ${JSON.stringify(resolve(m))};`).join('\n');
    const spread = modules.map((_, i) => `...m${i}`).join(', ');
    await writeFile(join(dir, 'index.html'), '<!doctype html><html><body><script type="module" src="./main.ts"></script></body></html>');
    await writeFile(join(dir, 'main.ts'), `${imports}\n(globalThis as any)[${JSON.stringify(name)}] = { ${spread} };\n`);
    const { build } = await import('vite');
    await build({ root: dir, configFile: false, logLevel: 'silent', build: { outDir: join(dir, 'dist'), target: 'es2022' } });
    const server = createServer(async (req, res) => {
      const p = join(dir, 'dist', new URL(req.url ?? '/', 'http://x').pathname.replace(/^\/$/, '/index.html'));
      try {
        const body = await readFile(p);
        res.writeHead(200, { 'content-type': extname(p) === '.js' ? 'text/javascript' : 'text/html' });
        res.end(body);
      } catch {
        res.writeHead(404);
        res.end();
      }
    });
    site = server;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] });
    const page = await browser.newPage();
    await page.goto(url);
    await page.waitForFunction((n) => n in globalThis, name);
    return { page, url, close };
  } catch (e) {
    await close();
    throw e;
  }
}
