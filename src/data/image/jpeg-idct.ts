// libjpeg's "islow" inverse DCT (jidctint.c): 13-bit fixed-point constants, two passes with
// PASS1_BITS of extra precision between them, and its post-IDCT range limiting.

const CONST_BITS = 13;
const PASS1_BITS = 2;
const F0_298 = 2446, F0_390 = 3196, F0_541 = 4433, F0_765 = 6270, F0_899 = 7373, F1_175 = 9633;
const F1_501 = 12299, F1_847 = 15137, F1_961 = 16069, F2_053 = 16819, F2_562 = 20995, F3_072 = 25172;

const RANGE_LIMIT = (() => {
  const t = new Uint8Array(1024);
  for (let i = 0; i < 1024; i++) t[i] = i < 128 ? i + 128 : i < 512 ? 255 : i < 896 ? 0 : i - 896;
  return t;
})();

/** DESCALE: x / 2^n rounded, with an arithmetic shift's floor (multiplying by 2^-n is exact). */
const descale = (x: number, n: number) => Math.floor((x + HALF[n]) * INVERSE[n]);
const HALF = Array.from({ length: 32 }, (_, n) => (n ? 2 ** (n - 1) : 0));
const INVERSE = Array.from({ length: 32 }, (_, n) => 2 ** -n);

/** One 8x8 block through libjpeg's jpeg_idct_islow, into `out` at (x, y) of a plane `stride` wide. */
export function idctBlock(coefs: Int32Array, at: number, quant: Int32Array, ws: Float64Array, out: Uint8Array, stride: number, x0: number, y0: number): void {
  for (let c = 0; c < 8; c++) {
    const k = at + c;
    if (coefs[k + 8] === 0 && coefs[k + 16] === 0 && coefs[k + 24] === 0 && coefs[k + 32] === 0 && coefs[k + 40] === 0 && coefs[k + 48] === 0 && coefs[k + 56] === 0) {
      const dc = coefs[k] * quant[c] * (1 << PASS1_BITS);
      for (let i = 0; i < 8; i++) ws[i * 8 + c] = dc;
      continue;
    }
    const r = odd1d(
      coefs[k] * quant[c],
      coefs[k + 8] * quant[8 + c],
      coefs[k + 16] * quant[16 + c],
      coefs[k + 24] * quant[24 + c],
      coefs[k + 32] * quant[32 + c],
      coefs[k + 40] * quant[40 + c],
      coefs[k + 48] * quant[48 + c],
      coefs[k + 56] * quant[56 + c],
      CONST_BITS - PASS1_BITS,
    );
    for (let i = 0; i < 8; i++) ws[i * 8 + c] = r[i];
  }
  for (let row = 0; row < 8; row++) {
    const w = row * 8;
    const r = odd1d(ws[w], ws[w + 1], ws[w + 2], ws[w + 3], ws[w + 4], ws[w + 5], ws[w + 6], ws[w + 7], CONST_BITS + PASS1_BITS + 3);
    const o = (y0 + row) * stride + x0;
    for (let i = 0; i < 8; i++) out[o + i] = RANGE_LIMIT[r[i] & 1023];
  }
}

const tmpOut = [0, 0, 0, 0, 0, 0, 0, 0];
/** The islow 1-D transform of (d0..d7), descaled by `shift` bits. */
function odd1d(d0: number, d1: number, d2: number, d3: number, d4: number, d5: number, d6: number, d7: number, shift: number): number[] {
  let z1 = (d2 + d6) * F0_541;
  let tmp2 = z1 - d6 * F1_847;
  let tmp3 = z1 + d2 * F0_765;
  let tmp0 = (d0 + d4) * (1 << CONST_BITS);
  let tmp1 = (d0 - d4) * (1 << CONST_BITS);
  const t10 = tmp0 + tmp3;
  const t13 = tmp0 - tmp3;
  const t11 = tmp1 + tmp2;
  const t12 = tmp1 - tmp2;
  tmp0 = d7;
  tmp1 = d5;
  tmp2 = d3;
  tmp3 = d1;
  z1 = tmp0 + tmp3;
  let z2 = tmp1 + tmp2;
  let z3 = tmp0 + tmp2;
  let z4 = tmp1 + tmp3;
  const z5 = (z3 + z4) * F1_175;
  tmp0 *= F0_298;
  tmp1 *= F2_053;
  tmp2 *= F3_072;
  tmp3 *= F1_501;
  z1 *= -F0_899;
  z2 *= -F2_562;
  z3 = z3 * -F1_961 + z5;
  z4 = z4 * -F0_390 + z5;
  tmp0 += z1 + z3;
  tmp1 += z2 + z4;
  tmp2 += z2 + z3;
  tmp3 += z1 + z4;
  const o = tmpOut;
  o[0] = descale(t10 + tmp3, shift);
  o[7] = descale(t10 - tmp3, shift);
  o[1] = descale(t11 + tmp2, shift);
  o[6] = descale(t11 - tmp2, shift);
  o[2] = descale(t12 + tmp1, shift);
  o[5] = descale(t12 - tmp1, shift);
  o[3] = descale(t13 + tmp0, shift);
  o[4] = descale(t13 - tmp0, shift);
  return o;
}

/** The component's samples, (stride*8) wide and (rows*8) high. */
