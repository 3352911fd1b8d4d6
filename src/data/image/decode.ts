// Reading an image file: the format is sniffed from its bytes (not its name), PNG and JPEG are
// decoded to RGB; other formats are refused by name.
import { decodeJpeg, isJpeg, jpegInfo } from './jpeg.ts';
import { decodePng, isPng, pngInfo } from './png.ts';
import { ImageError, type ImageInfo, type RgbImage } from './types.ts';

function otherFormat(bytes: Uint8Array): string | undefined {
  const ascii = (a: number, b: number) => String.fromCharCode(...bytes.subarray(a, b));
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'WebP';
  if (ascii(0, 4) === 'GIF8') return 'GIF';
  if (ascii(0, 2) === 'BM') return 'BMP';
  if (ascii(0, 4) === 'II*\0' || ascii(0, 4) === 'MM\0*') return 'TIFF';
  if (ascii(4, 8) === 'ftyp') return 'HEIF/AVIF';
  return undefined;
}

function unsupported(bytes: Uint8Array): ImageError {
  const other = otherFormat(bytes);
  if (other) return new ImageError(`${other} images are not supported yet (PNG and JPEG are); convert the image to PNG or JPEG`);
  return new ImageError(bytes.length === 0 ? 'the image file is empty' : 'not a PNG or JPEG image (unrecognised file header)');
}

/** Format and size from the header alone. */
export function imageInfo(bytes: Uint8Array): ImageInfo {
  if (isPng(bytes)) return pngInfo(bytes);
  if (isJpeg(bytes)) return jpegInfo(bytes);
  throw unsupported(bytes);
}

export async function decodeImage(bytes: Uint8Array): Promise<RgbImage> {
  if (isPng(bytes)) return decodePng(bytes);
  if (isJpeg(bytes)) return decodeJpeg(bytes);
  throw unsupported(bytes);
}
