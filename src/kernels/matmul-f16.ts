// The f16 tier's matrix product (devices with shader-f16): A and B stored as f16, sums in f32,
// C stored as f32 or f16. Same arguments and layouts as gemm() in matmul.ts (the f32 tier, which
// every device runs). Gradients too small for f16 are scaled up by a power of two before they are
// stored (exact in binary floating point) and the scale folded back here through alpha, or, for an
// A made by toScaledF16 (f16.ts), through the inverse scale it left on the GPU (`descale`).
// linear() and linearBackwardInput() (matmul.ts) run the base weights of the f16 tier here.

import source from '../../shaders/matmul-f16.wgsl';
import { f32, type Gpu } from '../gpu/runtime';
import type { Tensor } from '../gpu/tensor';
import { shaderVariant, type ShaderSource } from '../gpu/shader';
import type { GemmArgs } from './gemm-args';
import { gemmTile, type GemmTile } from './gemm-tiles';
import { vec4Aligned, vec4Binding } from './vec4-binding';

export function gemmF16(gpu: Gpu, g: GemmArgs, descale?: Tensor): void {
  const { M, N, K, transA = false, transB = false } = g;
  if (!gpu.caps.f16) throw new Error(`gemmF16: ${gpu.caps.adapter} has no shader-f16; use gemm() (the f32 tier)`);
  if (g.a.dtype !== 'f16' || g.b.dtype !== 'f16') throw new Error(`gemmF16: A and B must be f16, not ${g.a.dtype} and ${g.b.dtype}`);
  if (g.c.dtype !== 'f32' && g.c.dtype !== 'f16') throw new Error(`gemmF16: C must be f32 or f16, not ${g.c.dtype}`);
  if (descale && g.c.dtype !== 'f32') throw new Error('gemmF16: a descaled product writes f32');
  const lda = g.lda ?? (transA ? M : K);
  const ldb = g.ldb ?? (transB ? K : N);
  const ldc = g.ldc ?? N;
  const [offA, offB, offC] = [g.offA ?? 0, g.offB ?? 0, g.offC ?? 0];
  const batch = g.batch ?? 1;
  const [strideA, strideB, strideC] = [g.strideA ?? 0, g.strideB ?? 0, g.strideC ?? 0];
  const vec = vec4Aligned(lda, ldb, offA, offB, strideA, strideB, transA ? M : K, transB ? K : N);
  const layout = `${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`;
  const tile = gemmTile(gpu, { tier: 'f16', layout, M, N, K, a: 'f16', b: 'f16', c: g.c.dtype }, g.tile);
  const entry = descale ? 'gemm_f16_descaled' : g.c.dtype === 'f16' ? 'gemm_f16_to_f16' : 'gemm_f16';
  const pipeline = gpu.pipeline(`${entry}:${layout}${vec ? ':v4' : ''}:${tile.name}`, () => gemmF16Variant(entry, transA, transB, vec, tile));
  const { BM, BN } = tile.constants as { BM: number; BN: number };
  gpu.dispatch(
    pipeline,
    descale ? [vec4Binding(g.a), vec4Binding(g.b), g.c, descale] : [vec4Binding(g.a), vec4Binding(g.b), g.c],
    [Math.ceil(N / BN), Math.ceil(M / BM), batch],
    [M, N, K, lda, ldb, ldc, offA, offB, offC, strideA, strideB, strideC, f32(g.alpha ?? 1), f32(g.beta ?? 0)],
  );
}

/** The WGSL of a product variant (also compiled on its own by the tuner, to drop tiles that fail). */
export function gemmF16Variant(entry: string, transA: boolean, transB: boolean, vec: boolean, tile: GemmTile): ShaderSource {
  const v = shaderVariant(source, entry, { TRANS_A: transA, TRANS_B: transB, VEC: vec, ...tile.constants });
  return { ...v, code: `enable f16;\n${v.code}` };
}
