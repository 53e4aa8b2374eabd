// Shared by the kernel tests: start webgpu when this machine has an adapter, else say why not.
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import type { KernelCheck } from '../lib/kernels/cases';
import { initRuntime } from '../lib/runtime';

/** Seed of the check registries in the tests: fixed (golden inputs), or LLMCB_TEST_SEED to draw others (scripts/check-kernels.ts draws a fresh one each run). */
export const TEST_SEED = Number(process.env.LLMCB_TEST_SEED ?? 0);

/** null when the webgpu backend is running; otherwise the reason the GPU tests skip (also warned). */
export async function webgpuAdapterReason(): Promise<string | null> {
  try {
    await initRuntime({ backend: 'webgpu' });
    return null;
  } catch (e) {
    const reason = `WebGPU kernel tests skipped: ${(e as Error).message}`;
    console.warn(reason);
    return reason;
  }
}

/** One test per cheap check: within tolerance, the poisoned output really overwritten, no leaked tensors. */
export function itPassesChecks(checks: KernelCheck[]): void {
  for (const c of checks.filter((c) => c.small)) {
    it(`${c.kernel} ${c.name}: within tolerance, poisoned output overwritten (a single kernel's), no leaks`, async () => {
      const before = tf.memory().numTensors;
      const r = await c.run();
      if (r.poisoned !== null) expect(r.poisoned).toBe(true); // null: a whole computation (several kernels), not one output buffer
      expect(r.error).toBeLessThanOrEqual(r.tolerance);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
}
