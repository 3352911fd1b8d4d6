// Qwen2-VL's image processor (transformers' Qwen2VLImageProcessor, shared by Qwen2.5-VL and,
// with patch 16, Qwen3-VL) after LLaMA-Factory's Qwen2VL plugin has regularized the image:
// smart_resize to multiples of patch*merge, bicubic resize, rescale, normalize, then patches in
// the order the vision tower reads them; and the prompt expansion of each <image>.
import { resizeBicubic } from './resample.ts';
import { ImageError, type RgbImage } from './types.ts';

export const OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
export const OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

export interface Qwen2VLImageConfig {
  patchSize: number;
  mergeSize: number;
  temporalPatchSize: number;
  /** smart_resize's bounds (preprocessor_config size.shortest_edge / longest_edge, in pixels). */
  minPixels: number;
  maxPixels: number;
  rescaleFactor: number;
  mean: number[];
  std: number[];
}

export const QWEN2VL_DEFAULTS: Qwen2VLImageConfig = {
  patchSize: 14,
  mergeSize: 2,
  temporalPatchSize: 2,
  minPixels: 56 * 56,
  maxPixels: 28 * 28 * 1280,
  rescaleFactor: 1 / 255,
  mean: OPENAI_CLIP_MEAN,
  std: OPENAI_CLIP_STD,
};

