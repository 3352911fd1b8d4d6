// What a WebGPU adapter offers, as a plain object, and which features/limits to request.

export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

export interface Capabilities {
  adapter: string;
  /** vendor/architecture/device/description/driver/backend: what a per-device cache (GEMM tuning) is keyed by. */
  identity: string;
  backend: string;
  f16: boolean;
  subgroups: boolean;
  subgroupSize: { min: number; max: number } | null;
  subgroupMatrix: SubgroupMatrixConfig[];
  timestampQuery: boolean;
  software: boolean;
  /** Device-local memory in bytes, where the adapter reports its heaps (Dawn's memoryHeaps). */
  memoryBytes?: number;
  limits: {
    maxBufferSize: number;
    maxStorageBufferBindingSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupsPerDimension: number;
    maxStorageBuffersPerShaderStage: number;
  };
}

const WANTED_FEATURES = [
  'shader-f16',
  'subgroups',
  'timestamp-query',
  'chromium-experimental-subgroup-matrix',
] as const;

const WANTED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

export function featuresToRequest(adapter: GPUAdapter): GPUFeatureName[] {
  return WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
}

/** The adapter's own limits: WebGPU's defaults (128 MiB bindings) are far below real GPUs. */
export function limitsToRequest(adapter: GPUAdapter): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of WANTED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === 'number') out[name] = v;
  }
  return out;
}

export function describe(adapter: GPUAdapter, device: GPUDevice): Capabilities {
  const info = adapter.info as GPUAdapterInfo & {
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
    subgroupMatrixConfigs?: SubgroupMatrixConfig[];
    backendType?: string;
    driverDescription?: string;
    memoryHeaps?: { size: number; properties: number }[];
  };
  const name = [info.vendor, info.architecture, info.device, info.description]
    .filter((s) => s && s.length > 0)
    .join(' ')
    .trim();
  const software = /swiftshader|llvmpipe|lavapipe|software/i.test(name);
  const l = device.limits;
  // heap property bit 1 is device-local memory
  const memoryBytes = [...(info.memoryHeaps ?? [])].filter((h) => (h.properties & 1) !== 0).reduce((a, h) => a + Number(h.size), 0);
  return {
    adapter: name || 'unknown adapter',
    identity: [info.vendor, info.architecture, info.device, info.description, info.driverDescription, info.backendType].map((s) => s ?? '').join('/'),
    backend: info.backendType ?? 'webgpu',
    f16: device.features.has('shader-f16'),
    subgroups: device.features.has('subgroups'),
    subgroupSize:
      info.subgroupMinSize !== undefined
        ? { min: info.subgroupMinSize, max: info.subgroupMaxSize ?? info.subgroupMinSize }
        : null,
    subgroupMatrix: device.features.has('chromium-experimental-subgroup-matrix' as GPUFeatureName)
      ? [...(info.subgroupMatrixConfigs ?? [])].map((c) => ({ ...c }))
      : [],
    timestampQuery: device.features.has('timestamp-query'),
    software,
    ...(memoryBytes > 0 ? { memoryBytes } : {}),
    limits: {
      maxBufferSize: l.maxBufferSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    },
  };
}
