// Images of multimodal records, as LLaMA-Factory reads them (converter.py, mm_plugin.py): an
// `images` column holding a path or a list of paths, each found under media_dir (default:
// dataset_dir) or else as written; one <image> placeholder in the messages per image. Videos and
// audio are refused until Crucible reads them. Nothing here is skipped silently: a bad image is an
// error that names the dataset, the record and the file.
import { DataError, describeType, type DataErrorLocation } from './errors.ts';
import type { DatasetAttr } from './dataset-info.ts';
import type { RecordSource, Row } from './formats.ts';
import { imageInfo } from './image/decode.ts';
import { IMAGE_PLACEHOLDER } from './image/qwen2vl.ts';
import { ImageError } from './image/types.ts';
import { joinPath } from './paths.ts';
import type { Message } from './templates/types.ts';

function loc(attr: DatasetAttr, src: RecordSource, field?: string): DataErrorLocation {
  return { dataset: attr.name, file: src.file, line: src.line, index: src.index, field };
}

const present = (v: unknown) => v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && v.length === 0);

/** The image paths of a record as written (an empty list when it has none); videos and audios are refused. */
export function recordImages(row: Row, attr: DatasetAttr, src: RecordSource): string[] {
  for (const k of ['videos', 'audios'] as const) {
    const col = attr.columns[k];
    if (col && present(row[col])) {
      throw new DataError(`${k} are not supported yet (images are); remove the "${k}" column mapping or the ${k === 'videos' ? 'videos' : 'audio'}`, loc(attr, src, col));
    }
  }
  const col = attr.columns.images;
  if (!col || !present(row[col])) return [];
  const v = row[col];
  const list = Array.isArray(v) ? v : [v];
  return list.map((p, i) => {
    const field = Array.isArray(v) ? `${col}[${i}]` : col;
    if (typeof p !== 'string') {
      throw new DataError(`must be an image path (a string), got ${describeType(p)}${p && typeof p === 'object' ? ' (images given as bytes are not supported yet)' : ''}`, loc(attr, src, field));
    }
    if (/^(https?|ftp):\/\//i.test(p) || p.startsWith('data:')) {
      throw new DataError(`image ${JSON.stringify(p.length > 80 ? p.slice(0, 77) + '...' : p)} is a URL; Crucible reads images from local files only (offline): download it and give its path`, loc(attr, src, field));
    }
    return p;
  });
}

function countPlaceholders(messages: readonly Message[]): number {
  return messages.reduce((n, m) => n + m.content.split(IMAGE_PLACEHOLDER).length - 1, 0);
}

/**
 * The placeholder count must equal the image count in each conversation the record trains on
 * (the prompt with each response), as LLaMA-Factory's _validate_messages requires.
 */
export function checkPlaceholders(prompt: readonly Message[], response: readonly Message[], images: number, attr: DatasetAttr, src: RecordSource): void {
  // a KTO record's other side is an empty message, not a conversation of its own
  const answers = response.filter((r) => r.content !== '');
  const variants = answers.length ? answers.map((r) => [...prompt, r]) : [prompt];
  for (const messages of variants) {
    const found = countPlaceholders(messages);
    if (found !== images) {
      throw new DataError(
        `${found} ${IMAGE_PLACEHOLDER} placeholder${found === 1 ? '' : 's'} in the messages but ${images} image${images === 1 ? '' : 's'} in "${attr.columns.images}": each image needs one ${IMAGE_PLACEHOLDER} where it belongs in the text`,
        loc(attr, src, attr.columns.images),
      );
    }
  }
}

/**
 * Find each image of a record: media_dir/path first (local datasets, as LLaMA-Factory does),
 * then the path as written. The file must exist and have a PNG or JPEG header; returns the
 * paths that were read.
 */
export async function resolveImages(paths: readonly string[], mediaDir: string | null, read: (path: string) => Promise<Uint8Array>, attr: DatasetAttr, src: RecordSource): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < paths.length; i++) {
    const written = paths[i];
    const field = `${attr.columns.images}[${i}]`;
    const candidates = mediaDir && !written.startsWith('/') ? [joinPath(mediaDir, written), written] : [written];
    let bytes: Uint8Array | undefined;
    let found = '';
    for (const c of [...new Set(candidates)]) {
      try {
        bytes = await read(c);
        found = c;
        break;
      } catch {
        /* try the next place */
      }
    }
    if (!bytes) {
      const where = candidates.length > 1 ? `looked for ${candidates.map((c) => JSON.stringify(c)).join(' and ')}` : `looked for ${JSON.stringify(written)}`;
      throw new DataError(`image file not found: ${JSON.stringify(written)} (${where}; set media_dir to the folder that holds the images)`, loc(attr, src, field));
    }
    try {
      imageInfo(bytes);
    } catch (e) {
      if (e instanceof ImageError) throw new DataError(`image ${JSON.stringify(found)} cannot be read: ${e.message}`, loc(attr, src, field));
      throw e;
    }
    out.push(found);
  }
  return out;
}
