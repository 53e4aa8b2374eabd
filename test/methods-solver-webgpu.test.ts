// The device solvers of GPTQ and SparseGPT on webgpu (the WGSL block sweeps; lavapipe in CI)
// against the float64 host solvers: the cases of test/methods-solver.test.ts, and the small cases of
// scripts/check-kernels.ts's 'solver' group (what the GPU host runs). Skips without an adapter.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { prepareHessianDevice } from '../lib/methods/solver';
import { randomLayer, solverChecks } from '../lib/methods/solver-cases';
import { TEST_SEED, webgpuAdapterReason } from './kernels-helpers';
import { registerSolverCases } from './solver-cases';

const reason = await webgpuAdapterReason();

describe.skipIf(reason !== null)('device solvers on webgpu vs the float64 host solvers', () => {
  registerSolverCases(it, expect);
  it('Hinv of a 600-column Hessian reads back twice (its diagonal, then the Cholesky pivot checks), not once per 128-column block', async () => {
    const L = randomLayer(8, 600, 1200, 5);
    const H = tf.tensor2d(Float32Array.from(L.H), [L.cols, L.cols]);
    const proto = tf.Tensor.prototype as unknown as { data: (...a: unknown[]) => Promise<unknown> };
    const data = proto.data;
    let reads = 0;
    proto.data = function (this: tf.Tensor, ...a: unknown[]) {
      reads++;
      return data.apply(this, a);
    };
    try {
      const prep = await prepareHessianDevice(H, 0.01);
      prep.hinv.dispose();
    } finally {
      proto.data = data;
      H.dispose();
    }
    expect(reads).toBe(2);
  });
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
