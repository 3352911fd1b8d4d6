// Paths as the data layer writes them: '/'-joined, the same in Node and the browser.

export function joinPath(dir: string, name: string): string {
  if (!dir || dir === '.' || name.startsWith('/')) return name;
  return dir.replace(/\/+$/, '') + '/' + name.replace(/^\.\//, '');
}
