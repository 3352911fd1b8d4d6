// GPUs for the f16 tier tests (and later the subgroup ones: lavapipe has subgroups too). The
// machine's own adapter when it has the feature (a real GPU); otherwise Mesa's lavapipe unpacked
// into .gl/ by scripts/lavapipe.sh, opened by this test file's own Dawn instance: the Vulkan loader
// reads VK_ICD_FILENAMES / VK_DRIVER_FILES when Dawn creates its instance, so they are set around
// that and restored, and every other test keeps SwiftShader. A string result says why no such GPU
// is available (tests skip with it).
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { nodeGpu } from '../../src/gpu/node';
import type { Gpu } from '../../src/gpu/runtime';
import { testGpu } from './gpu';

export const LAVAPIPE_ICD = resolve(import.meta.dirname, '../../.gl/lvp_icd.json');
const ENV = ['VK_ICD_FILENAMES', 'VK_DRIVER_FILES'] as const;

let lavapipe: Promise<Gpu | string> | null = null;

/** A GPU with shader-f16, or why there is none. */
export async function f16Gpu(): Promise<Gpu | string> {
  const own = await testGpu();
  if (own.caps.f16) return own;
  lavapipe ??= openLavapipe();
  const gpu = await lavapipe;
  if (typeof gpu === 'string') return `${own.caps.adapter} has no shader-f16 and ${gpu}`;
  return gpu.caps.f16 ? gpu : `neither ${own.caps.adapter} nor ${gpu.caps.adapter} has shader-f16`;
}

async function openLavapipe(): Promise<Gpu | string> {
  if (!existsSync(LAVAPIPE_ICD)) return `lavapipe is not set up (${LAVAPIPE_ICD} is missing: run bash scripts/lavapipe.sh)`;
  const saved = ENV.map((k) => process.env[k]);
  for (const k of ENV) process.env[k] = LAVAPIPE_ICD;
  try {
    return await nodeGpu({ software: true, warn: () => {} });
  } catch (e) {
    return `lavapipe did not open: ${(e as Error).message}`;
  } finally {
    ENV.forEach((k, i) => {
      if (saved[i] === undefined) delete process.env[k];
      else process.env[k] = saved[i];
    });
  }
}
