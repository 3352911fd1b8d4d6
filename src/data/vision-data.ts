// Records with images for Qwen2-VL (LLaMA-Factory's qwen2_vl template and Qwen2VLPlugin): each
// image is decoded and run through the processor (image_max_pixels / image_min_pixels, then
// smart_resize and patches), each <image> becomes <|vision_start|><|image_pad|>*n<|vision_end|>
// with n = t*h*w / merge_size², and the example keeps its pixel values and grids for the batch.
// Labels are the template's: the image tokens sit in the prompt, so they are -100 unless
// train_on_prompt (as in LLaMA-Factory, whose plugin leaves input_ids and labels as they are).
import type { Aligned } from './converter.ts';
import { DataError, type DataErrorLocation } from './errors.ts';
import { decodeImage } from './image/decode.ts';
import { expandQwen2VLImages, imageTokenCount, processQwen2VLImage, type PixelLimits, type Qwen2VLImageConfig } from './image/qwen2vl.ts';
import { ImageError } from './image/types.ts';
import type { Tokenizer } from './tokenizer.ts';

export const IMAGE_PAD = '<|image_pad|>';

/**
 * The images of one example: each one's grid, and its pixel values on demand (decoded and
 * processed again at batch time, so a dataset holds paths, not megabytes of floats per image).
 */
export interface ExampleImages {
  /** image_grid_thw of each image. */
  grids: [number, number, number][];
  /** [patches, C * T * P * P] of the images in order, row-major. */
  load(): Promise<Float32Array>;
}

/** The template that places images: the only one whose plugin Crucible implements. */
export const VISION_TEMPLATE = 'qwen2_vl';

function where(a: Aligned, field?: string): DataErrorLocation {
  return { dataset: a.dataset, file: a.source.file, line: a.source.line, index: a.source.index, ...(field ? { field } : {}) };
}

/**
 * A record with images as the template sees it: the placeholders expanded to each image's token
 * count, and the processed pixels alongside. Errors name the record and the image file.
 */
export async function prepareImages(a: Aligned, read: (path: string) => Promise<Uint8Array>, cfg: Qwen2VLImageConfig, limits: PixelLimits): Promise<Aligned> {
  const paths = a.images ?? [];
  const processAll = async () => {
    const out = [];
    for (const [i, path] of paths.entries()) {
      try {
        out.push(processQwen2VLImage(await decodeImage(await read(path)), cfg, limits));
      } catch (e) {
        if (e instanceof ImageError) throw new DataError(`image ${JSON.stringify(path)}: ${e.message}`, where(a, `images[${i}]`));
        throw e;
      }
    }
    return out;
  };
  // every image is decoded and processed once here, so a bad one fails the build, not a step
  const grids = (await processAll()).map((p) => p.grid);
  const load = async () => {
    const processed = await processAll();
    const pixels = new Float32Array(processed.reduce((n, p) => n + p.pixelValues.length, 0));
    let at = 0;
    for (const p of processed) {
      pixels.set(p.pixelValues, at);
      at += p.pixelValues.length;
    }
    return pixels;
  };
  // the placeholders count over prompt and response together, as the plugin counts them
  const all = [...a.prompt, ...a.response];
  let expanded;
  try {
    expanded = expandQwen2VLImages(all, grids, cfg.mergeSize);
  } catch (e) {
    if (e instanceof ImageError) throw new DataError(`${e.message} (${paths.join(', ')})`, where(a));
    throw e;
  }
  return { ...a, prompt: expanded.slice(0, a.prompt.length), response: expanded.slice(a.prompt.length), imageInputs: { grids, load } };
}

/**
 * Check an encoded example kept every image token (cutoff_len must not cut into an image: its
 * embeddings come whole from the vision tower) and return its images.
 */
export function checkImageTokens(inputIds: readonly number[], a: Aligned, tok: Tokenizer, mergeSize: number, cutoffLen: number): ExampleImages {
  const pad = tok.requireTokenId(IMAGE_PAD);
  const images = a.imageInputs!;
  const want = images.grids.reduce((n, g) => n + imageTokenCount(g, mergeSize), 0);
  const got = inputIds.reduce((n, id) => n + (id === pad ? 1 : 0), 0);
  if (got !== want) {
    const sizes = images.grids.map((g, i) => `${a.images?.[i] ?? `image ${i + 1}`}: ${imageTokenCount(g, mergeSize)} tokens`).join(', ');
    throw new DataError(
      got < want
        ? `cutoff_len ${cutoffLen} cuts into this record's image tokens (${got} of ${want} kept; ${sizes}): raise cutoff_len or lower image_max_pixels`
        : `the text holds ${got - want} more ${IMAGE_PAD} tokens than its images give (${sizes}): remove the literal ${IMAGE_PAD} from the text`,
      where(a),
    );
  }
  return images;
}
