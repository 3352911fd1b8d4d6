// A kernel case as the benchmark times it: the work of one run (FLOPs, and bytes for memory-bound
// kernels), the recorded dispatches themselves, and the release of the tensors it allocated.

export interface Timed {
  kernel: string;
  shape: string;
  flops: number;
  /** Bytes one run must move at least (GB/s is reported when set). */
  bytes?: number;
  /** The GEMM tile the run uses on this device (tuned or default). */
  tile?: string;
  run: () => void;
  release: () => void;
}

/** Sizes of the real shapes as a benchmark runs them: unchanged, or cut down for a software adapter. */
export type Scale = (size: number) => number;

/** Deterministic values in [-0.5, 0.5]: benchmarks need no randomness. */
export const filler = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);