/** The processor settings of a model's preprocessor_config.json (missing keys: Qwen2-VL's defaults). */
export function qwen2vlImageConfig(json: Record<string, unknown>): Qwen2VLImageConfig {
  const num = (v: unknown, fallback: number) => (typeof v === 'number' ? v : fallback);
  const size = (json.size ?? {}) as Record<string, unknown>;
  const d = QWEN2VL_DEFAULTS;
  const list = (v: unknown, fallback: number[]) => (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number') ? (v as number[]) : fallback);
  return {
    patchSize: num(json.patch_size, d.patchSize),
    mergeSize: num(json.merge_size, d.mergeSize),
    temporalPatchSize: num(json.temporal_patch_size, d.temporalPatchSize),
    minPixels: num(json.min_pixels, num(size.shortest_edge, d.minPixels)),
    maxPixels: num(json.max_pixels, num(size.longest_edge, d.maxPixels)),
    rescaleFactor: num(json.rescale_factor, d.rescaleFactor),
    mean: list(json.image_mean, d.mean),
    std: list(json.image_std, d.std),
  };
}

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** transformers' smart_resize: [height, width], both multiples of `factor`, the area within [minPixels, maxPixels]. */
export function smartResize(height: number, width: number, factor: number, minPixels: number, maxPixels: number): [number, number] {
  if (Math.max(height, width) / Math.min(height, width) > 200) {
    throw new ImageError(`absolute aspect ratio must be smaller than 200, got ${Math.max(height, width) / Math.min(height, width)} (${width}x${height})`);
  }
  let h = roundHalfEven(height / factor) * factor;
  let w = roundHalfEven(width / factor) * factor;
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return [h, w];
}

/** LLaMA-Factory's image_max_pixels / image_min_pixels (model_args; its defaults). */
export interface PixelLimits {
  maxPixels: number;
  minPixels: number;
}

export const LLAMAFACTORY_PIXEL_LIMITS: PixelLimits = { maxPixels: 768 * 768, minPixels: 32 * 32 };

/**
 * The sizes LLaMA-Factory's Qwen2VL plugin resizes an image through before the processor sees it
 * (_preprocess_image): down to image_max_pixels, up to image_min_pixels, each side at least 28,
 * and an aspect ratio over 200 cut to 180. Each step is a PIL bicubic resize when it changes the size.
 */
export function llamafactorySizes(width: number, height: number, limits: PixelLimits): Array<[number, number]> {
  const steps: Array<[number, number]> = [];
  let w = width;
  let h = height;
  const to = (nw: number, nh: number) => {
    if (nw < 1 || nh < 1) throw new ImageError(`image ${width}x${height} would be resized to ${nw}x${nh} (image_max_pixels ${limits.maxPixels}); its aspect ratio is too extreme`);
    w = nw;
    h = nh;
    steps.push([w, h]);
  };
  if (w * h > limits.maxPixels) {
    const f = Math.sqrt(limits.maxPixels / (w * h));
    to(Math.trunc(w * f), Math.trunc(h * f));
  }
  if (w * h < limits.minPixels) {
    const f = Math.sqrt(limits.minPixels / (w * h));
    to(Math.trunc(w * f), Math.trunc(h * f));
  }
  if (Math.min(w, h) < 28) to(Math.max(w, 28), Math.max(h, 28));
  if (w / h > 200) to(h * 180, h);
  if (h / w > 200) to(w, w * 180);
  return steps;
}

export interface ProcessedImage {
  /** [gridT * gridH * gridW, channels * temporalPatch * patch * patch], row-major. */
  pixelValues: Float32Array;
  /** image_grid_thw: [t, h, w] in patches. */
  grid: [number, number, number];
}

/** The grid an image of this size gets, without touching pixels (for counting tokens). */
export function qwen2vlGrid(width: number, height: number, cfg: Qwen2VLImageConfig, limits: PixelLimits): [number, number, number] {
  const steps = llamafactorySizes(width, height, limits);
  const [w, h] = steps.length ? steps[steps.length - 1] : [width, height];
  const [rh, rw] = smartResize(h, w, cfg.patchSize * cfg.mergeSize, cfg.minPixels, cfg.maxPixels);
  return [1, rh / cfg.patchSize, rw / cfg.patchSize];
}

/** Rescale, normalize and cut an image already at its final size into Qwen2-VL's patch rows. */
export function patchify(img: RgbImage, cfg: Qwen2VLImageConfig): ProcessedImage {
  const P = cfg.patchSize;
  const M = cfg.mergeSize;
  const TP = cfg.temporalPatchSize;
  if (img.width % (P * M) || img.height % (P * M)) throw new ImageError(`patchify: ${img.width}x${img.height} is not a multiple of ${P * M}`);
  const gh = img.height / P;
  const gw = img.width / P;
  // transformers rescales in float64 to float32, then normalizes in float32
  const f32 = Math.fround;
  const mean = cfg.mean.map(f32);
  const std = cfg.std.map(f32);
  const norm = new Float32Array(256 * 3);
  for (let c = 0; c < 3; c++) for (let v = 0; v < 256; v++) norm[c * 256 + v] = f32(f32(f32(v * cfg.rescaleFactor) - mean[c]) / std[c]);
  const cols = 3 * TP * P * P;
  const out = new Float32Array(gh * gw * cols);
  let row = 0;
  for (let bh = 0; bh < gh / M; bh++) {
    for (let bw = 0; bw < gw / M; bw++) {
      for (let mh = 0; mh < M; mh++) {
        for (let mw = 0; mw < M; mw++) {
          const y0 = (bh * M + mh) * P;
          const x0 = (bw * M + mw) * P;
          let col = row * cols;
          for (let c = 0; c < 3; c++) {
            // an image is one frame, repeated to fill the temporal patch
            for (let t = 0; t < TP; t++) {
              for (let py = 0; py < P; py++) {
                for (let px = 0; px < P; px++) out[col++] = norm[c * 256 + img.data[((y0 + py) * img.width + x0 + px) * 3 + c]];
              }
            }
          }
          row++;
        }
      }
    }
  }
  return { pixelValues: out, grid: [1, gh, gw] };
}

/** One decoded image through LLaMA-Factory's regularization and Qwen2-VL's processor. */
export function processQwen2VLImage(img: RgbImage, cfg: Qwen2VLImageConfig, limits: PixelLimits): ProcessedImage {
  let cur = img;
  for (const [w, h] of llamafactorySizes(img.width, img.height, limits)) cur = resizeBicubic(cur, w, h);
  const [rh, rw] = smartResize(cur.height, cur.width, cfg.patchSize * cfg.mergeSize, cfg.minPixels, cfg.maxPixels);
  return patchify(resizeBicubic(cur, rw, rh), cfg);
}

export const IMAGE_PLACEHOLDER = '<image>';

/** Image tokens per image: t*h*w patches merged merge_size x merge_size. */
export function imageTokenCount(grid: readonly number[], mergeSize: number): number {
  return (grid[0] * grid[1] * grid[2]) / (mergeSize * mergeSize);
}

/**
 * LLaMA-Factory's Qwen2VLPlugin.process_messages for images: each <image>, in order across the
 * messages, becomes <|vision_start|><|image_pad|>*n<|vision_end|>.
 */
export function expandQwen2VLImages<M extends { content: string }>(messages: readonly M[], grids: ReadonlyArray<readonly number[]>, mergeSize: number): M[] {
  const found = messages.reduce((n, m) => n + m.content.split(IMAGE_PLACEHOLDER).length - 1, 0);
  if (found !== grids.length) throw new ImageError(`${found} ${IMAGE_PLACEHOLDER} placeholder${found === 1 ? '' : 's'} for ${grids.length} image${grids.length === 1 ? '' : 's'}`);
  let next = 0;
  return messages.map((m) => {
    const parts = m.content.split(IMAGE_PLACEHOLDER);
    let content = parts[0];
    for (let i = 1; i < parts.length; i++) {
      content += `<|vision_start|>${'<|image_pad|>'.repeat(imageTokenCount(grids[next++], mergeSize))}<|vision_end|>` + parts[i];
    }
    return { ...m, content };
  });
}
