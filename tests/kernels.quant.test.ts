// Kernel family: quant (shaders/quant.wgsl, src/kernels/quant.ts) and its routing through
// linear() / linearBackwardInput() in src/kernels/matmul.ts.
import { describe, expect, it } from 'vitest';
import {
  dequantize, dequantizeHost, qlinearForward, qlinearBackwardInput, quantize, quantizeHost, type QuantDType,
} from '../src/kernels/quant';
import { linear, linearBackwardInput } from '../src/kernels/matmul';
import { QLINEAR_CASES } from '../src/bench/cases/quant';
import type { Gpu } from '../src/gpu/runtime';
import type { Tensor } from '../src/gpu/tensor';
import { testGpu, poisoned } from './helpers/gpu';
import { expectClose, makeRng, type Rng } from './helpers/check';
import {
  refDequantize, refF16Bits, refHalf, refLinear, refLinearBackwardInput, refPadRows, refParse, refQuantize, refRowWidth,
} from './reference/quant';

const DTYPES: QuantDType[] = ['q8', 'q4'];

/**
 * Weights whose blocks cycle through the cases that matter: Gaussian at scales from 1e-3 to 10,
 * all zeros, exact rounding ties, a +-extreme tie, tiny values (f16-subnormal or zero scale before
 * the bump), an outlier.
 */
function weights(rng: Rng, N: number, K: number, dtype: QuantDType): Float32Array {
  const v = rng.randn(N * K);
  const step = dtype === 'q8' ? 0.5 : 0.25;
  for (let b = 0; b < (N * K) / 32; b++) {
    const blk = v.subarray(b * 32, b * 32 + 32);
    switch (b % 8) {
      case 0: case 1: case 2: {
        const s = 10 ** (rng.next() * 4 - 3);
        for (let i = 0; i < 32; i++) blk[i] = Math.fround(blk[i]! * s);
        break;
      }
      case 3: blk.fill(0); break;
      case 4: // every value halfway between two codes; scale exactly `step`
        for (let i = 0; i < 32; i++) {
          const j = dtype === 'q8' ? Math.floor(rng.next() * 254) - 127 : Math.floor(rng.next() * 15) - 8;
          blk[i] = (j + 0.5) * step;
        }
        blk[0] = dtype === 'q8' ? 127 * step : -8 * step;
        break;
      case 5: blk[3] = 3; blk[17] = -3; break;
      case 6: { // f16-subnormal scales
        const kind = (b >> 3) % 4;
        if (kind === 0) {
          // extreme at 1.2 codes-per-ulp: the scale rounds to one f16 ulp (2^-24) and must be bumped
          const ext = (dtype === 'q8' ? 127 : 8) * 1.2 * 2 ** -24;
          for (let i = 0; i < 32; i++) blk[i] = Math.fround((rng.next() * 2 - 1) * ext);
          blk[rng.int(1, 32)[0]!] = Math.fround(rng.next() < 0.5 ? ext : -ext);
        } else {
          const s = [0, 1e-6, 1e-5, 3e-4][kind]!;
          for (let i = 0; i < 32; i++) blk[i] = Math.fround(blk[i]! * s);
        }
        break;
      }
      case 7: blk[rng.int(1, 32)[0]!] = 100 * (rng.next() < 0.5 ? -1 : 1); break;
    }
  }
  return v;
}

