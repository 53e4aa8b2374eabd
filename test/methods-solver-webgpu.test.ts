// The device solvers of GPTQ and SparseGPT on webgpu (the WGSL block sweeps; lavapipe in CI)
// against the float64 host solvers: the cases of test/methods-solver.test.ts, and the small cases of
// scripts/check-kernels.ts's 'solver' group (what the GPU host runs). Skips without an adapter.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { solverChecks } from '../lib/methods/solver-cases';
import { TEST_SEED, webgpuAdapterReason } from './kernels-helpers';
import { registerSolverCases } from './solver-cases';

const reason = await webgpuAdapterReason();

describe.skipIf(reason !== null)('device solvers on webgpu vs the float64 host solvers', () => {
  registerSolverCases(it, expect);
  for (const c of solverChecks(TEST_SEED).filter((c) => c.small)) {
    it(`check-kernels ${c.kernel} ${c.name}: within tolerance, no leaks`, async () => {
      const before = tf.memory().numTensors;
      const r = await c.run();
      expect(r.poisoned).toBeNull();
      expect(r.error, r.note).toBeLessThanOrEqual(r.tolerance);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});
