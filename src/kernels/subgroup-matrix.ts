// Whether this device can run the subgroup-matrix GEMM, and how to spell it. The adapter lists
// its matrix configurations (Vulkan passes the driver's cooperative-matrix list): training wants
// f16 operands with f32 results (NVIDIA/AMD 16x16x16, Intel 8x16x16) or f32 throughout (Apple
// 8x8x8); f16 results lose too much to accumulate gradients in. Dawn changed the load/store
// builtins (a boolean column-major argument, then a `row_major`/`col_major` template argument)
// and the name of the uniformity diagnostic, so the spelling this Dawn accepts is found by
// compiling a small shader each way. Kernels write the template form; toLegacySyntax() rewrites it.

import type { SubgroupMatrixConfig } from '../gpu/capabilities';
import type { Gpu } from '../gpu/runtime';

export const SUBGROUP_MATRIX_FEATURE = 'chromium-experimental-subgroup-matrix';

export type MatrixSyntax = 'template' | 'bool';

export interface SubgroupMatrixTier {
  config: SubgroupMatrixConfig;
  syntax: MatrixSyntax;
  /** The diagnostic rule that turns off the subgroup-uniformity check, as this Dawn names it. */
  diagnostic: string;
  /** Invocations per subgroup (the adapter's largest): workgroups are whole subgroups. */
  subgroupSize: number;
}

const DIAGNOSTICS = ['chromium.subgroup_matrix_uniformity', 'chromium_experimental.subgroup_matrix_uniformity'];
const SYNTAXES: MatrixSyntax[] = ['template', 'bool'];

/** The configuration the GEMM uses: f16 -> f32 with the most work per multiply, else f32 -> f32. */
export function pickConfig(configs: readonly SubgroupMatrixConfig[]): SubgroupMatrixConfig | null {
  const size = (c: SubgroupMatrixConfig) => c.M * c.N * c.K;
  const best = (component: string) =>
    configs.filter((c) => c.componentType === component && c.resultComponentType === 'f32').sort((a, b) => size(b) - size(a))[0];
  return best('f16') ?? best('f32') ?? null;
}

/** Directives a subgroup-matrix shader starts with; `f16` when any of its types is f16. */
export function directives(tier: Pick<SubgroupMatrixTier, 'config' | 'diagnostic'>, f16 = tier.config.componentType === 'f16'): string {
  return `${f16 ? 'enable f16;\n' : ''}enable subgroups;\nenable chromium_experimental_subgroup_matrix;\ndiagnostic(off, ${tier.diagnostic});\n`;
}

/**
 * The boolean form of the load/store builtins from the template form:
 * `subgroupMatrixLoad<T, row_major>(p, o, s)` -> `subgroupMatrixLoad<T>(p, o, false, s)` and
 * `subgroupMatrixStore<col_major>(p, o, v, s)` -> `subgroupMatrixStore(p, o, v, true, s)`.
 * Arguments must not contain commas or parentheses of their own beyond one level (kernels keep
 * them to plain expressions).
 */
export function toLegacySyntax(code: string): string {
  const arg = String.raw`((?:[^,()]|\([^()]*\))+)`;
  const load = new RegExp(String.raw`subgroupMatrixLoad<(.+?), (row_major|col_major)>\(${arg},${arg},${arg}\)`, 'g');
  const store = new RegExp(String.raw`subgroupMatrixStore<(row_major|col_major)>\(${arg},${arg},${arg},${arg}\)`, 'g');
  return code
    .replace(load, (_, t, major, p, o, s) => `subgroupMatrixLoad<${t}>(${p},${o}, ${major === 'col_major'},${s})`)
    .replace(store, (_, major, p, o, v, s) => `subgroupMatrixStore(${p},${o},${v}, ${major === 'col_major'},${s})`);
}

export const forSyntax = (code: string, syntax: MatrixSyntax): string => (syntax === 'template' ? code : toLegacySyntax(code));

