// PEFT's merge of an OFT adapter into a base weight, on the host (tuners/oft/layer.py
// Linear.merge: Wᵀ ← block_diag(R) · Wᵀ), i.e. W'[n, i·b + k] = Σ_c W[n, i·b + c] R_i[k][c], so
// that x·W'ᵀ = (x·R)·Wᵀ. R_i from oft_R.weight as kernels/oft.ts builds it (Cayley-Neumann series
// or exact Cayley), here in f64.

import { oftBlocks, oftSettingsOf, type OftSettings } from '../model/oft-adapter';
import { readF32 } from '../model/safetensors';
import type { AdapterOnHost } from './lora-merge';

function matmul(A: Float64Array, B: Float64Array, b: number): Float64Array {
  const C = new Float64Array(b * b);
  for (let i = 0; i < b; i++) for (let l = 0; l < b; l++) {
    const a = A[i * b + l]!;
    if (a !== 0) for (let j = 0; j < b; j++) C[i * b + j]! += a * B[l * b + j]!;
  }
  return C;
}

/** (I - Q)(I + Q)⁻¹ = 2(I + Q)⁻¹ - I, by Gauss-Jordan with partial pivoting. */
function exactCayley(Q: Float64Array, b: number): Float64Array {
  const w = 2 * b;
  const aug = new Float64Array(b * w);
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < b; j++) aug[i * w + j] = Q[i * b + j]! + (i === j ? 1 : 0);
    aug[i * w + b + i] = 1;
  }
  for (let k = 0; k < b; k++) {
    let piv = k;
    for (let i = k + 1; i < b; i++) if (Math.abs(aug[i * w + k]!) > Math.abs(aug[piv * w + k]!)) piv = i;
    for (let j = 0; j < w; j++) [aug[k * w + j], aug[piv * w + j]] = [aug[piv * w + j]!, aug[k * w + j]!];
    const p = aug[k * w + k]!;
    for (let j = 0; j < w; j++) aug[k * w + j]! /= p;
    for (let i = 0; i < b; i++) {
      const f = aug[i * w + k]!;
      if (i === k || f === 0) continue;
      for (let j = 0; j < w; j++) aug[i * w + j]! -= f * aug[k * w + j]!;
    }
  }
  return Float64Array.from({ length: b * b }, (_, e) => 2 * aug[Math.floor(e / b) * w + b + (e % b)]! - (Math.floor(e / b) === e % b ? 1 : 0));
}

/** The block R from its skew triangle (PEFT _cayley_batch). */
export function oftBlock(triangle: ArrayLike<number>, b: number, terms: number | null): Float64Array {
  const Q = new Float64Array(b * b);
  let idx = 0;
  for (let i = 0; i < b; i++) for (let j = i + 1; j < b; j++) {
    Q[i * b + j] = triangle[idx]!;
    Q[j * b + i] = -triangle[idx++]!;
  }
  if (terms === null) return exactCayley(Q, b);
  const m = terms <= 2 ? terms - 1 : Math.max(3, terms - 1);
  const R = Float64Array.from({ length: b * b }, (_, e) => (Math.floor(e / b) === e % b ? 1 : 0));
  let P: Float64Array = Q;
  for (let k = 1; k <= m; k++) {
    if (k > 1) P = matmul(P, Q, b);
    const c = k === m && m >= 3 ? 1 : 2;
    for (let e = 0; e < b * b; e++) R[e]! += c * P[e]!;
  }
  return R;
}

/** W' = W · block_diag(R)ᵀ for W [N, K] and oft_R.weight [K / b, b(b-1)/2]. */
export function mergeOft(W: Float32Array, N: number, K: number, skew: Float32Array, b: number, terms: number | null): Float32Array {
  const n = (b * (b - 1)) / 2;
  const out = new Float32Array(N * K);
  for (let blk = 0; blk < K / b; blk++) {
    const R = oftBlock(skew.subarray(blk * n, (blk + 1) * n), b, terms);
    for (let row = 0; row < N; row++) {
      const base = row * K + blk * b;
      for (let k = 0; k < b; k++) {
        let s = 0;
        for (let c = 0; c < b; c++) s += W[base + c]! * R[k * b + c]!;
        out[base + k] = s;
      }
    }
  }
  return out;
}

/** The merged weight for `weightName` if the OFT adapter rotates that module's input, else null. */
export async function oftMerged(ad: AdapterOnHost, weightName: string, W: Float32Array, shape: readonly number[]): Promise<Float32Array | null> {
  const key = `base_model.model.${weightName.replace(/\.weight$/, '')}.oft_R.weight`;
  if (!ad.file.tensors.has(key)) return null;
  const settings: OftSettings = oftSettingsOf(ad.config, 'adapter_config.json');
  const [N, K] = shape as [number, number];
  const { r, b } = oftBlocks(K, settings);
  const skew = await readF32(ad.file, key);
  if (skew.length !== r * ((b * (b - 1)) / 2)) throw new Error(`${key} has ${skew.length} values, expected [${r}, ${(b * (b - 1)) / 2}] for ${weightName} [${N}, ${K}]`);
  return mergeOft(W, N, K, skew, b, settings.neumannTerms);
}
