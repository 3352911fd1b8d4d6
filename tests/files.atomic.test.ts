import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { appendQueue, removeStaleTemps, writeFileAtomic } from '../src/files/atomic-node';

describe('atomic Node writes', () => {
  it('appendQueue keeps order across flushes and reopens after one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'crucible-append-'));
    const path = join(dir, 'log.jsonl');
    const q = appendQueue(path);
    for (let i = 0; i < 50; i++) q.append(`${i}\n`);
    await q.flush();
    q.append('after\n');
    await q.flush();
    const lines = (await readFile(path, 'utf8')).trim().split('\n');
    expect(lines).toEqual([...Array.from({ length: 50 }, (_, i) => String(i)), 'after']);
  });

  it('appendQueue reports the first failure at flush and names the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'crucible-append-'));
    await writeFile(join(dir, 'file'), 'x');
    const q = appendQueue(join(dir, 'file', 'log.jsonl')); // a file stands where a folder is needed
    q.append('a\n');
    q.append('b\n');
    await expect(q.flush()).rejects.toThrow(/file\/log\.jsonl/);
  });

  it('writeFileAtomic leaves no temporary file and removeStaleTemps clears a dead process\'s', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'crucible-atomic-'));
    await writeFileAtomic(join(dir, 'sub', 'a.json'), '{"a":1}');
    expect(await readdir(join(dir, 'sub'))).toEqual(['a.json']);
    await writeFile(join(dir, 'sub', 'b.json.tmp-999999999-1'), 'half');
    await writeFile(join(dir, 'sub', `c.json.tmp-${process.ppid}-1`), 'live');
    await removeStaleTemps(dir);
    expect((await readdir(join(dir, 'sub'))).sort()).toEqual(['a.json', `c.json.tmp-${process.ppid}-1`]);
  });
});
