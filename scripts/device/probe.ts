// What the adapter offers the fast tiers, as JSON on stdout:
//   node --import ./bin/register.js scripts/device/probe.ts > probe.json
// Adapter info, features, limits, subgroup sizes and matrix configs; which shaders compile
// (f16, subgroups, subgroup_id, both spellings of the subgroup-matrix load/store builtins for each
// config); and the subgroup-matrix tier the GEMM would use. Honours VK_ICD_FILENAMES (lavapipe:
// VK_ICD_FILENAMES=.gl/lvp_icd.json after scripts/lavapipe.sh).

import { readFileSync } from 'node:fs';
import { nodeGpu } from '../../src/gpu/node';
import { compileErrors, forSyntax, probeShader, subgroupMatrixTier, type MatrixSyntax } from '../../src/kernels/subgroup-matrix';

const SHADERS: Record<string, string> = {
  f16: `enable f16;
@group(0) @binding(0) var<storage, read_write> out: array<vec4<f16>>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) { out[id.x] = vec4<f16>(f16(id.x) * 0.5h); }`,
  subgroups: `enable subgroups;
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) { out[id.x] = subgroupAdd(f32(id.x)); }`,
  subgroup_id: `enable subgroups;
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(64) fn main(@builtin(local_invocation_index) i: u32, @builtin(subgroup_id) sg: u32) { out[i] = sg; }`,
};

const gpu = await nodeGpu({ warn: (m) => process.stderr.write(`warning: ${m}\n`) });
const { device, caps } = gpu;
const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
const limits: Record<string, number> = {};
for (const key in device.limits) {
  const v = (device.limits as unknown as Record<string, unknown>)[key];
  if (typeof v === 'number') limits[key] = v;
}

const compiles: Record<string, string[] | 'ok'> = {};
const check = async (name: string, code: string) => {
  const errors = await compileErrors(device, code);
  compiles[name] = errors.length ? errors : 'ok';
};
for (const [name, code] of Object.entries(SHADERS)) await check(name, code);
// float configs only (integer ones have no WGSL scalar of their size to stage in)
const float = (t: string) => t === 'f16' || t === 'f32';
for (const config of caps.subgroupMatrix.filter((c) => float(c.componentType) && float(c.resultComponentType))) {
  if ((config.componentType === 'f16' || config.resultComponentType === 'f16') && !device.features.has('shader-f16')) continue;
  const name = `${config.componentType}->${config.resultComponentType} ${config.M}x${config.N}x${config.K}`;
  for (const diagnostic of ['chromium.subgroup_matrix_uniformity', 'chromium_experimental.subgroup_matrix_uniformity']) {
    for (const syntax of ['template', 'bool'] as MatrixSyntax[]) {
      await check(`${name} ${syntax} (${diagnostic})`, forSyntax(probeShader(config, diagnostic, caps.subgroupSize?.max ?? 32), syntax));
    }
  }
}

const tier = await subgroupMatrixTier(gpu);
const report = {
  date: new Date().toISOString(),
  webgpuPackage: JSON.parse(readFileSync('node_modules/webgpu/package.json', 'utf8')).version as string,
  adapter: info
    ? { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description, ...extra(info) }
    : caps.adapter,
  caps,
  features: [...device.features].sort(),
  limits,
  compiles,
  subgroupMatrixTier: tier,
};
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
gpu.destroy();
process.exit(0);

function extra(i: GPUAdapterInfo): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of ['subgroupMinSize', 'subgroupMaxSize', 'isFallbackAdapter', 'backendType', 'adapterType', 'driverDescription', 'vendorID', 'deviceID']) {
    const v = (i as unknown as Record<string, unknown>)[key];
    if (v !== undefined) out[key] = v;
  }
  const configs = (i as unknown as { subgroupMatrixConfigs?: unknown[] }).subgroupMatrixConfigs;
  if (configs) out.subgroupMatrixConfigs = [...configs].map((c) => ({ ...(c as object) }));
  return out;
}
