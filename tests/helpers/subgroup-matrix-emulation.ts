// Subgroup-matrix builtins emulated in plain WGSL, so a kernel written for them can run its data
// movement (staging, offsets, strides, majorness, epilogue) on a device without them. Every
// invocation computes whole matrices by itself, exactly as the builtins are specified (Dawn's
// subgroup_matrix.md): subgroup_matrix_left<T, K, M> is M rows x K columns, right<T, N, K> is
// K x N, result<T, N, M> is M x N; a row-major load reads element (r, c) at offset + stride*r + c,
// a column-major one at offset + stride*c + r. Slow: tiny shapes only. Takes the template spelling.

interface MatrixType { kind: 'left' | 'right' | 'result'; elem: string; cols: string; rows: string }

export function emulateSubgroupMatrices(code: string): string {
  const aliases = new Map<string, MatrixType>();
  for (const m of code.matchAll(/alias (\w+) = subgroup_matrix_(left|right|result)<(\w+), (\w+), (\w+)>;/g)) {
    aliases.set(m[1]!, { kind: m[2] as MatrixType['kind'], elem: m[3]!, cols: m[4]!, rows: m[5]! });
  }
  const named = (kind: MatrixType['kind']) => {
    const found = [...aliases].filter(([, t]) => t.kind === kind);
    if (found.length !== 1) throw new Error(`emulation wants exactly one alias of subgroup_matrix_${kind}, found ${found.length}`);
    return found[0]!;
  };
  const [leftName, left] = named('left');
  const [rightName, right] = named('right');
  const [resultName, result] = named('result');
  const at = (major: string) => (major === 'row_major' ? 'o + s * i + j' : 'o + s * j + i');

  const fns: string[] = [];
  const seen = new Set<string>();
  let out = code
    .replace(/^enable chromium_experimental_subgroup_matrix;\n/m, '')
    .replace(/^diagnostic\(off, [\w.]+\);\n/m, '')
    .replace(/subgroup_matrix_(?:left|right|result)<(\w+), (\w+), (\w+)>/g, 'array<$1, $2 * $3>')
    .replace(/subgroupMatrixLoad<(\w+), (row_major|col_major)>\(&(\w+),/g, (_, type: string, major: string, array: string) => {
      const t = aliases.get(type);
      if (!t) throw new Error(`emulation: ${type} is not an alias of a subgroup matrix type`);
      const name = `sm_load_${type}_${major}_${array}`;
      if (!seen.has(name)) {
        seen.add(name);
        fns.push(`fn ${name}(o: u32, s: u32) -> ${type} {
  var r: ${type};
  for (var i = 0u; i < ${t.rows}; i++) { for (var j = 0u; j < ${t.cols}; j++) { r[i * ${t.cols} + j] = ${array}[${at(major)}]; } }
  return r;
}`);
      }
      return `${name}(`;
    })
    .replace(/subgroupMatrixStore<(row_major|col_major)>\(&(\w+),/g, (_, major: string, array: string) => {
      const name = `sm_store_${major}_${array}`;
      if (!seen.has(name)) {
        seen.add(name);
        fns.push(`fn ${name}(o: u32, v: ${resultName}, s: u32) {
  for (var i = 0u; i < ${result.rows}; i++) { for (var j = 0u; j < ${result.cols}; j++) { ${array}[${at(major)}] = v[i * ${result.cols} + j]; } }
}`);
      }
      return `${name}(`;
    })
    .replace(/subgroupMatrixMultiplyAccumulate\(/g, 'sm_mma(');
  fns.push(`fn sm_mma(l: ${leftName}, r: ${rightName}, a: ${resultName}) -> ${resultName} {
  var c = a;
  for (var m = 0u; m < ${left.rows}; m++) {
    for (var n = 0u; n < ${right.cols}; n++) {
      var sum = c[m * ${result.cols} + n];
      for (var k = 0u; k < ${left.cols}; k++) { sum += f32(l[m * ${left.cols} + k]) * f32(r[k * ${right.cols} + n]); }
      c[m * ${result.cols} + n] = sum;
    }
  }
  return c;
}`);
  const leftover = /subgroupMatrix\w+|subgroup_matrix_(?:left|right|result)|chromium_experimental_subgroup_matrix/.exec(out);
  if (leftover) throw new Error(`emulation: ${leftover[0]} is left in the shader`);
  out += `\n${fns.join('\n')}\n`;
  return out;
}
