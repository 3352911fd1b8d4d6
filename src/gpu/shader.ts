// The one templating scheme of the WGSL shaders: a shader names its variant constants in a header
// line `// variant: NAME, NAME, ...` and uses them as ordinary `const`s (array sizes, workgroup
// sizes, binding numbers, `if (NAME)` selecting code); a variant is the source with those
// constants declared in front of it. Launchers build it only when Gpu.pipeline misses its key.

/** WGSL and the entry point to compile. */
export interface ShaderSource {
  code: string;
  entryPoint: string;
}

export type VariantConstants = Readonly<Record<string, number | boolean>>;

const HEADER = /^\/\/ variant: (.+)$/m;

/** The source with `const NAME = value;` for each of its declared variant constants. */
export function shaderVariant(source: string, entryPoint: string, constants: VariantConstants = {}): ShaderSource {
  const declared = HEADER.exec(source)?.[1]!.split(',').map((s) => s.trim()) ?? [];
  const given = Object.keys(constants);
  const missing = declared.filter((n) => !given.includes(n));
  const unknown = given.filter((n) => !declared.includes(n));
  if (missing.length || unknown.length) {
    throw new Error(`shader variant of ${entryPoint}: ${missing.length ? `missing ${missing.join(', ')}` : ''}${missing.length && unknown.length ? '; ' : ''}${unknown.length ? `not declared ${unknown.join(', ')}` : ''}`);
  }
  const lines = Object.entries(constants).map(([name, v]) => `const ${name} = ${literal(name, v)};`);
  return { code: `${lines.join('\n')}\n${source}`, entryPoint };
}

/** An abstract WGSL literal: it takes the type its use asks for (u32, i32, f32). */
function literal(name: string, v: number | boolean): string {
  if (typeof v === 'boolean') return String(v);
  if (!Number.isFinite(v)) throw new Error(`shader constant ${name} = ${v} is not finite`);
  return Number.isInteger(v) ? String(v) : v.toExponential();
}
