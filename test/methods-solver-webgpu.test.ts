// The device solvers of GPTQ and SparseGPT on webgpu (the WGSL block sweeps; lavapipe in CI)
// against the float64 host solvers: the cases of test/methods-solver.test.ts, and the small cases of
// scripts/check-kernels.ts's 'solver' group (what the GPU host runs). Skips without an adapter.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { kernelDispatches } from '../lib/kernels/gpu';
import { withKernels } from '../lib/kernels';
import { HessianAccumulator } from '../lib/methods/hessian';
import { prepareHessianDevice } from '../lib/methods/solver';
import { randomLayer, solverChecks } from '../lib/methods/solver-cases';
import { TEST_SEED, webgpuAdapterReason } from './kernels-helpers';
import { registerSolverCases } from './solver-cases';

const reason = await webgpuAdapterReason();

describe.skipIf(reason !== null)('device solvers on webgpu vs the float64 host solvers', () => {
  registerSolverCases(it, expect);
  it('the Hessian accumulated on the GEMM kernel (its symmetric form) is exactly symmetric and equals the float64 2/n·XᵀX within 1e-5', async () => {
    const L = randomLayer(8, 200, 300, 11);
    const acc = new HessianAccumulator(L.cols);
    const x = tf.tensor2d(L.X, [L.tokens, L.cols]); // [tokens, cols]
    const d0 = kernelDispatches();
    await withKernels({ mode: 'auto' }, () => acc.addBatch(x, L.tokens));
    expect(kernelDispatches()).toBeGreaterThan(d0); // on the kernel, not tfjs's matMul
    const H = Float64Array.from(await acc.toFloat64());
    acc.dispose();
    x.dispose();
    let err = 0;
    let scale = 0;
    let asym = 0;
    for (let i = 0; i < L.cols; i++) {
      for (let j = 0; j < L.cols; j++) {
        let s = 0;
        for (let t = 0; t < L.tokens; t++) s += L.X[t * L.cols + i] * L.X[t * L.cols + j];
        s *= 2 / L.tokens;
        err = Math.max(err, Math.abs(H[i * L.cols + j] - s));
        scale = Math.max(scale, Math.abs(s));
        asym = Math.max(asym, Math.abs(H[i * L.cols + j] - H[j * L.cols + i]));
      }
    }
    expect(asym).toBe(0);
    expect(err / scale).toBeLessThan(1e-5);
  });
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
