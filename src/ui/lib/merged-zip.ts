// The merged model (config, tokenizer, safetensors shards and their index) as one download: a zip
// with the files in one folder, as `crucible export` writes export_dir.

import { zipStore } from '../../files/zip';

/** The folder the zip holds, named after the model and the run; a name safe for a file system. */
export function mergedFolder(model: string, run: string | null): string {
  const part = (s: string) => s.replace(/^.*\//, '').replace(/[^\w.-]+/g, '-').replace(/^-+|-+$/g, '');
  return [part(model) || 'model', run ? part(run) : '', 'merged'].filter(Boolean).join('-');
}

/** The files in `folder/`, in name order (config and index before the shards they describe). */
export function zipMerged(files: Readonly<Record<string, Uint8Array>>, folder: string): Uint8Array {
  const names = Object.keys(files).sort();
  if (names.length === 0) throw new Error('the merged model has no files');
  return zipStore(names.map((name) => ({ name: `${folder}/${name}`, data: files[name]! })));
}
