/**
 * Node-only helpers: read a tokenizer from a model directory and give buildDataset file access.
 * (Kept apart from index.ts so browser bundles never import node:fs.)
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJsonFile } from './json-file.ts';
import { loadTokenizer, type Tokenizer } from './tokenizer.ts';

async function readJsonIfExists(path: string): Promise<object | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${path}: ${(e as Error).message}`);
  }
  return parseJsonFile<object>(text, path);
}

/** tokenizer.json + tokenizer_config.json (+ chat_template.jinja, generation_config.json) of a model dir. */
export async function loadTokenizerFromDir(dir: string): Promise<Tokenizer> {
  const tokenizerPath = join(dir, 'tokenizer.json');
  const tokenizerText = await readFile(tokenizerPath, 'utf8').catch((e: Error) => {
    throw new Error(`cannot read ${tokenizerPath}: ${e.message}`);
  });
  const tokenizerJson = parseJsonFile<object>(tokenizerText, tokenizerPath);
  const tokenizerConfig = await readJsonIfExists(join(dir, 'tokenizer_config.json'));
  const generationConfig = await readJsonIfExists(join(dir, 'generation_config.json'));
  let chatTemplate: string | undefined;
  try {
    chatTemplate = await readFile(join(dir, 'chat_template.jinja'), 'utf8');
  } catch {
    chatTemplate = undefined;
  }
  return loadTokenizer({ tokenizerJson, tokenizerConfig, chatTemplate, generationConfig });
}

/** readFile/listFiles over the local file system (paths relative to cwd or absolute). */
export function nodeFileAccess(): { readFile(path: string): Promise<Uint8Array>; listFiles(path: string): Promise<string[] | null> } {
  return {
    readFile: async (p) => new Uint8Array(await readFile(p)),
    listFiles: async (p) => {
      try {
        if (!(await stat(p)).isDirectory()) return null;
        return await readdir(p);
      } catch {
        return null;
      }
    },
  };
}