/** A shader using every builtin the GEMM uses, in workgroup and storage memory, with one config. */
export function probeShader(config: SubgroupMatrixConfig, diagnostic: string, subgroupSize: number): string {
  const { M, N, K } = config;
  const T = config.componentType;
  const R = config.resultComponentType;
  return `${directives({ config, diagnostic })}
@group(0) @binding(0) var<storage, read_write> out: array<${R}>;
var<workgroup> lhs: array<${T}, ${M * K}>;
var<workgroup> rhs: array<${T}, ${K * N}>;
var<workgroup> res: array<${R}, ${M * N}>;
@compute @workgroup_size(${subgroupSize})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sg: u32) {
  var acc = subgroup_matrix_result<${R}, ${N}, ${M}>();
  let a = subgroupMatrixLoad<subgroup_matrix_left<${T}, ${K}, ${M}>, row_major>(&lhs, sg * ${M * K}u, ${K}u);
  let b = subgroupMatrixLoad<subgroup_matrix_right<${T}, ${N}, ${K}>, col_major>(&rhs, 0u, ${K}u);
  acc = subgroupMatrixMultiplyAccumulate(a, b, acc);
  subgroupMatrixStore<row_major>(&res, 0u, acc, ${N}u);
  workgroupBarrier();
  out[lid] = res[lid % ${M * N}u];
  subgroupMatrixStore<col_major>(&out, 0u, acc, ${M}u);
}
`;
}

/** Error messages of compiling `code` into a pipeline (empty when it compiles). */
export async function compileErrors(device: GPUDevice, code: string, entryPoint = 'main'): Promise<string[]> {
  device.pushErrorScope('validation');
  device.pushErrorScope('internal');
  const module = device.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
  if (errors.length === 0) {
    try {
      await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint } });
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  for (const scope of ['internal', 'validation']) {
    const err = await device.popErrorScope();
    if (err && !errors.includes(err.message)) errors.push(`${scope}: ${err.message}`);
  }
  return errors;
}

const tiers = new WeakMap<Gpu, Promise<SubgroupMatrixTier | string>>();

/**
 * The subgroup-matrix tier of this device, or why there is none (a sentence). Compiles the probe
 * once per device.
 */
export function subgroupMatrixTier(gpu: Gpu): Promise<SubgroupMatrixTier | string> {
  let t = tiers.get(gpu);
  if (!t) {
    t = findTier(gpu);
    tiers.set(gpu, t);
  }
  return t;
}

async function findTier(gpu: Gpu): Promise<SubgroupMatrixTier | string> {
  const { caps, device } = gpu;
  if (!device.features.has(SUBGROUP_MATRIX_FEATURE as GPUFeatureName)) {
    return `${caps.adapter} has no ${SUBGROUP_MATRIX_FEATURE} feature`;
  }
  if (!device.features.has('subgroups')) return `${caps.adapter} has subgroup matrices but no subgroups feature`;
  const config = pickConfig(caps.subgroupMatrix);
  if (!config) {
    const list = caps.subgroupMatrix.map((c) => `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`).join(', ');
    return `${caps.adapter} offers no subgroup-matrix config with f32 results (${list || 'none listed'})`;
  }
  if (config.componentType === 'f16' && !device.features.has('shader-f16')) return `${caps.adapter} has f16 subgroup matrices but no shader-f16`;
  const subgroupSize = caps.subgroupSize?.max;
  if (!subgroupSize) return `${caps.adapter} does not report its subgroup size`;
  const failures: string[] = [];
  for (const diagnostic of DIAGNOSTICS) {
    for (const syntax of SYNTAXES) {
      const errors = await compileErrors(device, forSyntax(probeShader(config, diagnostic, subgroupSize), syntax));
      if (errors.length === 0) return { config, syntax, diagnostic, subgroupSize };
      failures.push(`${syntax} form with ${diagnostic}: ${errors[0]}`);
    }
  }
  return `no subgroup-matrix spelling compiles on ${caps.adapter}: ${failures.join('; ')}`;
}
