// OpenAI `image_url` content parts: the image travels inline as a base64 `data:` URL (PNG or JPEG;
// WebP is recognised and refused until it can be decoded). Remote http(s) URLs are always refused:
// the server works offline and fetches nothing. Sizes are bounded before decoding: the base64
// length, then the width and height from the file's header.

import { Buffer } from 'node:buffer';
import { imageInfo } from '../data/image/decode';
import { ImageError } from '../data/image/types';
import { ApiError } from './protocol';

export interface ImageLimits {
  /** Images in one request, all messages together. */
  maxImages: number;
  /** Bytes of one image file (decoded from base64). */
  maxImageBytes: number;
  /** width * height of one image. */
  maxImagePixels: number;
}

export const DEFAULT_IMAGE_LIMITS: ImageLimits = { maxImages: 8, maxImageBytes: 5 * 1024 * 1024, maxImagePixels: 4096 * 4096 };

const MIME = new Set(['image/png', 'image/jpeg', 'image/jpg', 'image/webp']);

const bad = (message: string, param: string, code = 'invalid_image') => new ApiError(400, message, 'invalid_request_error', param, code);

/** The image file of one `image_url` part (`{url}` or the URL itself), refused with a 400 naming `param` when it cannot be used. */
export function imageFromPart(imageUrl: unknown, param: string, limits: ImageLimits): Uint8Array {
  const url = typeof imageUrl === 'object' && imageUrl !== null && !Array.isArray(imageUrl) ? (imageUrl as Record<string, unknown>).url : imageUrl;
  const at = typeof imageUrl === 'string' ? param : `${param}.url`;
  if (typeof url !== 'string') throw bad(`Invalid '${at}': expected a data: URL string.`, at, 'invalid_type');
  if (/^https?:\/\//i.test(url)) {
    throw bad(`Invalid '${at}': remote image URLs are not fetched (this server works offline); send the image inline as a data: URL (data:image/png;base64,...).`, at, 'invalid_image_url');
  }
  const m = /^data:([^;,]*)((?:;[^;,]*)*),/i.exec(url);
  if (!m) throw bad(`Invalid '${at}': expected a data: URL (data:image/png;base64,...), got ${JSON.stringify(url.slice(0, 30))}${url.length > 30 ? '...' : ''}.`, at, 'invalid_image_url');
  const mime = m[1]!.toLowerCase();
  if (!MIME.has(mime)) throw bad(`Invalid '${at}': unsupported image type ${JSON.stringify(mime)} (PNG and JPEG are supported).`, at);
  if (!m[2]!.toLowerCase().split(';').includes('base64')) throw bad(`Invalid '${at}': the data: URL must be base64-encoded (;base64,).`, at, 'invalid_image_url');
  const payload = url.slice(m[0].length);
  const bytes = Math.floor((payload.length * 3) / 4);
  if (bytes > limits.maxImageBytes) throw bad(`Invalid '${at}': the image is about ${bytes} bytes, over the limit of ${limits.maxImageBytes} bytes.`, at, 'image_too_large');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(payload) || payload.length % 4 === 1) throw bad(`Invalid '${at}': the data: URL's payload is not valid base64.`, at, 'invalid_image_url');
  const file = new Uint8Array(Buffer.from(payload, 'base64'));
  try {
    const { width, height } = imageInfo(file);
    if (width * height > limits.maxImagePixels) {
      throw bad(`Invalid '${at}': the image is ${width}x${height} = ${width * height} pixels, over the limit of ${limits.maxImagePixels}.`, at, 'image_too_large');
    }
  } catch (e) {
    if (e instanceof ImageError) throw bad(`Invalid '${at}': ${e.message}.`, at);
    throw e;
  }
  return file;
}