async function readQuant(gpu: Gpu, t: Tensor): Promise<Uint8Array> {
  return new Uint8Array(await gpu.readBytes(t));
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

describe('quant', () => {
  it('f16 rounding of the scale matches an exhaustive-search reference', async () => {
    const { f32ToHalfBits } = await import('../src/kernels/quant');
    const rng = makeRng();
    const xs = [0, 65504, 70000, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -14, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 6e-8, 1e-5];
    for (let i = 0; i < 2000; i++) xs.push(Math.fround(10 ** (rng.next() * 14 - 9) * (rng.next() < 0.5 ? -1 : 1)));
    for (const x of xs) expect(f32ToHalfBits(Math.fround(x)), `f16(${x}) (SEED=${rng.seed})`).toBe(refF16Bits(Math.fround(x)));
  });

  it('GPU quantize writes the bytes of quantizeHost, which follow the reference rules; dequantize is exact and within half a step', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    for (const dtype of DTYPES) {
      let bumped = 0; // blocks whose f16 scale was raised one ulp (coverage of that path)
      // K = 40 and 20: rows padded to whole blocks with zeros
      for (const [N, K] of [[3, 32], [37, 96], [5, 64], [6, 40], [9, 20]] as const) {
        const what = `${dtype} [${N}, ${K}] (SEED=${rng.seed})`;
        const w = weights(rng, N, K, dtype);
        const tw = gpu.upload(w, [N, K], 'f32', 'w');
        const tq = quantize(gpu, tw, dtype);
        expect(tq.dtype).toBe(dtype);
        const out = poisoned(gpu, [N, K]);
        dequantize(gpu, tq, out);
        const gpuBytes = await readQuant(gpu, tq);
        const host = quantizeHost(w, N, K, dtype);
        const d = firstDiff(gpuBytes, host);
        expect(d, `${what}: GPU and CPU bytes differ first at byte ${d}`).toBe(-1);

        const ref = refQuantize(w, N, K, dtype), parsed = refParse(host, N, K, dtype);
        const Kp = refRowWidth(K), wp = refPadRows(w, N, K);
        for (let b = 0; b < (N * Kp) / 32; b++) {
          const blk = Array.from(wp.subarray(b * 32, b * 32 + 32)), ext = Math.max(...blk.map(Math.abs));
          const m = dtype === 'q8' ? Math.fround(ext * Math.fround(1 / 127)) : (blk.includes(ext) ? ext : -ext) / -8;
          if (ext > 0 && refF16Bits(m) !== ref.scaleBits[b]) bumped++;
        }
        expect(Array.from(parsed.scaleBits), `${what}: scales`).toEqual(Array.from(ref.scaleBits));
        expect(Array.from(parsed.codes), `${what}: codes`).toEqual(Array.from(ref.codes));

        const deq = refDequantize(parsed, N, K);
        expect(Array.from(await gpu.readF32(out)), `${what}: GPU dequantize`).toEqual(Array.from(deq));
        expect(Array.from(dequantizeHost(host, N, K, dtype)), `${what}: dequantizeHost`).toEqual(Array.from(deq));

        for (let i = 0; i < N * K; i++) {
          const stored = Math.floor(i / K) * Kp + (i % K);
          const s = Math.abs(refHalf(parsed.scaleBits[stored >> 5]!)), err = Math.abs(w[i]! - deq[i]!);
          // q4: a value opposite in sign to the block's extreme and beyond 7.5 steps clamps to +7
          const ok = err <= s / 2 || (dtype === 'q4' && parsed.codes[stored] === 7 && err <= s);
          if (!ok) expect.fail(`${what}: value ${i} = ${w[i]} dequantizes to ${deq[i]}, scale ${s}`);
        }
        gpu.release(tw, tq, out);
      }
      expect(bumped, `${dtype}: no block exercised the scale bump (SEED=${rng.seed})`).toBeGreaterThan(0);
    }
  });

  it('q4 (Q4_0 style, 16 levels) beats the plain symmetric absmax/7 form on Gaussian weights', () => {
    const rng = makeRng();
    const [N, K] = [64, 256];
    const w = rng.randn(N * K);
    const deq = dequantizeHost(quantizeHost(w, N, K, 'q4'), N, K, 'q4');
    let e4 = 0, e7 = 0;
    for (let b = 0; b < (N * K) / 32; b++) {
      const blk = w.subarray(b * 32, b * 32 + 32);
      const s = Math.max(...Array.from(blk, Math.abs)) / 7;
      for (let i = 0; i < 32; i++) {
        e4 += (blk[i]! - deq[b * 32 + i]!) ** 2;
        e7 += (blk[i]! - Math.round(blk[i]! / s) * s) ** 2;
      }
    }
    expect(e4, `SEED=${rng.seed}`).toBeLessThan(0.9 * e7);
  });

  const checked = (direction: 'forward' | 'backward') => QLINEAR_CASES.filter((c) => !c.bench && c.direction === direction);
  it('qlinear matches the f64 product with the dequantized weight (decode and tiled paths, accumulate)', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    for (const { T, N, K, dtype } of checked('forward')) {
      const what = `qlinear ${dtype} T=${T} N=${N} K=${K}`;
      const w = rng.randn(N * K, 0.1), x = rng.randn(T * K), y0 = rng.randn(T * N);
      const bytes = quantizeHost(w, N, K, dtype);
      const wd = dequantizeHost(bytes, N, K, dtype);
      const tq = gpu.upload(bytes, [N, K], dtype, 'w'), tx = gpu.upload(x, [T, K]);
      const y = poisoned(gpu, [T, N]), yAcc = gpu.upload(y0, [T, N]);
      qlinearForward(gpu, tx, tq, y, false, 0.75);
      qlinearForward(gpu, tx, tq, yAcc, true, -0.5);
      expectClose(await gpu.readF32(y), refLinear(x, wd, T, N, K, 0.75), 1e-5, what, rng.seed);
      expectClose(await gpu.readF32(yAcc), refLinear(x, wd, T, N, K, -0.5, 1, y0), 1e-5, `${what} accumulate`, rng.seed);
      gpu.release(tq, tx, y, yAcc);
    }
  });

  it('qlinearBackwardInput matches dY · deq(W); the reference gradient matches finite differences', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    for (const { T, N, K, dtype } of checked('backward')) {
      const what = `qlinearBackwardInput ${dtype} T=${T} N=${N} K=${K}`;
      const w = rng.randn(N * K, 0.1), dy = rng.randn(T * N), dx0 = rng.randn(T * K);
      const tw = gpu.upload(w, [N, K]);
      const tq = quantize(gpu, tw, dtype);
      const wd = dequantizeHost(quantizeHost(w, N, K, dtype), N, K, dtype);
      const tdy = gpu.upload(dy, [T, N]);
      const dx = poisoned(gpu, [T, K]), dxAcc = gpu.upload(dx0, [T, K]);
      qlinearBackwardInput(gpu, tdy, tq, dx, false, 1.5);
      qlinearBackwardInput(gpu, tdy, tq, dxAcc, true, 1);
      const ref = refLinearBackwardInput(dy, wd, T, N, K, 1.5);
      expectClose(await gpu.readF32(dx), ref, 1e-5, what, rng.seed);
      expectClose(await gpu.readF32(dxAcc), refLinearBackwardInput(dy, wd, T, N, K, 1, 1, dx0), 1e-5, `${what} accumulate`, rng.seed);

      // L(x) = 1.5 sum(dy ⊙ x deq(W)ᵀ): dL/dx = ref
      const x = Float64Array.from(rng.randn(T * K));
      const loss = (xs: Float64Array) => refLinear(xs, wd, T, N, K, 1.5).reduce((s, v, i) => s + v * dy[i]!, 0);
      for (let j = 0; j < 4; j++) {
        const i = Math.floor(rng.next() * T * K), h = 1e-3;
        const xp = x.slice(), xm = x.slice();
        xp[i]! += h;
        xm[i]! -= h;
        const fd = (loss(xp) - loss(xm)) / (2 * h);
        expect(Math.abs(fd - ref[i]!), `${what}: finite difference at ${i} (SEED=${rng.seed})`).toBeLessThan(1e-6 * (1 + Math.abs(ref[i]!)));
      }
      gpu.release(tw, tq, tdy, dx, dxAcc);
    }
  });

  it('linear() and linearBackwardInput() route quantized weights and split weights with quantized parts', async () => {
    const gpu = await testGpu();
    const rng = makeRng();
    const [N, K] = [70, 96];
    const rowsOf = [30, 17, 23]; // parts: q4, f32, q8
    const w = rng.randn(N * K, 0.1);
    const whole = quantizeHost(w, N, K, 'q8');
    const wWhole = dequantizeHost(whole, N, K, 'q8');
    const partTypes = ['q4', 'f32', 'q8'] as const;
    const wSplit = new Float32Array(N * K);
    const parts: Tensor[] = [];
    let r0 = 0;
    rowsOf.forEach((n, i) => {
      const src = w.subarray(r0 * K, (r0 + n) * K), dt = partTypes[i]!;
      if (dt === 'f32') {
        parts.push(gpu.upload(src, [n, K]));
        wSplit.set(src, r0 * K);
      } else {
        const b = quantizeHost(src, n, K, dt);
        parts.push(gpu.upload(b, [n, K], dt, `part${i}`));
        wSplit.set(dequantizeHost(b, n, K, dt), r0 * K);
      }
      r0 += n;
    });
    const tWhole = gpu.upload(whole, [N, K], 'q8', 'whole');
    for (const T of [2, 23]) {
      const x = rng.randn(T * K), dy = rng.randn(T * N), dx0 = rng.randn(T * K);
      const tx = gpu.upload(x, [T, K]), tdy = gpu.upload(dy, [T, N]);
      const y = poisoned(gpu, [T, N]), ySplit = poisoned(gpu, [T, N]);
      linear(gpu, tx, tWhole, y);
      linear(gpu, tx, parts, ySplit, false, 2);
      expectClose(await gpu.readF32(y), refLinear(x, wWhole, T, N, K), 1e-5, `linear q8 T=${T}`, rng.seed);
      expectClose(await gpu.readF32(ySplit), refLinear(x, wSplit, T, N, K, 2), 1e-5, `linear split T=${T}`, rng.seed);

      const dx = poisoned(gpu, [T, K]), dxSplit = gpu.upload(dx0, [T, K]);
      linearBackwardInput(gpu, tdy, tWhole, dx);
      linearBackwardInput(gpu, tdy, parts, dxSplit, true, 0.5);
      expectClose(await gpu.readF32(dx), refLinearBackwardInput(dy, wWhole, T, N, K), 1e-5, `linearBackwardInput q8 T=${T}`, rng.seed);
      expectClose(await gpu.readF32(dxSplit), refLinearBackwardInput(dy, wSplit, T, N, K, 0.5, 1, dx0), 1e-5, `linearBackwardInput split T=${T}`, rng.seed);
      gpu.release(tx, tdy, y, ySplit, dx, dxSplit);
    }
  });

  it('rejects bad shapes with errors naming the tensor', async () => {
    const gpu = await testGpu();
    expect(() => quantize(gpu, gpu.tensor([48], 'f32', 'layers.0.mlp.up'), 'q4')).toThrow(/layers\.0\.mlp\.up \[48\] must be 2-D/);
    expect(() => quantize(gpu, gpu.tensor([0, 48], 'f32', 'layers.0.mlp.up'), 'q4')).toThrow(/layers\.0\.mlp\.up has shape \[0, 48\]; expected a non-empty 2-D weight/);
    expect(() => quantizeHost(new Float32Array(4 * 47), 4, 48, 'q8')).toThrow(/188 values for shape \[4, 48\]/);
    const q = quantize(gpu, gpu.tensor([6, 64], 'f32', 'wq'), 'q8');
    expect(() => qlinearForward(gpu, gpu.tensor([3, 32]), q, gpu.tensor([3, 6]))).toThrow(/64 columns, input \[3, 32\] has 32/);
    expect(() => qlinearForward(gpu, gpu.tensor([3, 64]), q, gpu.tensor([3, 5]))).toThrow(/output \[3, 5\]/);
    expect(() => qlinearBackwardInput(gpu, gpu.tensor([3, 6]), q, gpu.tensor([3, 32]))).toThrow(/must be \[3, 64\]/);
    expect(() => linear(gpu, gpu.tensor([3, 64]), [q, q], gpu.tensor([3, 8]))).toThrow(/at least 12 rows, output has 8/);
    await gpu.sync();
  });
});
