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
