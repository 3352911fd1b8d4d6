// WebGPU in a page or a Web Worker.

import { gpuFromAdapter } from './device';
import { GpuError, type Gpu } from './runtime';

export async function browserGpu(powerPreference: GPUPowerPreference = 'high-performance'): Promise<Gpu> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (!nav?.gpu) {
    throw new GpuError(
      'This browser has no WebGPU. Use a current Chrome, Edge or Safari 26+ (Firefox: enable dom.webgpu.enabled), served over https or localhost.',
    );
  }
  const adapter = await nav.gpu.requestAdapter({ powerPreference });
  if (!adapter) {
    throw new GpuError('WebGPU is present but found no GPU adapter: check that hardware acceleration is on (chrome://gpu).');
  }
  return gpuFromAdapter(adapter);
}
