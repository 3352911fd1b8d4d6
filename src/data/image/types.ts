// What the image decoders and processors exchange.

/** 8-bit RGB pixels, row-major, 3 bytes a pixel (what Pillow's convert("RGB") holds). */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface ImageInfo {
  format: 'png' | 'jpeg';
  width: number;
  height: number;
}

/** An image that cannot be read; the data layer adds the dataset, row and file. */
export class ImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageError';
  }
}

/** Pillow's DecompressionBombError threshold (2 * Image.MAX_IMAGE_PIXELS): larger images are refused before decoding. */
export const MAX_IMAGE_PIXELS = 2 * 89478485;

export function checkPixelCount(width: number, height: number): void {
  if (width * height > MAX_IMAGE_PIXELS) {
    throw new ImageError(`image is ${width}x${height} = ${width * height} pixels, over the ${MAX_IMAGE_PIXELS}-pixel limit (Pillow's decompression-bomb check); shrink it first`);
  }
}
