import { chromium } from 'playwright-core';
import { serveStatic } from './static-server';
const srv = await serveStatic(['/tmp/overlay', 'dist'], 4396);
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--enable-unsafe-webgpu','--use-webgpu-adapter=swiftshader','--use-angle=swiftshader','--enable-features=Vulkan','--no-sandbox'] });
const page = await browser.newPage({ viewport: { width: 420, height: 900 } });
await page.goto(srv.url);
await page.waitForTimeout(4000);
await page.screenshot({ path: '/tmp/narrow.png' });
// controls without an accessible name
const unnamed = await page.evaluate(() => {
  const out: string[] = [];
  for (const el of document.querySelectorAll('button, input, select, textarea, summary, a[href]')) {
    const e = el as HTMLElement;
    const labelled = e.getAttribute('aria-label') || (e as HTMLInputElement).labels?.length || e.textContent?.trim() || e.getAttribute('title') || (e as HTMLInputElement).placeholder;
    if (!labelled) out.push(e.outerHTML.slice(0, 120));
  }
  return out;
});
console.log('unnamed:', unnamed);
// tab through and list focus order names
const names: string[] = [];
for (let i = 0; i < 25; i++) {
  await page.keyboard.press('Tab');
  names.push(await page.evaluate(() => { const e = document.activeElement as HTMLElement; return `${e.tagName.toLowerCase()}:${e.getAttribute('aria-label') ?? (e as HTMLInputElement).labels?.[0]?.textContent?.trim().slice(0, 25) ?? e.textContent?.trim().slice(0, 25)}`; }));
}
console.log(names.join(' | '));
const snap = await page.locator('body').ariaSnapshot();
console.log(snap.split('\n').filter((l) => /button|textbox|spinbutton|combobox|checkbox|radio/.test(l)).slice(0, 60).join('\n'));
await browser.close();
await srv.close();
