// JSON files a user or a run owns: a syntax error names the file, the line and the column.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildDataset, DataError, memoryFileAccess, parseJsonFile } from '../src/data/index.ts';
import { loadTokenizerFromDir } from '../src/data/node.ts';
import { reportError } from '../src/cli/main';
import { tokenizerFor } from './fixtures/data/helpers.ts';

// what a checkpoint's trainer_state.json looked like after a crash wrote a raw tab into a string
const CORRUPT = '{\n "global_step": 10,\n "best_model_checkpoint": "a\tb"\n}';

describe('parseJsonFile', () => {
  it('names the file, line and column instead of only "Bad control character"', () => {
    expect(() => parseJsonFile(CORRUPT, 'out/checkpoint-10/trainer_state.json')).toThrow(
      new DataError('not valid JSON: Bad control character in string literal (column 29)', { file: 'out/checkpoint-10/trainer_state.json', line: 3 }),
    );
    expect(() => parseJsonFile(CORRUPT, 'x.json')).toThrow(/^x\.json, line 3: not valid JSON: Bad control character in string literal \(column 29\)$/);
  });

  it('a truncated or empty file says so', () => {
    expect(() => parseJsonFile('{"a": [1, 2', 'a.json')).toThrow(/^a\.json, line 1: not valid JSON: it ends before the JSON is complete \(a truncated file\?\) \(column 12\)$/);
    expect(() => parseJsonFile('{\n "a": 1\n', 'a.json')).toThrow(/^a\.json, line 3: not valid JSON: it ends before the JSON is complete/);
    expect(() => parseJsonFile('', 'b.json')).toThrow(/^b\.json: not valid JSON: the file is empty$/);
  });

  it('adds what to do about it', () => {
    expect(() => parseJsonFile('', 'out/checkpoint-4/trainer_state.json', 'remove out/checkpoint-4 to resume from an earlier checkpoint')).toThrow(
      /^out\/checkpoint-4\/trainer_state\.json: not valid JSON: the file is empty; remove out\/checkpoint-4 to resume from an earlier checkpoint$/,
    );
    expect(() => parseJsonFile(CORRUPT, 'x.json', 'fix it')).toThrow(/^x\.json, line 3: not valid JSON: Bad control character in string literal \(column 29\); fix it$/);
  });

  it('parses valid JSON', () => {
    expect(parseJsonFile<{ a: number }>('{"a": 1}', 'a.json')).toEqual({ a: 1 });
  });

  it('is used for dataset_info.json and tokenizer configs', async () => {
    const tok = tokenizerFor('qwen3');
    const files = memoryFileAccess({ 'd/dataset_info.json': '{\n "x": {"file_name": "x.json",}\n}' });
    await expect(buildDataset({ dataset: 'x', dataset_dir: 'd' }, { tokenizer: tok, ...files })).rejects.toThrow(/^d\/dataset_info\.json, line 2: not valid JSON: /);

    const dir = mkdtempSync(join(tmpdir(), 'tok-'));
    writeFileSync(join(dir, 'tokenizer.json'), '{}');
    writeFileSync(join(dir, 'tokenizer_config.json'), CORRUPT);
    await expect(loadTokenizerFromDir(dir)).rejects.toThrow(`${join(dir, 'tokenizer_config.json')}, line 3: not valid JSON`);
  });

  it('the CLI prints it as one line, without the class name', () => {
    const err: string[] = [];
    const io = { stderr: (t: string) => void err.push(t), env: {} } as unknown as Parameters<typeof reportError>[1];
    expect(reportError(new DataError('not valid JSON: x', { file: 'a.json', line: 2 }), io)).toBe(1);
    expect(err.join('')).toBe('error: a.json, line 2: not valid JSON: x\n');
  });
});
