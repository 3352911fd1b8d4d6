// A tensor is a typed, shaped view of one GPU buffer. Quantized weights ('q4', 'q8') hold blocks
// of 32 values along each row: all codes first (packed in u32 words), then one f16 scale per
// block; src/kernels/quant.ts owns that layout. Their `shape` is the logical [rows, cols]; each
// row is stored padded with zeros to a whole number of blocks (quantRowWidth).

export type DType = 'f32' | 'f16' | 'i32' | 'u32' | 'q4' | 'q8';

export interface Tensor {
  readonly buffer: GPUBuffer;
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** Byte offset of element 0 inside `buffer` (a multiple of 256 when non-zero). */
  readonly offset: number;
}

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

export const QUANT_BLOCK = 32;

/** Stored values per row of a quantized tensor with `cols` columns: whole blocks. */
export const quantRowWidth = (cols: number): number => Math.ceil(cols / QUANT_BLOCK) * QUANT_BLOCK;

/** Bytes of the codes of a quantized tensor of n stored values (the f16 scales follow them). */
export function quantCodeBytes(n: number, dtype: 'q4' | 'q8'): number {
  return dtype === 'q4' ? n / 2 : n;
}

export function byteSize(shape: readonly number[], dtype: DType): number {
  const n = numel(shape);
  switch (dtype) {
    case 'f32':
    case 'i32':
    case 'u32':
      return n * 4;
    case 'f16':
      return Math.ceil((n * 2) / 4) * 4;
    case 'q4':
    case 'q8': {
      const cols = shape[shape.length - 1] ?? 1;
      const stored = (n / cols) * quantRowWidth(cols);
      return quantCodeBytes(stored, dtype) + Math.ceil(((stored / QUANT_BLOCK) * 2) / 4) * 4;
    }
  }
}

/** Bytes a buffer for the tensor takes: a multiple of 16, at least 16. */
export function bufferSize(shape: readonly number[], dtype: DType): number {
  return Math.max(16, Math.ceil(byteSize(shape, dtype) / 16) * 16);
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
