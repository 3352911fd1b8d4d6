// Turning a WebGPU adapter into a Gpu: request the adapter's real limits and useful features.
// Host-specific acquisition lives in browser.ts (navigator.gpu) and node.ts (Dawn).

import { describe, featuresToRequest, limitsToRequest } from './capabilities';
import { Gpu, GpuError } from './runtime';

export async function gpuFromAdapter(adapter: GPUAdapter): Promise<Gpu> {
  const device = await adapter.requestDevice({
    requiredFeatures: featuresToRequest(adapter),
    requiredLimits: limitsToRequest(adapter),
  });
  if (!device) throw new GpuError('the GPU adapter refused to create a device');
  return new Gpu(device, describe(adapter, device));
}
