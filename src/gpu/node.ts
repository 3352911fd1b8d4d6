// WebGPU in Node through Dawn (npm `webgpu`) over Vulkan. Hardware first, with the toggles that
// unlock shader-f16 and subgroup matrices on NVIDIA; without a hardware adapter, SwiftShader's
// Vulkan driver from Debian's chromium package (slow, but correct).

import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gpuFromAdapter } from './device';
import { GpuError, type Gpu } from './runtime';

// disable_workgroup_init: Dawn zero-fills workgroup memory in every shader; our kernels write it
// before reading, and on SwiftShader the fill costs seconds of compile time per pipeline.
const DAWN_FLAGS = ['backend=vulkan', 'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,disable_workgroup_init'];
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

// Dawn's GPU objects must outlive their devices: keep every instance created.
const instances: unknown[] = [];

export interface NodeGpuOptions {
  /** Skip the hardware attempt (tests that want the same software adapter everywhere). */
  software?: boolean;
  warn?: (message: string) => void;
}

export async function nodeGpu(options: NodeGpuOptions = {}): Promise<Gpu> {
  const warn = options.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
  let dawn: typeof import('webgpu');
  try {
    dawn = await import('webgpu');
  } catch (e) {
    throw new GpuError(`could not load Dawn (npm package "webgpu"): ${(e as Error).message}. Run npm install.`);
  }
  Object.assign(globalThis, dawn.globals);
  // Vulkan drivers print "XDG_RUNTIME_DIR is invalid" on headless machines without one; a private
  // temporary directory keeps that noise out of every command's output.
  if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = mkdtempSync(join(tmpdir(), 'crucible-xdg-'));
  const tried: string[] = [];

  const attempt = async (): Promise<GPUAdapter | null> => {
    const gpu = dawn.create(DAWN_FLAGS);
    instances.push(gpu);
    return (await gpu.requestAdapter({ powerPreference: 'high-performance' })) as GPUAdapter | null;
  };

  let adapter: GPUAdapter | null = null;
  const icdPreset = process.env.VK_ICD_FILENAMES ?? process.env.VK_DRIVER_FILES;
  if (!options.software || icdPreset) {
    adapter = await attempt();
    tried.push(`Vulkan with ${icdPreset ? `VK_ICD_FILENAMES=${icdPreset}` : 'the system drivers'}`);
  }
  if (!adapter && !icdPreset) {
    if (existsSync(SWIFTSHADER_ICD)) {
      process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
      adapter = await attempt();
      tried.push(`SwiftShader (${SWIFTSHADER_ICD})`);
      if (adapter && !options.software) warn('no hardware GPU adapter found; using SwiftShader (software, slow)');
    } else tried.push(`SwiftShader: ${SWIFTSHADER_ICD} is missing`);
  }
  if (!adapter) {
    throw new GpuError(
      `no WebGPU adapter. Tried: ${tried.join('; ')}. Fix: install a Vulkan driver for your GPU ` +
        `and the loader (apt-get install libvulkan1), or for a software fallback apt-get install chromium libvulkan1.`,
    );
  }
  return gpuFromAdapter(adapter);
}

